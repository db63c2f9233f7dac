"""Network parameters and per-thread scratch, as flat typed arrays.

Shape letters used across the engine:
    B  samples in a batch          F  input features (dimension of the sparse input)
    D  input dimension of a layer  N  neurons of a layer (output dimension)
    A  capacity of a layer's active set (<= N)
    T  thread chunks (one block of scratch each)
    L  hash tables of an LSH layer

A network is `n_layers` fully connected layers: hidden layers (ReLU) then the output layer (one
neuron per label). Each layer's arrays live in a `LayerParams` NamedTuple; the layers are held in a
plain tuple. A parallel driver (kernels.train_batch) hands its chunk worker typed Lists made from
it (borrow.borrow_for_chunks), so the workers, most of the compile, serve networks of any depth,
and only the drivers compile once per depth. Why not a typed List from Python: numba compiles
typed List's own methods (creation, append, item reads) in every process and never caches them,
1.7 s of every warm quick start's 2.3 s; a cold start gained nothing, the drivers' own compile
growing by as much (bench/measured-2026-12-06/start-time/).

Weight layout. A weight array has one row per unit that a sample touches sparsely:
  * layer 0 is *input-major*, `weights[f, n]` of shape (F, N): a sparse input row with ~100 non-zeros
    reads and writes ~100 contiguous rows of N floats, and the optimizer updates only the rows of the
    features seen in the batch (never all F * N weights);
  * every other layer is *neuron-major*, `weights[n, d]` of shape (N, D): an active neuron reads and
    writes its own contiguous row, which is also the vector LSH hashes.
`row_touched[r]` marks the weight rows that received gradient in the current batch, `bias_touched[n]`
the biases; the optimizer visits only those (see optimizer.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Modes, losses and the columns of the per-layer `spec` table live in constants.py (re-exported here).
from .constants import (  # noqa: E402,F401
    LOSS_BCE,
    LOSS_CODES,
    LOSS_SOFTMAX,
    MODE_ALL,
    MODE_CODES,
    MODE_LSH,
    MODE_RANDOM,
    SPEC_BUDGET,
    SPEC_CAPACITY,
    SPEC_CORRECTION,
    SPEC_DROPOUT_PPM,
    SPEC_FIELDS,
    SPEC_IN_DIM,
    SPEC_INFER_MODE,
    SPEC_INPUT_MAJOR,
    SPEC_MIN_ACTIVE,
    SPEC_MODE,
    SPEC_OUT_DIM,
    SPEC_RANDOM_PERMILLE,
)
from .pages import advise_huge_pages


class LayerParams(NamedTuple):
    """One layer's trainable state. float32 throughout; optimizer moments may be (0, 0) for SGD."""

    weights: np.ndarray  # (F, N) input-major for layer 0, else (N, D)
    bias: np.ndarray  # (N,)
    weight_grad: np.ndarray  # like weights; accumulated Hogwild-style during a batch
    bias_grad: np.ndarray  # (N,)
    weight_m: np.ndarray  # Adam first moment, like weights (or (0, 0))
    weight_v: np.ndarray  # Adam second moment
    bias_m: np.ndarray  # (N,) (or (0,))
    bias_v: np.ndarray
    row_touched: np.ndarray  # (rows of weights,) uint8: 1 if the row has gradient this batch
    bias_touched: np.ndarray  # (N,) uint8


class LayerScratch(NamedTuple):
    """Per-thread-chunk working memory of one layer, allocated once per kernel call, never in loops."""

    act_ids: np.ndarray  # (T, A) int32 active neuron ids of the sample being processed
    act_vals: np.ndarray  # (T, A) float32 activations (output layer: logits, then probabilities)
    act_grads: np.ndarray  # (T, A) float32 d loss / d pre-activation
    stamp: np.ndarray  # (T, N) int32 dedup marks: stamp[t, n] == current mark => n already chosen
    mark: np.ndarray  # (T,) int32 the current mark of each chunk (see selection.next_mark)
    uniform_from: np.ndarray  # (T,) int64 where the sample's uniform draws start in act_ids
    hits: np.ndarray  # (T, N) int32 per-candidate count of LSH tables that returned it
    codes: np.ndarray  # (T, L) int32 LSH bucket codes of the current input ((T, 0) if not LSH)
    hash_vals: np.ndarray  # (T, H) float32 hash-family working memory ((T, 0) if not LSH)
    hash_idx: np.ndarray  # (T, H) int32
    query_buf: np.ndarray  # (T, Q) int32 candidate-union working memory (tables.query_scratch_size)
    query_ids: np.ndarray  # (T, V) int32 the transformed LSH query [input, 1] (see lsh.py)
    query_vals: np.ndarray  # (T, V) float32


class OutputRecords(NamedTuple):
    """The output layer's weight and bias gradients of one batch, kept as records instead of (N, D)
    rows and an (N,) vector (kernels.backward_output_recorded; optimizer.adam_update_rows_recorded):
    the gradient of row n is sum over its records (n, b, g) of g * hidden[b], that of bias n the
    sum of their g. Sized for B samples of A active neurons."""

    hidden: np.ndarray  # (B, D) float32 each sample's last-hidden activations (the layer's input)
    rows: np.ndarray  # (B, A) int32 sample b's records: output row ids ...
    grads: np.ndarray  # (B, A) float32 ... and d loss / d logit (already scaled by 1 / B)
    counts: np.ndarray  # (B,) int64 records of sample b (0 beyond the batch)
    sorted_pos: np.ndarray  # (B * A,) int32 the records grouped by row: sample position ...
    sorted_g: np.ndarray  # (B * A,) float32 ... and g
    cursor: np.ndarray  # (N,) int64 counting-sort scratch, one slot per output row


def output_record_shapes(batch: int, capacity: int, d: int, n: int) -> dict:
    """OutputRecords field -> (shape, dtype) for `batch` samples of up to `capacity` active
    neurons of an (n, d) output layer: what `make_output_records` allocates."""
    b, a, d, n = int(batch), int(capacity), int(d), int(n)
    return {"hidden": ((b, d), np.float32), "rows": ((b, a), np.int32), "grads": ((b, a), np.float32),
            "counts": ((b,), np.int64), "sorted_pos": ((b * a,), np.int32), "sorted_g": ((b * a,), np.float32),
            "cursor": ((n,), np.int64)}


def make_output_records(batch: int, capacity: int, d: int, n: int) -> OutputRecords:
    """Zeroed OutputRecords, shaped as `output_record_shapes` says."""
    shapes = output_record_shapes(batch, capacity, d, n)
    return OutputRecords(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()})


def layer_sizes(n_features: int, hidden: list[int], n_labels: int) -> list[tuple[int, int]]:
    """(D, N) of each layer, input to output."""
    dims = [n_features, *hidden, n_labels]
    return [(dims[i], dims[i + 1]) for i in range(len(dims) - 1)]


def param_shapes(sizes: list[tuple[int, int]], optimizer: str = "adam") -> list[dict]:
    """Per layer, LayerParams field -> (shape, dtype): what `init_params` allocates (and what the
    memory estimate counts). Adam moments are (0, 0) / (0,) under SGD."""
    out = []
    for index, (d, n) in enumerate(sizes):
        shape = (d, n) if index == 0 else (n, d)
        moments, bias_moments = (shape, (n,)) if optimizer == "adam" else ((0, 0), (0,))
        out.append({"weights": (shape, np.float32), "bias": ((n,), np.float32),
                    "weight_grad": (shape, np.float32), "bias_grad": ((n,), np.float32),
                    "weight_m": (moments, np.float32), "weight_v": (moments, np.float32),
                    "bias_m": (bias_moments, np.float32), "bias_v": (bias_moments, np.float32),
                    "row_touched": ((shape[0],), np.uint8), "bias_touched": ((n,), np.uint8)})
    return out


def nbytes(shapes: dict) -> int:
    """Bytes of the arrays a name -> (shape, dtype) dict describes."""
    return sum(math.prod(int(x) for x in shape) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())


def init_params(
    sizes: list[tuple[int, int]], *, init: str = "glorot", optimizer: str = "adam", seed: int = 0
) -> tuple[LayerParams, ...]:
    """Allocate and initialise every layer. Returns a tuple of LayerParams.

    Glorot-uniform (or He-normal) weights drawn in float32 chunks, so a 670K x 128 layer never
    passes through a float64 copy; zero biases; zero gradients and moments.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for (d, n), shapes in zip(sizes, param_shapes(sizes, optimizer)):
        arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items() if name != "weights"}
        weights = np.empty(*shapes["weights"])
        advise_huge_pages(weights)  # pages.py: the arrays a run keeps sit on huge pages
        _fill_init(weights, rng, d, n, init)
        layers.append(LayerParams(weights=weights, **arrays))
    return tuple(layers)


def make_resident(*arrays: np.ndarray) -> None:
    """Write every page of each (zero) array once, now, in one sequential pass.

    np.zeros maps pages lazily: without this, a row's first update faults its pages in one by one
    from the training threads (twice for a moment read before it is written, and each fault in a
    multi-threaded process can interrupt the other threads to flush their TLBs). On DebianNextWord,
    whose 150,000 x 512 input layer meets new word rows all through an epoch, that made the
    input layer's Adam step 2.1 ms instead of 0.25 (2 threads); writing the pages first costs about
    0.1 s per 300 MB, once. The memory estimate already counts these arrays as resident.

    They are written on huge pages where Linux lends them (pages.py). Where it has to compact
    memory to lend them (defrag "madvise", a page cache of several GB), the first write is much
    slower: 9.3 s for 1.2 GB against 0.45 s without the advice on the development VM (2026-12-05),
    14.4 s for a 205M-parameter network's 2.5 GB."""
    for array in arrays:
        advise_huge_pages(array)
        array.fill(0)


def _fill_init(weights: np.ndarray, rng: np.random.Generator, fan_in: int, fan_out: int, init: str):
    rows_per_chunk = max(1, (1 << 22) // max(1, weights.shape[1]))
    for start in range(0, weights.shape[0], rows_per_chunk):
        block = weights[start : start + rows_per_chunk]
        if init == "he":
            block[...] = rng.standard_normal(block.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        else:
            limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
            block[...] = rng.uniform(-limit, limit, size=block.shape).astype(np.float32)


def make_spec(
    sizes: list[tuple[int, int]],
    modes: list[int],
    infer_modes: list[int],
    budgets: list[int],
    min_actives: list[int],
    max_labels: int,
    random_shares: list[float] | None = None,
    corrections: list[bool] | None = None,
    dropouts: list[float] | None = None,
) -> np.ndarray:
    """The (n_layers, SPEC_FIELDS) int64 table the kernels read per-layer settings from.

    Budgets are clipped to the layer size; the output layer's capacity leaves room for the true
    labels, which are always active in training even when they alone exceed the budget.
    """
    spec = np.zeros((len(sizes), SPEC_FIELDS), np.int64)
    last = len(sizes) - 1
    for i, (d, n) in enumerate(sizes):
        budget = min(int(budgets[i]), n)
        mode = MODE_ALL if budget >= n else modes[i]
        spec[i, SPEC_IN_DIM] = d
        spec[i, SPEC_OUT_DIM] = n
        spec[i, SPEC_INPUT_MAJOR] = 1 if i == 0 else 0
        spec[i, SPEC_MODE] = mode
        spec[i, SPEC_INFER_MODE] = infer_modes[i]
        spec[i, SPEC_BUDGET] = budget
        spec[i, SPEC_MIN_ACTIVE] = min(int(min_actives[i]), budget)
        extra = max_labels if i == last else 0
        spec[i, SPEC_CAPACITY] = n if mode == MODE_ALL else min(n, budget + extra)
        spec[i, SPEC_RANDOM_PERMILLE] = int(round(1000 * (random_shares[i] if random_shares else 0.0)))
        spec[i, SPEC_CORRECTION] = int(bool(corrections[i])) if corrections else 0
        spec[i, SPEC_DROPOUT_PPM] = int(round(1e6 * dropouts[i])) if dropouts and i < last else 0
    return spec


def scratch_capacities(spec: np.ndarray, training: bool) -> np.ndarray:
    """A of each layer's scratch: the training capacity, or for inference N where the layer
    scores exactly (every neuron of the layer is held)."""
    if training:
        return spec[:, SPEC_CAPACITY]
    return np.where(spec[:, SPEC_INFER_MODE] == MODE_ALL, spec[:, SPEC_OUT_DIM], spec[:, SPEC_CAPACITY])


def scratch_shapes(spec: np.ndarray, n_chunks: int, capacities, hash_shapes: list[tuple[int, int, int, int]]) -> list[dict]:
    """Per layer, LayerScratch field -> (shape, dtype): what `make_scratch` allocates.

    `capacities[l]` is A for layer l (training capacity, or N for exact inference, see
    `scratch_capacities`); `hash_shapes[l]` is (L, H, Q, V) of layer l's LSH index (tables, hashes,
    query scratch length, transformed query length), (0, 0, 0, 0) for non-LSH layers.
    """
    out = []
    t = int(n_chunks)
    for l in range(spec.shape[0]):
        n = int(spec[l, SPEC_OUT_DIM])
        a = int(capacities[l])
        n_tables, n_hashes, query_len, vector_len = (int(x) for x in hash_shapes[l])
        needs_stamp = int(spec[l, SPEC_MODE]) != MODE_ALL or int(spec[l, SPEC_INFER_MODE]) != MODE_ALL
        stamp_n = n if needs_stamp else 0
        out.append({"act_ids": ((t, a), np.int32), "act_vals": ((t, a), np.float32),
                    "act_grads": ((t, a), np.float32), "stamp": ((t, stamp_n), np.int32),
                    "mark": ((t,), np.int32), "uniform_from": ((t,), np.int64),
                    "hits": ((t, stamp_n if n_tables else 0), np.int32), "codes": ((t, n_tables), np.int32),
                    "hash_vals": ((t, n_hashes), np.float32), "hash_idx": ((t, n_hashes), np.int32),
                    "query_buf": ((t, query_len), np.int32), "query_ids": ((t, vector_len), np.int32),
                    "query_vals": ((t, vector_len), np.float32)})
    return out


def make_scratch(spec: np.ndarray, n_chunks: int, capacities: np.ndarray,
                 hash_shapes: list[tuple[int, int]]) -> tuple[LayerScratch, ...]:
    """Allocate per-chunk scratch for every layer, zero-filled, as `scratch_shapes` describes."""
    return tuple(LayerScratch(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()})
                 for shapes in scratch_shapes(spec, n_chunks, capacities, hash_shapes))
