"""The output layer of a training step row by row over the union of the batch's active sets: the
middle way between the per-sample kernels and union.py's dense products.

Why. The per-sample path reads a weight row for every (sample, neuron) pair it computes, twice
(the logit's dot product, then d hidden's axpy): at 512 hidden units and 1,024 active neurons that
is 4 MB a sample, so a step of 128 samples streams about 0.5 GB and waits on memory. The dense
products over the union (union.py) read each row once but spend B x U multiply-adds, worth it only
while the pairs fill UNION_MIN_DENSITY of the cells. Between the two, as on DebianDeps late in
training (128 x 1,024 pairs over ~10,000 of 22,875 rows: each row shared by ~13 samples at density
0.1), this path visits each row of the union once and computes only its own pairs there: the
pairs are counting-sorted by row (group_pairs), the logits computed row by row (grouped_logits,
four samples a pass over the row: dot_dense4), each sample's loss taken as on the other paths
(grouped_loss, union.sample_loss), and d hidden accumulated row by row into one (B, D) buffer per
thread (grouped_backward), summed after. The rows' gradients are left as the sorted pairs'
(sample, g) with g non-zero (drop_zero_pairs), the records the per-sample path writes and the
optimizer sums row by row (optimizer.adam_update_grouped).
In a standalone loop at that shape (2 threads) the logits and d hidden took 7.5-8.1 ms a step
against 11.9-15.2 ms per sample; the engine measures its choice per step (Engine._output_path).

Each pair's logit and gradient are the per-sample path's up to the order of float additions (the
dot products' and d hidden's sums), and every row's weight gradient is summed in batch order as
there, so tests/test_grouped.py holds the paths to each other and to NumPy references.

Shape letters: B batch, A active capacity, W label slots, U rows in the union, P (sample, neuron)
pairs of the step, D last hidden width, N output neurons, T thread chunks.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .constants import INTERNAL
from .kernels import dot_dense, dot_dense4
from .prefetch import prefetch_row, rows_ahead
from .union import UnionBuffers, sample_loss, union_columns

# Mean samples sharing a row of the union (pairs / U) from which this path beats the per-sample
# one; below it the sort and the per-thread d hidden buffers are not repaid. See Engine._output_path.
GROUPED_MIN_SHARING = 2.0


class GroupedStep(NamedTuple):
    """What grouped_output_step hands back to the engine: the output layer's weight gradient as
    sorted records (the rows with a non-zero gradient, and each row's (sample, g) pairs)."""

    hidden_grads: np.ndarray  # (B, D) float32 d loss / d last hidden layer, for PHASE_HIDDEN_BACKWARD
    rows: np.ndarray  # (R,) int64 output rows with a non-zero gradient
    row_start: np.ndarray  # (R + 1,) int64 row r's pairs are [row_start[r], row_start[r + 1])
    pair_b: np.ndarray  # (P',) int32 each pair's sample, rows' pairs in batch order ...
    pair_g: np.ndarray  # (P',) float32 ... and its d loss / d logit
    union_rows: int  # U, for the density the engine tracks


def grouped_step_shapes(batch: int, capacity: int, width: int, n: int, d: int, threads: int) -> dict:
    """grouped_output_step's temporaries beside the union's buffers (union.union_buffer_shapes),
    at most: for the memory estimate."""
    b, a, d = int(batch), int(capacity), int(d)
    pairs, u = b * a, min(int(n), b * a)
    return {"row_start": ((u + 1,), np.int64), "cursor": ((u,), np.int64), "pair_b": ((pairs,), np.int32),
            "pair_a": ((pairs,), np.int32), "pair_g": ((pairs,), np.float32), "rows": ((u,), np.int64),
            "thread_hidden_grads": ((max(1, int(threads)), b, d), np.float32), "hidden_grads": ((b, d), np.float32)}


# ---------------------------------------------------------------------------------------------
# The sort (serial, O(pairs)).
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def group_pairs(cols, counts, u, row_start, cursor, pair_b, pair_a):
    """Counting sort of the step's pairs (b, a), a < counts[b], by their union column cols[b, a]
    (< u): column c's pairs go to pair_b / pair_a[row_start[c]:row_start[c + 1]] in batch order
    (sample by sample, then active-set order), the order in which the per-sample path records
    them. row_start (>= u + 1,) and cursor (>= u,) int64 are overwritten. Returns the pairs."""
    for c in range(u + 1):
        row_start[c] = 0
    for b in range(counts.shape[0]):
        for a in range(counts[b]):
            row_start[cols[b, a] + 1] += 1
    for c in range(u):
        row_start[c + 1] += row_start[c]
        cursor[c] = row_start[c]
    for b in range(counts.shape[0]):
        for a in range(counts[b]):
            c = cols[b, a]
            k = cursor[c]
            pair_b[k] = b
            pair_a[k] = a
            cursor[c] = k + 1
    return row_start[u]


# ---------------------------------------------------------------------------------------------
# Per-row workers and their parallel drivers (prange over T chunks of rows of about equal pairs).
# ---------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def row_logits(w, bias, hidden, lo, hi, pair_b, pair_a, d, logits):
    """logits[b, a] = w . hidden[b] + bias for the pairs (b, a) in [lo, hi), four at a time."""
    k = lo
    while k + 4 <= hi:
        b0, b1, b2, b3 = pair_b[k], pair_b[k + 1], pair_b[k + 2], pair_b[k + 3]
        s0, s1, s2, s3 = dot_dense4(w, hidden[b0], hidden[b1], hidden[b2], hidden[b3], d)
        logits[b0, pair_a[k]] = s0 + bias
        logits[b1, pair_a[k + 1]] = s1 + bias
        logits[b2, pair_a[k + 2]] = s2 + bias
        logits[b3, pair_a[k + 3]] = s3 + bias
        k += 4
    while k < hi:
        b = pair_b[k]
        logits[b, pair_a[k]] = dot_dense(w, hidden[b], d) + bias
        k += 1


@njit(parallel=True, cache=True)
def grouped_logits(weights, bias, hidden, union, row_start, pair_b, pair_a, bounds, logits):
    """Every pair's logit, logits[b, a] (B, A) float32 = weights[n] . hidden[b] + bias[n] with n the
    pair's row union[c]: chunk t computes the rows union[bounds[t]:bounds[t + 1]]."""
    d = np.int64(hidden.shape[1])
    distance = rows_ahead(weights)  # prefetch.py: the union's rows lie far apart in memory
    for chunk in prange(bounds.shape[0] - 1):
        t = np.int64(chunk)  # parfors type the index unsigned: one int64 type for the callee
        end = bounds[t + 1]
        for c in range(bounds[t], end):
            if c + distance < end:
                prefetch_row(weights, union[c + distance])
            n = union[c]
            row_logits(weights[n], bias[n], hidden, row_start[c], row_start[c + 1], pair_b, pair_a, d, logits)


@njit(parallel=True, cache=True)
def grouped_loss(logits, counts, meta, spec, loss_kind, grad_scale, grads, positions, loss_out):
    """Each sample's loss over its own active logits logits[b, :counts[b]] (B, A), as union_loss
    takes it (union.sample_loss): d loss / d logit into grads (B, A), label positions into positions
    (B, W), losses into loss_out (B,) float64 (0 for a sample without labels or active neurons)."""
    last = spec.shape[0] - 1
    for i in prange(counts.shape[0]):
        b = np.int64(i)
        n = counts[b]
        loss_out[b] = 0.0
        if meta[b, 1] == 0 or n == 0:  # no loss: no gradient either (not last step's)
            for a in range(n):
                grads[b, a] = 0.0
            continue
        loss_out[b] = sample_loss(logits[b], n, meta, b, spec, last, loss_kind, grad_scale, positions[b], grads[b])


@njit(cache=True, **INTERNAL)
def row_backward(w, lo, hi, pair_b, pair_a, grads, d, hidden_grads, pair_g):
    """For the pairs (b, a) in [lo, hi) of row w: pair_g[k] = grads[b, a] and hidden_grads[b] +=
    g * w, four pairs a pass over the row."""
    k = lo
    while k + 4 <= hi:
        b0, b1, b2, b3 = pair_b[k], pair_b[k + 1], pair_b[k + 2], pair_b[k + 3]
        g0 = grads[b0, pair_a[k]]
        g1 = grads[b1, pair_a[k + 1]]
        g2 = grads[b2, pair_a[k + 2]]
        g3 = grads[b3, pair_a[k + 3]]
        pair_g[k], pair_g[k + 1], pair_g[k + 2], pair_g[k + 3] = g0, g1, g2, g3
        if g0 != 0.0 or g1 != 0.0 or g2 != 0.0 or g3 != 0.0:
            h0, h1, h2, h3 = hidden_grads[b0], hidden_grads[b1], hidden_grads[b2], hidden_grads[b3]
            for j in range(d):
                wj = w[j]
                h0[j] += g0 * wj
                h1[j] += g1 * wj
                h2[j] += g2 * wj
                h3[j] += g3 * wj
        k += 4
    while k < hi:
        b = pair_b[k]
        g = grads[b, pair_a[k]]
        pair_g[k] = g
        if g != 0.0:
            h = hidden_grads[b]
            for j in range(d):
                h[j] += g * w[j]
        k += 1


@njit(parallel=True, cache=True)
def grouped_backward(weights, union, row_start, pair_b, pair_a, grads, bounds, thread_hidden_grads, pair_g):
    """d loss / d hidden of every sample, chunk t adding its rows' pairs into its own buffer
    thread_hidden_grads[t] (T, B, D) float32 (zero on entry; the caller sums them), so no two
    threads add into the same floats; each pair's g into pair_g (P,) float32, in the pairs' sorted
    order."""
    d = np.int64(thread_hidden_grads.shape[2])
    distance = rows_ahead(weights)
    for chunk in prange(bounds.shape[0] - 1):
        t = np.int64(chunk)
        end = bounds[t + 1]
        for c in range(bounds[t], end):
            if c + distance < end:
                prefetch_row(weights, union[c + distance])
            row_backward(weights[union[c]], row_start[c], row_start[c + 1], pair_b, pair_a, grads, d,
                         thread_hidden_grads[t], pair_g)


@njit(cache=True)
def drop_zero_pairs(union, row_start, pair_b, pair_g, rows):
    """Keep the pairs with a non-zero g, in order, and the rows left with one: the records the
    per-sample path writes (it records no zero gradient, so an unlabelled sample's hidden row is
    never read, nor a row without gradient updated). In place: row r of the result is rows[r],
    its pairs pair_b / pair_g[row_start[r]:row_start[r + 1]]. Returns R."""
    kept = 0
    r = 0
    lo = row_start[0]
    row_start[0] = 0
    for c in range(union.shape[0]):
        hi = row_start[c + 1]  # read before row_start[r + 1 <= c + 1] is written
        first = kept
        for k in range(lo, hi):
            g = pair_g[k]
            if g != 0.0:
                pair_b[kept] = pair_b[k]
                pair_g[kept] = g
                kept += 1
        if kept > first:
            rows[r] = union[c]
            r += 1
            row_start[r] = kept
        lo = hi
    return r


# ---------------------------------------------------------------------------------------------
# The step's output layer (tier 1: Python around the drivers).
# ---------------------------------------------------------------------------------------------


def chunk_bounds(row_start: np.ndarray, u: int, n_chunks: int) -> np.ndarray:
    """(n_chunks + 1,) int64 column bounds splitting the u rows into chunks of about equal pairs
    (a row's own visit counted as one pair)."""
    cost = row_start[:u + 1] + np.arange(u + 1)
    bounds = np.searchsorted(cost, cost[-1] * np.arange(n_chunks + 1) / n_chunks, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, u
    return np.maximum.accumulate(bounds)


def grouped_output_step(layer, spec, hidden, ids, counts, meta, loss_kind, grad_scale, buffers: UnionBuffers,
                        loss_out) -> GroupedStep:
    """The output layer of a step whose samples' active sets (ids (B, A) int32, counts (B,) int64,
    meta (B, 2 + W) int32 from PHASE_SELECT) and last hidden activations hidden (B, D) float32 are
    known, computed row by row over their union: the losses into loss_out (B,), d hidden, and the
    weight and bias gradients as sorted records for optimizer.adam_update_grouped. Marks every row
    and bias with a non-zero gradient touched, as the per-sample backward does."""
    u = union_columns(ids, counts, buffers.slot, buffers.union, buffers.cols)
    # the rows in ascending order, as the records path updates them: Adam's walk over the moments
    # then runs forward through memory (9.4 against 13.1 ms a step in first-seen order)
    order = np.argsort(buffers.union[:u], kind="stable")
    rank = np.empty(u, np.int32)
    rank[order] = np.arange(u, dtype=np.int32)
    union = buffers.union[:u][order]
    if u:
        cols = buffers.cols[:counts.shape[0]]
        used = np.arange(cols.shape[1])[None, :] < counts[:, None]
        cols[:] = np.where(used, rank[np.clip(cols, 0, u - 1)], 0)
    pairs = int(counts.sum())
    row_start = np.empty(u + 1, np.int64)
    pair_b, pair_a = np.empty(pairs, np.int32), np.empty(pairs, np.int32)
    group_pairs(buffers.cols, counts, np.int64(u), row_start, np.empty(u, np.int64), pair_b, pair_a)
    bounds = chunk_bounds(row_start, u, max(1, min(numba.get_num_threads(), u)))
    grouped_logits(layer.weights, layer.bias, hidden, union, row_start, pair_b, pair_a, bounds, buffers.logits)
    grouped_loss(buffers.logits, counts, meta, spec, np.int64(loss_kind), np.float32(grad_scale), buffers.grads,
                 buffers.positions, loss_out)
    thread_hidden_grads = np.zeros((bounds.shape[0] - 1, hidden.shape[0], hidden.shape[1]), np.float32)
    pair_g = np.empty(pairs, np.float32)
    grouped_backward(layer.weights, union, row_start, pair_b, pair_a, buffers.grads, bounds, thread_hidden_grads,
                     pair_g)
    hidden_grads = thread_hidden_grads[0] if thread_hidden_grads.shape[0] == 1 else thread_hidden_grads.sum(axis=0)
    rows = np.empty(u, np.int64)
    r = drop_zero_pairs(union, row_start, pair_b, pair_g, rows)
    rows, row_start = rows[:r], row_start[:r + 1]
    pair_b, pair_g = pair_b[:row_start[r]], pair_g[:row_start[r]]
    layer.bias_touched[rows] = 1
    layer.row_touched[rows] = 1
    return GroupedStep(hidden_grads=hidden_grads, rows=rows, row_start=row_start, pair_b=pair_b, pair_g=pair_g,
                       union_rows=u)
