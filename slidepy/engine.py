"""The engine: a network's arrays, its LSH indexes and scratch, and the calls into the kernels.

This is the first of the three tiers: it validates inputs, allocates scratch once per shape, splits
a batch into thread chunks by cost, and calls the parallel drivers in kernels.py. It knows nothing
of configs files, epochs or logging (trainer.py does). Below the `Engine` class, as functions:
compiling the kernels (`compile_kernels`), the two ways of scoring the output layer
(`predict_exact_output`, `predict_lsh_output`), `lsh_diagnostics`, and checkpoint state.

Shape letters: B batch, F features, N neurons, T thread chunks, K top-k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numba.core.event
import numpy as np

from .constants import (INDEX_CLUSTERS, KIND_KMEANS, PHASE_FULL, PHASE_FULL_SCORED, PHASE_HIDDEN, PHASE_HIDDEN_BACKWARD,
                        PHASE_SELECT, PHASE_SELECT_SCORED, kinds_marker)
from .borrow import chunk_list_type
from .kernels import (backward_sample, chunk_worker, chunk_worker_types, infer_batch, infer_chunk, train_batch,
                      train_chunk)
from .lsh import LshIndex, LshOptions, empty_lsh_layer
from .network import (
    LOSS_CODES,
    MODE_ALL,
    MODE_CODES,
    MODE_LSH,
    MODE_RANDOM,
    SPEC_BUDGET,
    SPEC_CAPACITY,
    SPEC_INFER_MODE,
    SPEC_MODE,
    SPEC_OUT_DIM,
    SPEC_RANDOM_PERMILLE,
    init_params,
    layer_sizes,
    make_output_records,
    make_resident,
    make_scratch,
    make_spec,
    scratch_capacities,
)
from .checkpoint import check_shapes
from .clusters import mean_by_cluster, score_centroids_batch
from .metrics import score_batch
from .neighbours import bank_block, blend_topk
from .pages import temporaries_on_small_pages
from .optimizer import (adam_update_gathered, adam_update_rows, adam_update_rows_recorded, apply_updates, group_records,
                        sgd_update_rows)
from .precompile import compile_in_helper
from .rng import derive_int_seed
from .scoring import block_rows, check_k, score_topk, topk_rows
from .selection import draw_negative_pool
from .threads import blas_on_all_threads
from .union import (UNION_MIN_DENSITY, fits_first_step, make_union_buffers, union_columns, union_density, union_loss,
                    union_output_step)


# What train_batch gets for its record arguments when the output gradient is not recorded, and for
# the arguments of the phases it is not running.
_NO_RECORDS = make_output_records(1, 1, 1, 1)
_NO_META = np.zeros((1, 1), np.int32)
_NO_HIDDEN_GRADS = np.zeros((1, 1), np.float32)
_NO_SCORES = np.zeros((1, 1), np.float32)
# a driver's worker table (indirect.worker_table), as the compile helper's example argument
_NO_WORKER = np.zeros(2, np.int64)

# The stream of layer l's LSH index is derive_int_seed(seed, LSH_SEED_STREAM, l) ("LSH" in ASCII).
LSH_SEED_STREAM = 0x4C5348


@dataclass
class LayerSelection:
    """How one layer picks its active neurons (mirrors config.Selection, kept free of config)."""

    mode: str = "all"
    budget: int = 1024
    min_active: int = 0
    inference: str = "exact"
    lsh: LshOptions | None = None  # the layer's index, when mode or inference is lsh (model.lsh_options)
    correction: bool = False  # weight uniform negatives in the loss (config: selection.correction)
    negatives: str = "auto"  # output layer: "batch" / "sample" / "auto" (see Engine.shares_negatives)


@dataclass
class StepStats:
    loss: float
    active_mean: np.ndarray  # (n_layers,) mean active neurons per labelled sample
    rows_updated: int
    # Rows of the output layer's union when the step ran it as batch products (union.py), else 0.
    output_union_rows: int = 0


def checked_rows(rows, n_samples: int) -> np.ndarray:
    """`rows` as contiguous int64 dataset row ids, refused unless each lies in [0, n_samples): the
    kernels read a sample's CSR slice by its id without bounds checks (a negative id wraps)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"rows must be a 1-d array of sample ids, got shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_samples):
        raise IndexError(f"rows must lie in [0, {n_samples}), got ids from {rows.min()} to {rows.max()}")
    return rows


def chunk_bounds(x_indptr: np.ndarray, rows: np.ndarray, n_chunks: int) -> np.ndarray:
    """Split batch positions into n_chunks contiguous blocks of roughly equal cost (also
    `Engine.chunk_bounds`).

    Cost of a sample ~ its non-zeros plus a constant for the layers above the input.
    """
    cost = (x_indptr[rows + 1] - x_indptr[rows]).astype(np.float64) + 64.0
    cum = np.concatenate(([0.0], np.cumsum(cost)))
    targets = cum[-1] * np.arange(n_chunks + 1) / n_chunks
    bounds = np.searchsorted(cum, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, rows.shape[0]
    return np.maximum.accumulate(bounds)


def _same_arrays(a, b) -> bool:
    """Whether two (nested) tuples of arrays hold the very same array objects (or are both None)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_arrays(x, y) for x, y in zip(a, b))
    return a is b


@dataclass
class Engine:
    n_features: int
    hidden: list[int]
    n_labels: int
    selections: list[LayerSelection]
    loss: str = "softmax"
    optimizer: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    init: str = "glorot"
    seed: int = 0
    max_labels: int = 1
    # Mean positive labels per sample / n_labels in the training data; with loss "bce" the output
    # biases start at its log-odds (see __post_init__). 0 = unknown: zero biases.
    label_rate: float = 0.0
    dropout: float = 0.0  # of every hidden layer's outputs, in training
    weight_decay: float = 0.0  # Adam's decoupled weight decay on weight rows
    # Train as if every input value were multiplied by this, without touching the data: layer 0's
    # initial weights carry the factor, and its weights' steps are scaled to move x @ W as far as
    # they would on the scaled inputs (optimizer.apply_updates). The trained network then predicts
    # from the inputs as given.
    input_scale: float = 1.0
    # Lloyd iterations of a cluster index's first build (lsh.INITIAL_KMEANS_ITERS when None): a
    # network built only to time its steps (calibrate.py) needs clusters, not good ones
    index_first_iters: int | None = None
    step: int = 0  # optimizer steps taken so far
    _scratch: dict = field(default_factory=dict, repr=False)
    _records: object = field(default=None, repr=False)  # network.OutputRecords, see records_output
    _union: object = field(default=None, repr=False)  # union.UnionBuffers, see _union_step
    _lsh_list: tuple = field(default=(None, None), repr=False)  # (views, their tuple), see lsh_layers
    # Share of the batch x union cells the last step's output (sample, neuron) pairs filled
    # (union.density); None before the first step. It picks the next step's path (_takes_union).
    output_density: float | None = field(default=None, repr=False)
    # "auto": choose per step by output_density; "always" / "never": force the batch products /
    # the per-sample output layer (tests and measurements compare the two).
    output_products: str = "auto"
    # Seconds spent per phase of train_step, for profiles: the parallel kernel (selection, hashing,
    # forward, backward) and the row-sparse optimizer.
    timings: dict = field(default_factory=lambda: {"kernel": 0.0, "optimizer": 0.0})
    # distributed.py: per layer (rows (R,) uint8, biases (N,) uint8) OR-ed with the batch's touched
    # marks before the optimizer clears them: the rows to sync. None (the default) = not tracked.
    touched_log: list | None = field(default=None, repr=False)
    # neighbours.NeighbourBank whose votes exact scoring blends in (Model.attach_neighbours), or None
    neighbours: object = field(default=None, repr=False)

    def __post_init__(self):
        if len(self.hidden) == 0:  # as config.Model requires: the output layer's paths assume one
            raise ValueError("hidden must name at least one layer: exact scoring, the output records "
                             "and the neighbour bank all read the last hidden layer's vector")
        self.sizes = layer_sizes(self.n_features, list(self.hidden), self.n_labels)
        if len(self.selections) != len(self.sizes):
            raise ValueError(f"{len(self.selections)} selections given for {len(self.sizes)} layers")
        self.layers = init_params(self.sizes, init=self.init, optimizer=self.optimizer, seed=self.seed)
        if self.input_scale != 1.0:
            np.multiply(self.layers[0].weights, np.float32(self.input_scale), out=self.layers[0].weights)
        if self.loss == "bce" and 0.0 < self.label_rate < 1.0:
            # Prior initialisation (Lin et al. 2017): from zero biases each of the N - k negatives
            # starts with gradient 0.5 against the positives' -0.5, and on a sampled 22,875-label
            # layer that push drove every hidden unit to zero (dead ReLUs, P@1 stuck at the most
            # frequent label). Starting every sigmoid at the mean label rate leaves the positives'
            # gradient to lead.
            self.layers[-1].bias[:] = np.float32(np.log(self.label_rate / (1.0 - self.label_rate)))
        modes = [MODE_CODES[s.mode] for s in self.selections]
        infer = [MODE_ALL if s.inference == "exact" or s.mode != "lsh" else MODE_LSH for s in self.selections]
        self.spec = make_spec(self.sizes, modes, infer, [s.budget for s in self.selections],
                              [s.min_active for s in self.selections], self.max_labels,
                              [s.lsh.random_share if s.mode == "lsh" and s.lsh is not None else 0.0
                               for s in self.selections],
                              [s.correction for s in self.selections], [self.dropout] * len(self.sizes))
        self.lsh = [
            LshIndex(l, self.sizes[l], s.lsh, seed=derive_int_seed(self.seed, LSH_SEED_STREAM, l),
                     first_iters=self.index_first_iters,
                     budget=int(self.spec[l, SPEC_BUDGET]))
            if MODE_LSH in (self.spec[l, SPEC_MODE], self.spec[l, SPEC_INFER_MODE]) else None
            for l, s in enumerate(self.selections)
        ]
        # seconds of the first build: the trainer counts them with the rebuilds (a run's cost)
        self.index_build_seconds = sum(index.rebuild(self.layers[l].weights, l == 0, bias=self.layers[l].bias)
                                       for l, index in enumerate(self.lsh) if index is not None)
        self.loss_code = LOSS_CODES[self.loss]
        last = self.n_layers - 1
        # Pages the optimizer writes, written now rather than faulted in by the training threads
        # (network.make_resident); an output layer kept as records never writes its gradient rows.
        for l, layer in enumerate(self.layers):
            grads = () if l == last and self.records_output() else (layer.weight_grad,)
            make_resident(layer.weight_m, layer.weight_v, *grads)

    # -- kernel arguments -----------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    def lsh_layers(self) -> tuple:
        """The per-layer LSH arrays the kernels read, one LshLayer a layer (empty ones where unused),
        as a tuple (why not a typed List: network.py). Kept while every index keeps its arrays, so
        that a step reuses it; a rebuild may allocate new tables, and then it is made again. It
        holds references, so changes made in place show."""
        views = [index.kernel_view() if index is not None else None for index in self.lsh]
        cached_views, cached = self._lsh_list
        if cached is None or not all(_same_arrays(a, b) for a, b in zip(views, cached_views)):
            cached = tuple(view if view is not None else empty_lsh_layer() for view in views)
            self._lsh_list = (views, cached)
        return cached

    def kinds(self) -> tuple:
        """The kernels' `kinds` marker: the index kinds the LSH layers query (constants.kinds_marker)."""
        return kinds_marker(KIND_KMEANS if index.kind == INDEX_CLUSTERS else index.family
                            for index in self.lsh if index is not None)

    def _get_scratch(self, training: bool, n_chunks: int, spec: np.ndarray | None = None):
        """The per-chunk scratch for `spec` (self.spec, or an inference spec), cached. The key holds
        the whole spec: the shapes follow each layer's modes as well as its capacity (a layer
        that scores every neuron both in training and in inference needs no stamp row), and an
        exact and an LSH inference spec can agree on every capacity."""
        spec = self.spec if spec is None else spec
        key = (training, n_chunks, spec.tobytes())
        if key not in self._scratch:
            shapes = [index.hash_shape() if index is not None else (0, 0, 0, 0) for index in self.lsh]
            self._scratch[key] = make_scratch(spec, n_chunks, scratch_capacities(spec, training), shapes)
        return self._scratch[key]

    def records_output(self) -> bool:
        """Whether training keeps the output layer's weight gradient as (row, sample, g) records
        rather than in its weight_grad: with Adam, when the output layer's input is a dense hidden
        layer. The optimizer then rebuilds each touched row's gradient from the records and the
        samples' hidden vectors as it updates the row, so the (N, D) gradient rows are never
        streamed (weight_grad stays zero). Otherwise (SGD, no hidden layer, a sparse last hidden
        layer) the gradient accumulates in weight_grad as in every other layer."""
        last = self.n_layers - 1
        return self.optimizer == "adam" and last >= 1 and self.spec[last - 1, SPEC_MODE] == MODE_ALL

    def _takes_union(self, batch: int) -> bool:
        """Whether this step runs the output layer as batch products over the union of its active
        sets (union.py): when the last step's (sample, neuron) pairs filled at least
        UNION_MIN_DENSITY of the batch x union cells, or, before any step, when the products'
        worst-case matrices are small enough to try."""
        if self.output_products != "auto":
            return self.output_products == "always"
        if self.output_density is None:
            last = self.n_layers - 1
            return fits_first_step(batch, int(self.spec[last, SPEC_CAPACITY]), int(self.spec[last, SPEC_OUT_DIM]))
        return self.output_density >= UNION_MIN_DENSITY

    def _step_args(self, data, rows: np.ndarray, pool: np.ndarray, records) -> tuple:
        """train_batch's arguments up to its phase for a step on dataset rows `rows` (B,) with the
        shared negatives `pool`, recording the output gradient into `records` (output_records;
        None: not recorded), and, among them, loss_out (B,) and active_sum (T, layers)."""
        batch = rows.shape[0]
        n_chunks = max(1, min(numba.get_num_threads(), batch))
        width = max(1, self.max_labels)
        n_active = np.zeros((n_chunks, self.n_layers), np.int64)
        active_sum = np.zeros((n_chunks, self.n_layers), np.int64)
        loss_out = np.zeros(batch, np.float64)
        # The gradient is the mean over the whole batch, unlabelled samples counting as zero terms
        # (the dense references' convention), while StepStats reports the mean loss of the
        # labelled ones; under Adam, the default, the step hardly depends on that scale.
        record = records is not None
        out = records if record else _NO_RECORDS
        kernel_args = (self.layers, self.spec, self._get_scratch(True, n_chunks), self.lsh_layers(), self.kinds(),
                       data.x_indptr, data.x_indices, data.x_values, data.y_indptr, data.y_indices, rows,
                       self.chunk_bounds(data.x_indptr, rows, n_chunks), np.uint64(self.seed), np.uint64(self.step),
                       self.loss_code, np.float32(1.0 / batch), np.zeros(n_chunks, np.uint64), pool,
                       np.zeros((n_chunks, width), np.int32), np.zeros((n_chunks, width), np.int32), n_active,
                       active_sum, loss_out, np.bool_(record), out.hidden, out.rows, out.grads, out.counts)
        return kernel_args, loss_out, active_sum

    @staticmethod
    def _train_batch(kernel_args: tuple, phase: int, meta: np.ndarray, hidden_grads: np.ndarray,
                     scores: np.ndarray) -> None:
        """kernels.train_batch for one phase of the step whose arguments are kernel_args."""
        args = (*kernel_args, phase, meta, hidden_grads, scores)
        train_batch(*args, chunk_worker(train_chunk, args))

    def _union_step(self, kernel_args: tuple, records, loss_out: np.ndarray, batch: int):
        """Forward and backward of a step whose output layer runs as batch products: the hidden
        layers and the output's selection per sample, the products, then the hidden layers'
        backward per sample. Returns the output layer's (rows, weight gradients) for the
        optimizer; records the measured density for the next step's choice."""
        last = self.n_layers - 1
        width = max(1, self.max_labels)
        capacity = int(self.spec[last, SPEC_CAPACITY])
        buffers = self._union
        if (buffers is None or buffers.cols.shape[0] < batch or buffers.cols.shape[1] != capacity
                or buffers.positions.shape[1] < width):
            buffers = self._union = make_union_buffers(batch, capacity, width, int(self.spec[last, SPEC_OUT_DIM]))
        meta = np.zeros((batch, 2 + width), np.int32)
        hidden, ids, counts = records.hidden[:batch], records.rows[:batch], records.counts[:batch]
        scores = self._centroid_scores(kernel_args, records, batch)
        if scores is None:
            self._train_batch(kernel_args, PHASE_SELECT, meta, _NO_HIDDEN_GRADS, _NO_SCORES)
        else:
            self._train_batch(kernel_args, PHASE_SELECT_SCORED, meta, _NO_HIDDEN_GRADS, scores)
        result = union_output_step(self.layers[last], self.spec, hidden, ids, counts, meta, self.loss_code,
                                   1.0 / batch, buffers, loss_out)
        self._train_batch(kernel_args, PHASE_HIDDEN_BACKWARD, meta, result.hidden_grads, _NO_SCORES)
        self.output_density = union_density(int(counts.sum()), int(np.count_nonzero(counts)), result.union_rows)
        return result.rows, result.weight_grads

    def _centroid_scores(self, kernel_args: tuple, records, batch: int) -> np.ndarray | None:
        """The output's centroid scores for the step, from one product over the batch's last hidden
        vectors (PHASE_HIDDEN first; clusters.score_centroids_batch), or None where the output
        layer does not query a cluster index. Both paths take them: the batch products'
        (PHASE_SELECT_SCORED) and the whole-sample one (PHASE_FULL_SCORED).

        Why. Each sample's query otherwise streams the whole (D + 1) x L*C centroid matrix by itself
        (4 MB at 2,048 clusters and 512 units; an axpy per non-zero hidden unit): 128 queries with
        half their 512 units non-zero (dropout 0.5) took 3.8 ms at 2 threads against 1.35 ms for
        the product. The hidden layer is computed twice for it, which costs far less (DebianDeps:
        44 features x 512 a sample). DebianDeps' config on this path, interleaved: 17.7 against
        20.0 ms of kernel a step (2 threads, 2026-12-05)."""
        last = self.n_layers - 1
        index = self.lsh[last]
        if self.spec[last, SPEC_MODE] != MODE_LSH or index is None or index.kind != INDEX_CLUSTERS:
            return None
        self._train_batch(kernel_args, PHASE_HIDDEN, np.zeros((batch, 2), np.int32), _NO_HIDDEN_GRADS, _NO_SCORES)
        return score_centroids_batch(index.centroids_t, records.hidden[:batch])

    def negative_pool_size(self) -> int:
        """How many shared negatives a training step draws for the output layer (0: none, each
        sample draws its own, or the layer samples no uniform negatives).

        A sample takes the pool's ids in order, skipping those already in its set, until its uniform
        share is filled (selection.fill_from_pool). The share is at most the budget, and a pool id
        is already in a set of `budget` ids with chance budget / N, so budget + 2 budget^2 / N + 32
        ids leave a margin; a sample that still runs out draws the rest itself."""
        last = self.n_layers - 1
        mode, n, budget = (int(self.spec[last, c]) for c in (SPEC_MODE, SPEC_OUT_DIM, SPEC_BUDGET))
        uniform = mode == MODE_RANDOM or (mode == MODE_LSH and self.spec[last, SPEC_RANDOM_PERMILLE] > 0)
        if not uniform or not self.shares_negatives():
            return 0
        return min(n, budget + -(-2 * budget * budget // n) + 32)

    def shares_negatives(self) -> bool:
        """Whether the output layer's uniform negatives come from one pool per step: its
        `negatives` setting, where "auto" means yes exactly on a k-means cluster index.

        Why not always: lazy Adam moves a row by about lr each step that touches it, whatever the
        gradient's size. Shared negatives touch each row in a few percent of the steps instead of
        nearly every step, so a row whose logit drifts up is pushed back far less often. The cluster
        index returns such a row by itself (its cluster's mean logit rises with it), so there the
        uniform negatives are only a regulariser, and sharing them gained accuracy on DebianDeps and
        DebianNextWord. In `random` mode they are the only negatives, and a hash index's recall can
        fall; on a 3,000-label synthetic set sharing cut P@1 from 0.24 to 0.02 (random) and from
        0.25 to 0.11 (SRP), against 0.24 either way on k-means."""
        last = self.n_layers - 1
        negatives = self.selections[last].negatives
        if negatives == "auto":
            index = self.lsh[last]
            return self.spec[last, SPEC_MODE] == MODE_LSH and index is not None and index.kind == INDEX_CLUSTERS
        return negatives == "batch"

    def negative_pool(self) -> np.ndarray:
        """The shared negatives of the step about to run (negative_pool_size of them; int32)."""
        pool = np.empty(self.negative_pool_size(), np.int32)
        if pool.shape[0]:
            draw_negative_pool(np.uint64(self.seed), np.uint64(self.step), self.spec[-1, SPEC_OUT_DIM], pool)
        return pool

    chunk_bounds = staticmethod(chunk_bounds)

    def ensure_label_capacity(self, max_labels: int) -> None:
        """Grow the output layer's active-set capacity if some sample has more labels than planned
        (the true labels are always active in training, so they must fit)."""
        if max_labels <= self.max_labels:
            return
        self.max_labels = int(max_labels)
        last = self.n_layers - 1
        n = self.spec[last, SPEC_OUT_DIM]
        if self.spec[last, SPEC_MODE] != MODE_ALL:
            self.spec[last, SPEC_CAPACITY] = min(n, self.spec[last, SPEC_BUDGET] + self.max_labels)
        self._scratch.clear()

    def warmup(self, data, on_compile=None) -> float:
        """Compile the kernels for this network; returns the seconds spent (see compile_kernels)."""
        return compile_kernels(self, data, on_compile)

    def maybe_rebuild(self, lr_share: float = 1.0) -> float:
        """Let each LSH layer rebuild its tables if its schedule says so; returns seconds spent.
        lr_share: this step's learning rate over the schedule's peak (see lsh.RebuildSchedule)."""
        spent = 0.0
        with temporaries_on_small_pages():  # pages.py
            for l, index in enumerate(self.lsh):
                if index is not None:
                    spent += index.maybe_rebuild(self.step, self.layers[l].weights, l == 0, self.layers[l].bias,
                                                 lr_share=lr_share)
        return spent

    # -- training and inference -----------------------------------------------------------------

    def _check_shape(self, data, labels: bool) -> None:
        """Refuse data whose ids could reach past this network's layers: the kernels index the
        weights by feature and label id without bounds checks (Model checks this too, naming
        the file; this guards the engine's own callers)."""
        if data.n_features > self.n_features:
            raise ValueError(f"the data has {data.n_features} features, the network {self.n_features}")
        if labels and data.n_labels > self.n_labels:
            raise ValueError(f"the data has {data.n_labels} labels, the network {self.n_labels}")

    def train_step(self, data, rows: np.ndarray, apply: bool = True) -> StepStats:
        """One optimizer step on dataset rows `rows`: sparse forward/backward, then the update
        (apply=False discards the gradients instead: used to compile the kernels)."""
        self._check_shape(data, labels=True)
        rows = checked_rows(rows, data.n_samples)
        batch = rows.shape[0]
        self.ensure_label_capacity(int(np.max(data.y_indptr[rows + 1] - data.y_indptr[rows], initial=0)))
        record = self.records_output()
        records = output_records(self, batch) if record else None
        kernel_args, loss_out, active_sum = self._step_args(data, rows, self.negative_pool(), records)
        labelled = (data.y_indptr[rows + 1] - data.y_indptr[rows]) > 0
        n_labelled = int(labelled.sum())
        started = time.perf_counter()
        gathered = None
        with temporaries_on_small_pages():  # pages.py: a step's large temporaries stay off huge pages
            if record and self._takes_union(batch):
                gathered = self._union_step(kernel_args, records, loss_out, batch)
            else:
                scores = self._centroid_scores(kernel_args, records, batch) if record else None
                if scores is None:
                    self._train_batch(kernel_args, PHASE_FULL, _NO_META, _NO_HIDDEN_GRADS, _NO_SCORES)
                else:
                    self._train_batch(kernel_args, PHASE_FULL_SCORED, _NO_META, _NO_HIDDEN_GRADS, scores)
                if record:  # measured as the products path measures it (labelled samples)
                    last = self.layers[-1]
                    self.output_density = union_density(int(active_sum[:, -1].sum()), n_labelled,
                                                        int(np.count_nonzero(last.row_touched)))
        self.timings["kernel"] += time.perf_counter() - started
        self.step += 1
        if not apply:
            for layer in self.layers:
                for name in ("weight_grad", "bias_grad", "row_touched", "bias_touched"):
                    getattr(layer, name)[...] = 0
            # the records need no clearing: output_records zeroes their counts before every batch
            return StepStats(loss=float(loss_out.mean()), active_mean=active_sum.sum(axis=0), rows_updated=0)
        if self.touched_log is not None:  # distributed.py: remember the rows to sync
            for layer, (rows_seen, biases_seen) in zip(self.layers, self.touched_log):
                np.bitwise_or(rows_seen, layer.row_touched, out=rows_seen)
                np.bitwise_or(biases_seen, layer.bias_touched, out=biases_seen)
        started = time.perf_counter()
        with temporaries_on_small_pages():
            updated = apply_updates(self.layers, optimizer=self.optimizer, lr=self.lr, beta1=self.beta1,
                                    beta2=self.beta2, eps=self.eps, step=self.step, weight_decay=self.weight_decay,
                                    input_scale=self.input_scale,
                                    records=None if gathered is not None else records, gathered=gathered)
        self.timings["optimizer"] += time.perf_counter() - started
        n_lab = max(1, n_labelled)
        return StepStats(loss=float(loss_out[labelled].sum() / n_lab),
                         active_mean=active_sum.sum(axis=0) / n_lab, rows_updated=updated,
                         output_union_rows=0 if gathered is None else int(gathered[0].shape[0]))

    def predict(self, data, rows: np.ndarray | None = None, k: int = 5, batch_size: int = 512,
                use_lsh: bool | None = None, votes: bool = True):
        """Top-k output neurons per sample: (ids (B, k) int32, scores (B, k) float32, mean active
        neurons per layer). Layers score exactly unless their selection says inference: lsh;
        use_lsh=True / False forces LSH / exact scoring in every LSH layer. Exact scoring blends in
        the attached neighbour bank's votes (engine.neighbours) unless votes=False."""
        self._check_shape(data, labels=False)
        check_k(k)
        spec = self.spec
        if use_lsh is not None:
            spec = self.spec.copy()
            for l, index in enumerate(self.lsh):
                if index is not None:
                    spec[l, SPEC_INFER_MODE] = MODE_LSH if use_lsh else MODE_ALL
        rows = np.arange(data.n_samples, dtype=np.int64) if rows is None else checked_rows(rows, data.n_samples)
        if spec[-1, SPEC_INFER_MODE] == MODE_ALL:
            return predict_exact_output(self, data, rows, k, spec, self.neighbours if votes else None)
        return predict_lsh_output(self, data, rows, k, spec, batch_size)

    def last_hidden(self, data, rows: np.ndarray, out: np.ndarray, spec: np.ndarray | None = None) -> np.ndarray:
        """The last hidden layer's activations of `rows` into out (B, D); see `last_hidden`."""
        return last_hidden(self, data, rows, out, self.spec if spec is None else spec)

    # -- diagnostics and checkpoint state (the module functions below) ---------------------------

    def lsh_diagnostics(self, data, rows: np.ndarray, k: int = 10) -> dict:
        """Recall of the exact top-k among the LSH layers' picks on `rows` (see lsh_diagnostics)."""
        return lsh_diagnostics(self, data, rows, k)

    def state_arrays(self) -> dict:
        """Every array a resumed run needs: weights, biases, optimizer moments, LSH state."""
        return state_arrays(self)

    def state_meta(self) -> dict:
        """This engine's part of a checkpoint's meta (see `state_meta`)."""
        return state_meta(self)

    def expected_shapes(self) -> dict:
        """name -> (shape, dtype) of the model arrays, for checkpoint.check_shapes."""
        return expected_shapes(self)

    def load_state(self, arrays: dict, meta: dict, source: str = "checkpoint") -> None:
        """Copy a checkpoint's arrays in place (shapes checked first, naming any mismatch)."""
        load_state(self, arrays, meta)


# -- compiling the kernels ----------------------------------------------------------------------


def compile_kernels(engine: Engine, data, on_compile=None) -> float:
    """Compile the kernels for this network (numba JIT, or load them from the on-disk cache)
    by running one sample through training, the optimizer (over no rows) and inference, then
    discard its gradients (`Engine.warmup`). Returns the seconds spent, which the trainer reports
    apart from training time; `engine.compiled` says whether anything was compiled (False: all
    cached).

    on_compile: called once, with no arguments, when the first kernel starts compiling (not at
    all when every kernel loads from the cache), so a caller can say why it waits, e.g. print
    "compiling kernels (first run only)..." and then the returned seconds. The LSH tables'
    build kernels compile earlier, when the engine is made.

    On a cache miss the kernels a run calls after the training kernels (later_kernels) compile in
    a helper process meanwhile (precompile.py); they are then loaded from the cache here.
    """
    started = time.perf_counter()
    engine.compiled = False

    helper = None

    def compiling(event):
        nonlocal helper
        # numba's own functions (the typed List methods the drivers use) compile as our kernels'
        # callees: only a kernel of ours compiling means the cache missed
        ours = event.data["dispatcher"].py_func.__module__.startswith(__package__ + ".")
        if ours and not engine.compiled:
            engine.compiled = True
            if on_compile is not None:
                on_compile()
            if data.n_samples:
                helper = compile_in_helper(training_jobs(engine, data) + later_kernels(engine, data))

    with numba.core.event.install_listener("numba:compile", _CompileListener(compiling)):
        rows = np.zeros(1, np.int64)
        if data.n_samples:
            step, density = engine.step, engine.output_density
            products = engine.records_output() and engine._takes_union(1)
            engine.train_step(data, rows, apply=False)
            engine.step, engine.output_density = step, density
            if helper is not None:  # share its list's rest, and load what it compiled: nothing compiles twice
                helper.share()
            # the optimizer of the path the first steps take (records or the products' gathered rows)
            records = output_records(engine, 1) if engine.records_output() and not products else None
            gathered = (np.zeros(0, np.int64), np.zeros((0, engine.sizes[-1][0]), np.float32)) if products else None
            apply_updates(engine.layers, optimizer=engine.optimizer, lr=engine.lr, beta1=engine.beta1,
                          beta2=engine.beta2, eps=engine.eps,
                          step=max(1, step),  # nothing is touched: compiles, changes nothing
                          records=records, gathered=gathered)
            engine.predict(data, rows, k=1)
    for key in engine.timings:
        engine.timings[key] = 0.0
    return time.perf_counter() - started


def training_jobs(engine: Engine, data) -> list[tuple]:
    """(kernel, example arguments) for the compile helper's first jobs: the per-sample backward
    (kernels.backward_sample), which this process's compile of the training worker (train_chunk,
    by far the largest) reaches last, with the types train_chunk passes it; then the training
    driver (kernels.train_batch), which this process needs once that worker is compiled. This
    process then loads both from the cache."""
    records = _NO_RECORDS if engine.records_output() else None  # the records' types, not the step's own
    kernel_args, _, _ = engine._step_args(data, np.zeros(1, np.int64), np.zeros(0, np.int32), records)
    # every scratch tuple has one item type: the one just made serves
    scratch = kernel_args[2]
    n, flag = np.int64(0), np.bool_(False)
    i32, f32, i64 = np.zeros(1, np.int32), np.zeros(1, np.float32), np.zeros(1, np.int64)
    # the workers get the per-chunk Lists the driver makes (borrow.borrow_for_chunks): their numba
    # types stand in for them (precompile.signature), so no List is made in this process
    return [(backward_sample, (chunk_list_type(engine.layers), engine.spec, chunk_list_type(scratch), n, i32, f32, n,
                               i64, n, flag, f32, i32, f32, i64, n)),
            (train_batch, (*kernel_args, PHASE_FULL, _NO_META, _NO_HIDDEN_GRADS, _NO_SCORES, _NO_WORKER))]


def later_kernels(engine: Engine, data) -> list[tuple]:
    """(kernel, example arguments) for what this run compiles after the training kernel, in the
    order it calls them: the output layer's batch products, the optimizer, exact scoring, the
    cluster index's refresh and the metrics. The arguments have the types the run will pass (the
    engine's own arrays, or small ones of the same dtype and layout); compile_kernels hands them to
    a helper process, and a test checks them against what a run compiles."""
    last = engine.n_layers - 1
    out = engine.layers[last]
    f32, i32, i64 = np.float32(0), np.zeros(1, np.int32), np.zeros(1, np.int64)
    f32_2d, i32_2d = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int32)
    jobs = []
    if engine.records_output():
        jobs += [(union_columns, (i32_2d, i64, i32, i32, i32_2d)),
                 (union_loss, (f32_2d, i32_2d, i64, i32_2d, engine.spec, np.int64(0), f32, f32_2d, f32_2d, i32_2d,
                               f32_2d, np.zeros(1, np.uint8), np.zeros(1))),
                 (adam_update_gathered, (out.weights, out.weight_m, out.weight_v, out.row_touched, i64, f32_2d,
                                         f32, f32, f32, f32, f32)),
                 (group_records, (i64, i64, i32_2d, f32_2d, i64, i64, i32, np.zeros(1, np.float32), np.int64(1))),
                 (adam_update_rows_recorded, (out.weights, out.weight_m, out.weight_v, out.bias, out.bias_m,
                                              out.bias_v, out.row_touched, out.bias_touched, i64, i64, i64, i32,
                                              np.zeros(1, np.float32), f32_2d, f32_2d, f32, f32, f32, f32, f32))]
    # every layer's weight rows, and its biases as (N, 1) rows, have these types: one job serves all
    if engine.optimizer == "adam":
        jobs.append((adam_update_rows, (out.weights, out.weight_grad, out.weight_m, out.weight_v, out.row_touched,
                                        i64, f32, f32, f32, f32, f32)))
    else:
        jobs.append((sgd_update_rows, (out.weights, out.weight_grad, out.row_touched, i64, f32)))
    if last > 0:
        hidden = np.zeros((1, engine.sizes[last][0]), np.float32)
        inference = _last_hidden_args(engine, data, np.zeros(1, np.int64), hidden, engine.spec)[0]
        jobs.append((infer_batch, (*inference, _NO_WORKER)))
    jobs.append((topk_rows, (f32_2d, out.bias, i32_2d, f32_2d)))
    if any(index is not None and index.kind == INDEX_CLUSTERS for index in engine.lsh):
        jobs.append((mean_by_cluster, (out.weights, out.bias, i64, i32, f32_2d)))
    jobs.append((score_batch, (i32_2d, i64, i32, i64, 1, np.zeros((1, 1)), np.zeros((1, 1)))))
    if last > 0:  # last: its callees, shared with train_chunk, are in the cache by then
        jobs.append((infer_chunk, chunk_worker_types(inference)))
    return jobs


class _CompileListener(numba.core.event.Listener):
    """Calls `callback(event)` when numba starts compiling a function (see compile_kernels)."""

    def __init__(self, callback):
        self.callback = callback

    def on_start(self, event):
        self.callback(event)

    def on_end(self, event):
        pass


# -- scoring the output layer: Engine.predict's two paths -------------------------------------


def predict_exact_output(engine: Engine, data, rows: np.ndarray, k: int, spec: np.ndarray, bank=None):
    """Exact scoring of every output neuron (Engine.predict's path when the output layer infers
    exactly): the kernel computes the last hidden layer of a block of samples, then
    scoring.score_topk takes one BLAS product (B, D) @ (D, N) and a parallel top-k, an order of
    magnitude faster than per-sample dot products at 670K rows. With a neighbour bank
    (neighbours.NeighbourBank) the softmax is blended with the neighbours' label votes first
    (neighbours.blend_topk)."""
    last = engine.n_layers - 1
    out = engine.layers[last]
    top_ids = np.full((rows.shape[0], k), -1, np.int32)
    top_scores = np.full((rows.shape[0], k), -np.inf, np.float32)
    active_total = np.zeros(engine.n_layers, np.float64)
    active_total[last] = engine.n_labels * rows.shape[0]
    block = block_rows(engine.n_labels) if bank is None else bank_block(bank, engine.n_labels)
    hidden = np.zeros((block, engine.sizes[last][0]), np.float32)
    with blas_on_all_threads():
        for start in range(0, rows.shape[0], block):
            part = rows[start:start + block]
            b = part.shape[0]
            active_total[:last] += engine.last_hidden(data, part, hidden[:b], spec)
            if bank is None:
                score_topk(hidden[:b], out.weights, out.bias, top_ids[start:start + b], top_scores[start:start + b])
            else:
                blend_topk(hidden[:b], out.weights, out.bias, bank, top_ids[start:start + b],
                           top_scores[start:start + b], data, part)
    return top_ids, top_scores, active_total / max(1, rows.shape[0])


def predict_lsh_output(engine: Engine, data, rows: np.ndarray, k: int, spec: np.ndarray, batch_size: int):
    """LSH scoring of the output layer (Engine.predict's path when the output layer infers
    through its index): the kernel runs each sample through every layer, batch_size at a time,
    and keeps the top-k of the output neurons its index selects."""
    top_ids = np.full((rows.shape[0], k), -1, np.int32)
    top_scores = np.full((rows.shape[0], k), -np.inf, np.float32)
    lsh_layers = engine.lsh_layers()
    active_total = np.zeros(engine.n_layers, np.float64)
    for start in range(0, rows.shape[0], batch_size):
        part = rows[start:start + batch_size]
        n_chunks = max(1, min(numba.get_num_threads(), part.shape[0]))
        scratch = engine._get_scratch(False, n_chunks, spec)
        bounds = engine.chunk_bounds(data.x_indptr, part, n_chunks)
        n_active = np.zeros((n_chunks, engine.n_layers), np.int64)
        active_sum = np.zeros((n_chunks, engine.n_layers), np.int64)
        args = (engine.layers, spec, scratch, lsh_layers, engine.kinds(), data.x_indptr, data.x_indices,
                data.x_values, part, bounds, np.uint64(engine.seed), np.zeros(n_chunks, np.uint64),
                n_active, active_sum, engine.n_layers, top_ids[start:start + part.shape[0]],
                top_scores[start:start + part.shape[0]], np.zeros((0, 0), np.float32))
        infer_batch(*args, chunk_worker(infer_chunk, args))
        active_total += active_sum.sum(axis=0)
    return top_ids, top_scores, active_total / max(1, rows.shape[0])


# -- diagnostics --------------------------------------------------------------------------------


def output_records(engine: Engine, batch: int):
    """The output layer's gradient records (network.OutputRecords) for a batch of `batch`, with
    counts zeroed; reallocated when the batch or the output capacity grows."""
    last = engine.n_layers - 1
    capacity = int(engine.spec[last, SPEC_CAPACITY])
    records = engine._records
    if records is None or records.rows.shape[0] < batch or records.rows.shape[1] != capacity:
        d, n = engine.sizes[last]
        size = max(batch, records.rows.shape[0] if records is not None else 0)
        records = engine._records = make_output_records(size, capacity, d, n)
    records.counts[:] = 0
    return records


def last_hidden(engine: Engine, data, rows: np.ndarray, out: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations of dataset rows `rows` (B,) into out (B, D) (zeros for
    inactive neurons; inference, so no dropout): exact scoring and ensembles multiply them with the
    output layer. Returns the active neurons summed over the samples, per hidden layer."""
    args, active_sum = _last_hidden_args(engine, data, rows, out, spec)
    infer_batch(*args, chunk_worker(infer_chunk, args))
    return active_sum.sum(axis=0)


def _last_hidden_args(engine: Engine, data, rows: np.ndarray, out: np.ndarray, spec: np.ndarray) -> tuple:
    """infer_batch's arguments for last_hidden (and, as types, for the compile helper), and the
    active_sum (T, hidden layers) among them that the call fills."""
    last = engine.n_layers - 1
    n_chunks = max(1, min(numba.get_num_threads(), rows.shape[0]))
    scratch = engine._get_scratch(False, n_chunks, spec)
    bounds = chunk_bounds(data.x_indptr, rows, n_chunks)
    n_active = np.zeros((n_chunks, engine.n_layers), np.int64)
    active_sum = np.zeros((n_chunks, last), np.int64)
    args = (engine.layers, spec, scratch, engine.lsh_layers(), engine.kinds(), data.x_indptr, data.x_indices,
            data.x_values, rows, bounds, np.uint64(engine.seed), np.zeros(n_chunks, np.uint64), n_active,
            active_sum, last, np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32), out)
    return args, active_sum


def lsh_diagnostics(engine: Engine, data, rows: np.ndarray, k: int = 10) -> dict:
    """Retrieval quality of the LSH layers on held-out rows: recall of the exact top-k output
    neurons among those LSH selects, and the mean active neurons per layer under LSH.

    Under LSH every selected output neuron still gets its exact logit, so an exact top-k
    neuron is selected iff it is in the LSH top-k: recall = |exact top-k & LSH top-k| / k.
    """
    if all(index is None for index in engine.lsh) or rows.shape[0] == 0:
        return {}
    k = min(k, engine.n_labels)
    # The index retrieves rows by their logits, so recall is against the network's own exact
    # top-k: without the neighbours' votes, which only exact scoring blends in.
    exact, _, _ = engine.predict(data, rows, k=k, use_lsh=False, votes=False)
    approx, _, active = engine.predict(data, rows, k=k, use_lsh=True)
    hits = sum(np.intersect1d(exact[i], approx[i][approx[i] >= 0]).shape[0] for i in range(rows.shape[0]))
    return {f"lsh_recall@{k}": hits / (k * rows.shape[0]), "lsh_active_mean": [float(a) for a in active],
            "lsh_drift": [index.last_drift for index in engine.lsh if index is not None]}


# -- checkpoint state ---------------------------------------------------------------------------

# The arrays of a layer a checkpoint holds, and the scratch a loaded layer starts with zeroed.
_LAYER_STATE = ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v")
_LAYER_SCRATCH = ("weight_grad", "bias_grad", "row_touched", "bias_touched")


def state_arrays(engine: Engine) -> dict:
    """Every array a resumed run needs: weights, biases, optimizer moments, LSH state."""
    arrays = {}
    for l, layer in enumerate(engine.layers):
        for name in _LAYER_STATE:
            arrays[f"layer{l}.{name}"] = getattr(layer, name)
    for l, index in enumerate(engine.lsh):
        if index is not None:
            arrays.update(index.state_arrays(f"lsh{l}"))
    return arrays


def state_meta(engine: Engine) -> dict:
    """The step, learning rate, the last step's output density (it picks the next step's path, so
    a resumed run takes the path the uninterrupted one would) and each LSH index's rebuild state,
    for a checkpoint's meta."""
    return {"step": engine.step, "lr": engine.lr, "output_density": engine.output_density,
            "lsh": {str(l): index.state_meta() for l, index in enumerate(engine.lsh) if index is not None}}


def expected_shapes(engine: Engine) -> dict:
    """name -> (shape, dtype) of the model arrays, for checkpoint.check_shapes."""
    return {name: (arr.shape, arr.dtype) for name, arr in state_arrays(engine).items()
            if not name.startswith("lsh")}


def load_state(engine: Engine, arrays: dict, meta: dict) -> None:
    """Copy a checkpoint's arrays into `engine` in place (shapes checked first, naming any
    mismatch); LSH layers without tables in the checkpoint are rebuilt from the weights."""
    check_shapes({k: v for k, v in arrays.items() if not k.startswith("lsh")}, expected_shapes(engine))
    for l, layer in enumerate(engine.layers):
        for name in _LAYER_STATE:
            getattr(layer, name)[...] = arrays[f"layer{l}.{name}"]
        for name in _LAYER_SCRATCH:
            getattr(layer, name)[...] = 0
    lsh_meta = meta.get("lsh", {})
    for l, index in enumerate(engine.lsh):
        if index is None:
            continue
        if f"lsh{l}.buckets" in arrays and str(l) in lsh_meta:
            index.load_state(arrays, lsh_meta[str(l)], f"lsh{l}")
        else:  # a model file without tables (or another selection): rebuild from the weights
            index.rebuild(engine.layers[l].weights, l == 0, bias=engine.layers[l].bias, fresh=True)
    engine.step = int(meta.get("step", engine.step))
    engine.lr = float(meta.get("lr", engine.lr))
    density = meta.get("output_density")  # absent from checkpoints written before it was kept
    engine.output_density = None if density is None else float(density)
