"""The output layer of a training step as dense matrix products over the union of the batch's
active sets.

Why. Per sample, the output layer's forward and backward are one gathered dot product and one
axpy per active neuron, and the optimizer adds g * hidden per (row, sample) record: about 0.24 us
per (sample, active neuron) at 512 hidden units on this 2-core machine (DebianNextWord, 128 x 896
active a step: 27 ms of a 37 ms step). But the samples of a step share most of their neurons (the
labels of frequent classes, the clusters of highest mean logit, the step's shared negatives): on
DebianNextWord the 114,688 active (sample, neuron) pairs of a step fall on about 950 distinct
rows once the index has had its first rebuilds. Over that union U the three products are dense
BLAS calls, at ~230 GFLOP/s here against ~7 for the gathers:

    logits   Z  = H W_U^T + b_U        (B, U)   H: the batch's last hidden layer (B, D)
    d hidden dH = G W_U                (B, D)   G: d loss / d logit, zero off each sample's set
    d weight dW = G^T H                (U, D)

Each sample's loss still reads only its own active neurons (its columns of Z) and writes only
their gradients (its entries of G), so the step computes exactly what the per-sample kernels do,
up to the order of float additions (tests/test_union.py holds the two paths to each other and to a
NumPy reference). The products spend B x U x D multiply-adds where the gathers spend (sample,
neuron) pairs x D, at ~10-20x the speed per multiply-add, so they win while the pairs fill at least
UNION_MIN_DENSITY of the B x U cells; the engine measures that share every step and takes the
per-sample path below it (a 670K-label layer, where a batch's sets barely overlap, and DebianDeps
late in training, when its batches' sets spread over 10,000 of its 22,875 rows).

A step then runs: kernels.train_batch(PHASE_SELECT) for the hidden layers and the output's active
sets (on a cluster index PHASE_HIDDEN, one product for every sample's centroid scores
(clusters.score_centroids_batch), then PHASE_SELECT_SCORED) -> union_output_step (this module:
the union, the products, the loss) -> kernels.train_batch(PHASE_HIDDEN_BACKWARD) for the hidden
layers' backward -> the optimizer's Adam over the union's rows (optimizer.adam_update_gathered).

Shape letters: B batch, A active capacity of the output layer, W label slots (max labels per
sample), U rows in the union, N output neurons, D last hidden width.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .constants import LOSS_BCE
from .kernels import sigmoid_xent, softmax_xent
from .selection import correction_weight

# Break-even share of the B x U cells that hold an active (sample, neuron) pair: below it the
# per-sample kernels are cheaper. Measured on DebianDeps (512 hidden, budget 1,024, 2 threads), a
# step costs about 275 us a sample on the per-sample path and 87 + 36 / density us through the
# products (5,560 samples/s at density 0.38 early in training, 2,160-2,360 at 0.10 after 15 epochs, where
# the per-sample path ran 3,370-3,450): they cross near 0.19. DebianNextWord's steps sit at
# 0.6-0.9.
UNION_MIN_DENSITY = 0.2
# The first step has no measured density; it takes the products only if their (B, U) matrices,
# at the worst case U = min(N, B x A), stay under this many bytes each.
UNION_MAX_BYTES = 1 << 28


class UnionBuffers(NamedTuple):
    """Per-step working arrays of union_output_step, reused across steps (make_union_buffers)."""

    cols: np.ndarray  # (B, A) int32 column in U of each active neuron of each sample
    logits: np.ndarray  # (B, A) float32 each sample's active logits, gathered from Z
    grads: np.ndarray  # (B, A) float32 ... and their d loss / d logit
    positions: np.ndarray  # (B, W) int32 the labels' positions in each sample's active set
    union: np.ndarray  # (min(N, B x A),) int32 the union's row ids, first-seen order
    slot: np.ndarray  # (N,) int32 a row's column in U during union_columns, else -1


def union_buffer_shapes(batch: int, capacity: int, width: int, n: int) -> dict:
    """UnionBuffers field -> (shape, dtype) for `batch` samples of up to `capacity` active neurons
    and `width` labels of an output layer of `n` neurons: what make_union_buffers allocates."""
    b, a, w, n = int(batch), int(capacity), max(1, int(width)), int(n)
    return {"cols": ((b, a), np.int32), "logits": ((b, a), np.float32), "grads": ((b, a), np.float32),
            "positions": ((b, w), np.int32), "union": ((min(n, b * a),), np.int32), "slot": ((n,), np.int32)}


def make_union_buffers(batch: int, capacity: int, width: int, n: int) -> UnionBuffers:
    """UnionBuffers shaped as union_buffer_shapes says (slot all -1: no row in the union yet)."""
    shapes = union_buffer_shapes(batch, capacity, width, n)
    buffers = {name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()}
    buffers["slot"].fill(-1)
    return UnionBuffers(**buffers)


def union_step_shapes(batch: int, capacity: int, width: int, n: int, d: int) -> dict:
    """The buffers and union_output_step's temporaries at the largest union a step of the engine's
    choice (Engine._takes_union) can meet, for the memory estimate: every (sample, neuron) pair on
    its own row on a first step whose products fit (fits_first_step), and later at most
    capacity / UNION_MIN_DENSITY rows, since the products run only above that density."""
    b = int(batch)
    u = min(int(n), b * int(capacity))
    if not fits_first_step(b, capacity, n):
        u = min(u, int(np.ceil(capacity / UNION_MIN_DENSITY)))
    return {**union_buffer_shapes(batch, capacity, width, n),
            "w_union": ((u, d), np.float32), "weight_grads": ((u, d), np.float32), "z": ((b, u), np.float32),
            "g": ((b, u), np.float32), "hidden_grads": ((b, d), np.float32), "rows": ((u,), np.int64)}


def union_density(pairs: int, samples: int, union_rows: int) -> float:
    """Share of the samples x union_rows cells that hold an active pair (1.0 for an empty step)."""
    cells = samples * union_rows
    return pairs / cells if cells else 1.0


# ---------------------------------------------------------------------------------------------
# Kernels: the union (serial, O(pairs)) and the per-sample loss (parallel over samples).
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def union_columns(ids, counts, slot, union, cols):
    """Number the distinct ids of ids[b, :counts[b]] over the batch in first-seen order: union[u] is
    the u-th distinct id and cols[b, a] the column of ids[b, a]. slot (N,) int32 must be -1
    everywhere on entry and is again on return. Returns U."""
    u = 0
    for b in range(counts.shape[0]):
        for a in range(counts[b]):
            n = ids[b, a]
            c = slot[n]
            if c < 0:
                c = u
                slot[n] = c
                union[u] = n
                u += 1
            cols[b, a] = c
    for c in range(u):
        slot[union[c]] = -1
    return u


@njit(parallel=True, cache=True)
def union_loss(z, cols, counts, meta, spec, loss_kind, grad_scale, logits, grads, positions, g_out, nonzero, loss_out):
    """Each sample's loss over its own active neurons, read from the batch's logits z (B, U): the
    sample gathers logits[b, a] = z[b, cols[b, a]], takes softmax_xent / sigmoid_xent with the
    sampled-softmax correction of train_sample, and scatters its gradients into g_out (B, U)
    (zero on entry) at the same columns, marking nonzero[u] = 1 (U,) uint8 for every column that
    gets a non-zero one (benign races: every writer stores 1). meta (B, 2 + W) int32 is
    kernels.select_output_sample's [uniform_from, n_labels, label positions]; loss_out (B,)
    float64 gets the losses (0 for a sample without labels)."""
    last = spec.shape[0] - 1
    for i in prange(counts.shape[0]):
        b = np.int64(i)  # parfors type the index unsigned: one int64 type for every callee
        n = counts[b]
        n_labels = np.int64(meta[b, 1])
        loss_out[b] = 0.0
        if n_labels == 0 or n == 0:
            continue
        row_logits = logits[b]
        row_grads = grads[b]
        row_pos = positions[b]
        for a in range(n):
            row_logits[a] = z[b, cols[b, a]]
        for j in range(n_labels):
            row_pos[j] = meta[b, 2 + j]
        uniform_from, log_weight = correction_weight(spec, last, np.int64(meta[b, 0]), n)
        if loss_kind == LOSS_BCE:
            loss_out[b] = sigmoid_xent(row_logits, n, row_pos, n_labels, grad_scale, row_grads, uniform_from,
                                       log_weight)
        else:
            loss_out[b] = softmax_xent(row_logits, n, row_pos, n_labels, grad_scale, row_grads, uniform_from,
                                       log_weight)
        for a in range(n):
            v = row_grads[a]
            if v != 0.0:
                c = cols[b, a]
                g_out[b, c] = v
                if nonzero[c] == 0:  # read first: most columns are marked by the first samples
                    nonzero[c] = 1


# ---------------------------------------------------------------------------------------------
# The step's output layer (tier 1: Python around BLAS).
# ---------------------------------------------------------------------------------------------


class UnionStep(NamedTuple):
    """What union_output_step hands back to the engine."""

    hidden_grads: np.ndarray  # (B, D) float32 d loss / d last hidden layer, for PHASE_HIDDEN_BACKWARD
    rows: np.ndarray  # (R,) int64 output rows with a non-zero gradient ...
    weight_grads: np.ndarray  # (R, D) float32 ... and their weight gradients, for the optimizer
    union_rows: int  # U, for the density the engine tracks


def union_output_step(layer, spec, hidden, ids, counts, meta, loss_kind, grad_scale, buffers: UnionBuffers,
                      loss_out) -> UnionStep:
    """The output layer of a step whose samples' active sets (ids (B, A) int32, counts (B,) int64,
    meta (B, 2 + W) int32 from PHASE_SELECT) and last hidden activations hidden (B, D) float32 are
    known: the products over their union, the losses into loss_out (B,), the bias gradient into
    layer.bias_grad, and the touched marks of every row and bias with a non-zero gradient (as the
    per-sample backward sets them, so the optimizer and distributed sync see the same rows)."""
    u = union_columns(ids, counts, buffers.slot, buffers.union, buffers.cols)
    union = buffers.union[:u]
    w_union = np.take(layer.weights, union, axis=0)  # (U, D): the only rows the step reads
    z = hidden @ w_union.T
    z += layer.bias[union]
    g = np.zeros_like(z)
    nonzero = np.zeros(u, np.uint8)
    union_loss(z, buffers.cols, counts, meta, spec, np.int64(loss_kind), np.float32(grad_scale), buffers.logits,
               buffers.grads, buffers.positions, g, nonzero, loss_out)
    hidden_grads = g @ w_union
    weight_grads = g.T @ hidden  # BLAS reads g transposed in place
    bias_grads = g.sum(axis=0)
    rows = union.astype(np.int64)
    if not nonzero.all():  # only rows with a gradient, as the per-sample backward touches them
        keep = np.flatnonzero(nonzero)
        rows, weight_grads, bias_grads = rows[keep], weight_grads[keep], bias_grads[keep]
    layer.bias_grad[rows] += bias_grads
    layer.bias_touched[rows] = 1
    layer.row_touched[rows] = 1
    return UnionStep(hidden_grads=hidden_grads, rows=rows, weight_grads=weight_grads, union_rows=u)


def fits_first_step(batch: int, capacity: int, n: int) -> bool:
    """Whether a step with no measured density may try the products: their (B, U) float32
    matrices at the worst-case union stay under UNION_MAX_BYTES."""
    return batch * min(n, batch * capacity) * 4 <= UNION_MAX_BYTES

