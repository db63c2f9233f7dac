"""Row-sparse optimizer steps: only the weight rows and biases touched in the batch are visited.

SLIDE's C++ ran a dense Adam step over every neuron after each batch; at 670K output neurons that
step alone costs more than the sparse forward/backward. Here each layer's `row_touched` marks
(set during backward) are turned into a row list, and the update runs over those rows only.
Untouched rows keep their moments unchanged until they next receive gradient ("lazy" Adam, as in
TensorFlow's LazyAdam): the bias correction uses the global step, so a row's first update after
a pause is a normal Adam update with stale moments, not a catch-up.

Each kernel also zeroes the gradient rows it consumed and clears their touched marks, so the
next batch starts from clean accumulators without a pass over the whole layer.

The output layer over a dense last hidden layer (Engine.records_output) has no accumulated
gradient rows: the kernels record (row, sample, g) per active neuron and keep each sample's hidden
vector, and `apply_recorded_adam` groups the records by row (a counting sort in batch order) and
builds each row's gradient, sum of g * hidden, in a per-thread buffer just before its Adam step
(adding in batch order in float32, as one thread's backward_layer would: serial training is
bit-identical to accumulating weight_grad).
The row's gradient then never travels through memory: at 512 hidden units that removed the
kernel's read-modify-write of a 2 KB gradient row per active neuron and the optimizer's read and
zeroing of it, for a float32 sum in cache.

No fastmath here: the optimizer decides the weights, and reassociation bought NaNs in UMAP's SGD.

Shapes: N rows of a layer (neurons, or input features for layer 0), D its row width, R the rows
touched in a batch, B samples of the batch, T threads.
"""

import numba
import numpy as np
from numba import njit, prange

from .constants import INTERNAL
from .prefetch import prefetch_row, rows_ahead

# Cost of a row's Adam update in units of one gradient record (both stream about one row of D
# floats), for splitting recorded rows into thread chunks of equal cost.
RECORDED_ROW_COST = 3


# Moments under MOMENT_FLOOR are stored as zero. A unit whose gradient stays zero (a dead ReLU, a
# dropped unit) decays its first moment by beta1 at each touch of its row, and within ~700 touches
# the update's products (lr_t * m) fall below float32's smallest normal number, where every
# operation takes a microcode assist (numba does not set the CPU's flush-to-zero mode): Adam over
# 4,000 x 512 such rows took 19-20 ms a step against 1.1-1.2 ms (1 thread). A moment under 1e-30
# moves a weight by at most lr_t * 1e-30 / eps, 1e-22 at lr_t <= 1 and eps 1e-8: below the float32
# spacing of any weight above 1e-15, so no weight that matters changes.
MOMENT_FLOOR = np.float32(1e-30)


@njit(cache=True, error_model="numpy", **INTERNAL)
def adam_scalar(p, m, v, g, lr_t, beta1, beta2, eps, shrink):
    """One parameter's Adam step: returns the new (m, v, p) from p, its moments m, v and gradient g."""
    m_new = beta1 * m + (np.float32(1.0) - beta1) * g
    v_new = beta2 * v + (np.float32(1.0) - beta2) * g * g
    m_new = m_new if abs(m_new) >= MOMENT_FLOOR else np.float32(0.0)
    v_new = v_new if v_new >= MOMENT_FLOOR else np.float32(0.0)
    return m_new, v_new, shrink * p - lr_t * m_new / (np.sqrt(v_new) + eps)


@njit(cache=True, error_model="numpy", **INTERNAL)
def adam_row(p, mm, vv, g, lr_t, beta1, beta2, eps, shrink):
    """One row's Adam step from its gradient g (D,): the moments mm / vv and the parameters p
    (AdamW: p shrinks by `shrink` = 1 - lr * weight_decay first). The one place the update's
    arithmetic lives (adam_scalar, per element); adam_update_rows and adam_row_recorded differ only
    in where g comes from."""
    for j in range(p.shape[0]):
        mm[j], vv[j], p[j] = adam_scalar(p[j], mm[j], vv[j], g[j], lr_t, beta1, beta2, eps, shrink)


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update_rows(param, grad, m, v, touched, rows, lr_t, beta1, beta2, eps, decay):
    """Adam on rows `rows` of the 2-D arrays param/grad/m/v (all the same shape, float32).

    lr_t already carries the bias correction: lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    decay = lr * weight_decay shrinks the row first, decoupled from the moments (AdamW,
    Loshchilov & Hutter 2019); like the moments, a row decays only in the steps that touch it.
    Each row is owned by one iteration: no races. All arithmetic stays in float32 (a float64
    literal such as `1.0 - beta1` would promote the whole update to float64 and halve the SIMD
    width), and error_model="numpy" drops the division's zero check (eps > 0): 22,875 x 128
    rows took 0.88 instead of 1.35 ms on one core.
    """
    shrink = np.float32(1.0) - decay
    distance = rows_ahead(param)  # prefetch.py: rows of a large array lie far apart in memory
    for r in prange(rows.shape[0]):
        if r + distance < rows.shape[0]:
            ahead = rows[r + distance]
            prefetch_row(param, ahead)
            prefetch_row(grad, ahead)
            prefetch_row(m, ahead)
            prefetch_row(v, ahead)
        row = rows[r]
        g = grad[row]
        adam_row(param[row], m[row], v[row], g, lr_t, beta1, beta2, eps, shrink)
        g[:] = 0.0  # consumed
        touched[row] = 0


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update_gathered(param, m, v, touched, rows, grads, lr_t, beta1, beta2, eps, decay):
    """Adam on rows `rows` (R,) of param/m/v from their gradients grads (R, D) float32, row r's in
    grads[r]: the output layer after a batch product over the union of its active sets
    (union.py), whose gradient exists only for those rows. Otherwise as adam_update_rows."""
    shrink = np.float32(1.0) - decay
    distance = rows_ahead(param)
    for r in prange(rows.shape[0]):
        if r + distance < rows.shape[0]:
            ahead = rows[r + distance]
            prefetch_row(param, ahead)
            prefetch_row(m, ahead)
            prefetch_row(v, ahead)
        row = rows[r]
        adam_row(param[row], m[row], v[row], grads[r], lr_t, beta1, beta2, eps, shrink)
        touched[row] = 0


@njit(cache=True, **INTERNAL)
def record_chunk(rows, t, n_chunks, n_ids):
    """(first, end, lo, hi): chunk t of group_records owns rows[first:end] and the row ids [lo, hi),
    from its first row up to the next chunk's first (the first chunk from 0, the last to n_ids)."""
    n_rows = rows.shape[0]
    first, end = t * n_rows // n_chunks, (t + 1) * n_rows // n_chunks
    lo = 0 if t == 0 else rows[first]
    hi = n_ids if t == n_chunks - 1 else rows[end]
    return first, end, lo, hi


@njit(parallel=True, cache=True)
def group_records(rows, counts, rec_rows, rec_grads, cursor, row_start, sorted_pos, sorted_g, n_chunks):
    """Counting sort of the output layer's gradient records (network.OutputRecords) by row.

    rows (R,) the touched rows, ascending; counts (B,) records per sample; rec_rows / rec_grads
    (B, A). Writes row_start (R + 1,) int64 and, for r < R, the records of rows[r] into
    sorted_pos / sorted_g[row_start[r]:row_start[r + 1]] as (sample position, g), in batch order
    (sample by sample, then active-set order), so the sums that follow do not depend on the thread
    split. cursor (N,) int64 must be zero and is left zero. Returns the records placed, -1 if
    some record's row is not in `rows`, or -2 if `rows` is not strictly ascending (nothing is then
    placed).

    In parallel over n_chunks chunks of `rows`: chunk t owns the row ids from its first row up to
    the next chunk's first (the first chunk from 0, the last to N), scans every record and counts,
    then places, only those of its ids, so no two threads write one cursor slot, row_start entry or
    sorted slot. Each thread reads all B x A records twice (sequentially); the scattered counting
    and placing are split. On one thread this sort took 1.4 ms of a 670K-shape step's 14 ms of
    optimizer at 2 threads, all of it serial."""
    n_rows = rows.shape[0]
    n_chunks = max(1, min(n_chunks, n_rows))
    n_ids = cursor.shape[0]
    totals = np.zeros(n_chunks + 1, np.int64)
    for r in range(n_rows - 1):  # the chunks' id ranges are cut at rows: unsorted rows would overlap them
        if rows[r] >= rows[r + 1]:
            return -2
    n_records = 0
    for b in range(counts.shape[0]):
        n_records += counts[b]
    for chunk in prange(n_chunks):
        t = np.int64(chunk)  # parfors type the index unsigned
        first, end, lo, hi = record_chunk(rows, t, n_chunks, n_ids)
        for b in range(counts.shape[0]):
            for c in range(counts[b]):
                n = rec_rows[b, c]
                if lo <= n < hi:
                    cursor[n] += 1
        total = 0
        for r in range(first, end):
            total += cursor[rows[r]]
        totals[t + 1] = total
    for t in range(n_chunks):
        totals[t + 1] += totals[t]
    if totals[n_chunks] != n_records:  # a record outside `rows`: restore the zeros and refuse
        for b in range(counts.shape[0]):
            for c in range(counts[b]):
                cursor[rec_rows[b, c]] = 0
        return -1
    for chunk in prange(n_chunks):
        t = np.int64(chunk)
        first, end, lo, hi = record_chunk(rows, t, n_chunks, n_ids)
        total = totals[t]
        for r in range(first, end):
            row_start[r] = total
            total += cursor[rows[r]]
            cursor[rows[r]] = row_start[r]
        for b in range(counts.shape[0]):
            for c in range(counts[b]):
                n = rec_rows[b, c]
                if lo <= n < hi:
                    k = cursor[n]
                    sorted_pos[k] = b
                    sorted_g[k] = rec_grads[b, c]
                    cursor[n] = k + 1
        for r in range(first, end):
            cursor[rows[r]] = 0
    row_start[n_rows] = n_records
    return n_records


@njit(cache=True, error_model="numpy", **INTERNAL)
def adam_row_recorded(p, mm, vv, bias, bias_m, bias_v, row, lo, hi, sorted_pos, sorted_g, hidden, acc, lr_t, beta1,
                      beta2, eps, shrink):
    """Adam on one row whose gradient is sum_{k in [lo, hi)} sorted_g[k] * hidden[sorted_pos[k]],
    built in acc (D,) float32 first, then adam_row as in adam_update_rows; and on its bias
    bias[row], whose gradient is sum_{k in [lo, hi)} sorted_g[k] (never decayed)."""
    width = p.shape[0]
    for j in range(width):
        acc[j] = 0.0
    # Four records per pass over acc: acc's loads and stores, not the multiply-adds, bound a pass
    # (36 ns a record one at a time at D = 512). Each element still adds the records one by one in
    # batch order, the order (and float32 rounding) in which backward_layer would have accumulated
    # them on one thread, so serial training is bit-identical to accumulating weight_grad. The
    # bias's sum runs in the same order, as backward_layer's bias_grad would have.
    bias_g = np.float32(0.0)
    k = lo
    while k + 4 <= hi:
        g0 = sorted_g[k]
        g1 = sorted_g[k + 1]
        g2 = sorted_g[k + 2]
        g3 = sorted_g[k + 3]
        bias_g = (((bias_g + g0) + g1) + g2) + g3
        h0 = hidden[sorted_pos[k]]
        h1 = hidden[sorted_pos[k + 1]]
        h2 = hidden[sorted_pos[k + 2]]
        h3 = hidden[sorted_pos[k + 3]]
        for j in range(width):
            s = acc[j] + g0 * h0[j]
            s = s + g1 * h1[j]
            s = s + g2 * h2[j]
            acc[j] = s + g3 * h3[j]
        k += 4
    while k < hi:
        g = sorted_g[k]
        bias_g += g
        h = hidden[sorted_pos[k]]
        for j in range(width):
            acc[j] += g * h[j]
        k += 1
    adam_row(p, mm, vv, acc, lr_t, beta1, beta2, eps, shrink)
    bias_m[row], bias_v[row], bias[row] = adam_scalar(bias[row], bias_m[row], bias_v[row], bias_g, lr_t, beta1, beta2,
                                                      eps, np.float32(1.0))


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update_rows_recorded(param, m, v, bias, bias_m, bias_v, touched, bias_touched, rows, row_start, chunk_bounds,
                              sorted_pos, sorted_g, hidden, acc, lr_t, beta1, beta2, eps, decay):
    """Adam on rows `rows` (R,) of param/m/v (N, D) and on their biases (N,) with the gradients
    rebuilt from grouped records (group_records): chunk t owns rows[chunk_bounds[t]:chunk_bounds[t + 1]]
    and scratch acc[t] (T, D), so no two threads write the same row. Clears the rows' touched
    marks and bias marks. The bias of a row is updated beside it, not in a pass of its own: at the
    670K shape that pass read and wrote four scattered floats per row (bias, gradient, moments)."""
    shrink = np.float32(1.0) - decay
    n_chunks = chunk_bounds.shape[0] - 1
    distance = rows_ahead(param)  # prefetch.py: rows of a large array lie far apart in memory
    for chunk in prange(n_chunks):
        t = np.int64(chunk)  # parfors type the index unsigned: one int64 type for the callee
        end = chunk_bounds[t + 1]
        for r in range(chunk_bounds[t], end):
            if r + distance < end:
                ahead = rows[r + distance]
                prefetch_row(param, ahead)
                prefetch_row(m, ahead)
                prefetch_row(v, ahead)
            row = rows[r]
            adam_row_recorded(param[row], m[row], v[row], bias, bias_m, bias_v, row, row_start[r], row_start[r + 1],
                              sorted_pos, sorted_g, hidden, acc[t], lr_t, beta1, beta2, eps, shrink)
            touched[row] = 0
            bias_touched[row] = 0


def apply_recorded_adam(layer, records, rows: np.ndarray, lr_t, beta1, beta2, eps, decay) -> None:
    """Adam on the touched rows and biases of an output layer whose gradient is held as records
    (network.OutputRecords): group them by row, split the rows into thread chunks of about equal
    cost (records plus a few for the update itself), run adam_update_rows_recorded, and clear the
    records. layer.weight_grad and layer.bias_grad are neither read nor written."""
    row_start = np.empty(rows.shape[0] + 1, np.int64)
    n_chunks = max(1, min(numba.get_num_threads(), rows.shape[0]))
    placed = group_records(rows, records.counts, records.rows, records.grads, records.cursor, row_start,
                           records.sorted_pos, records.sorted_g, np.int64(n_chunks))
    if placed == -2:
        raise RuntimeError("the touched rows of the output layer are not in ascending order")
    if placed < 0:
        raise RuntimeError("output gradient records name rows that are not marked touched")
    cost = row_start + RECORDED_ROW_COST * np.arange(rows.shape[0] + 1)
    bounds = np.searchsorted(cost, cost[-1] * np.arange(n_chunks + 1) / n_chunks, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, rows.shape[0]
    acc = np.empty((n_chunks, layer.weights.shape[1]), np.float32)
    adam_update_rows_recorded(layer.weights, layer.weight_m, layer.weight_v, layer.bias, layer.bias_m, layer.bias_v,
                              layer.row_touched, layer.bias_touched, rows, row_start, np.maximum.accumulate(bounds),
                              records.sorted_pos, records.sorted_g, records.hidden, acc, lr_t, beta1, beta2, eps,
                              decay)
    records.counts[:] = 0


def recorded_weight_grad(records, shape) -> np.ndarray:
    """The dense (N, D) float64 weight gradient the records stand for: for tests and debugging
    (the optimizer never builds it)."""
    grad = np.zeros(shape, np.float64)
    for b in range(records.counts.shape[0]):
        c = int(records.counts[b])
        rows = records.rows[b, :c]
        np.add.at(grad, rows, records.grads[b, :c, None].astype(np.float64) * records.hidden[b].astype(np.float64))
    return grad


def recorded_bias_grad(records, n) -> np.ndarray:
    """The (N,) float64 bias gradient the records stand for (the sum of each row's g): for tests
    and debugging, as recorded_weight_grad."""
    grad = np.zeros(n, np.float64)
    for b in range(records.counts.shape[0]):
        c = int(records.counts[b])
        np.add.at(grad, records.rows[b, :c], records.grads[b, :c].astype(np.float64))
    return grad


@njit(parallel=True, cache=True)
def sgd_update_rows(param, grad, touched, rows, lr):
    """Plain SGD on rows `rows`: param -= lr * grad; zeroes the consumed gradient."""
    width = param.shape[1]
    for r in prange(rows.shape[0]):
        row = rows[r]
        p = param[row]
        g = grad[row]
        for j in range(width):
            p[j] -= lr * g[j]
            g[j] = 0.0
        touched[row] = 0


MARK_BLOCK_MIN = 1 << 16  # marks per thread block at least: a smaller layer is scanned by one thread


def touched_rows(touched: np.ndarray) -> np.ndarray:
    """Indices (int64) of the marked rows (non-zero bytes of the uint8 marks), ascending: what
    np.flatnonzero gives. A layer of 2 x MARK_BLOCK_MIN rows or more is scanned a word (8 rows)
    at a time, skipping unmarked words, in blocks of at least MARK_BLOCK_MIN rows, one per thread;
    a smaller one by np.flatnonzero, since starting the scan's kernels would cost more than it.

    Why. The optimizer asks for the marked rows of every layer's weights and biases each step: at
    the Amazon-670K shape four scans of 670,091 marks, 5% of a step's time on one thread in
    np.flatnonzero (perf, 2-core VM), and serial while the other thread waits. Even on one
    thread the word scan is faster: 670,091 marks with 45,000 set took 0.84 ms against
    np.flatnonzero's 1.43 ms."""
    if not (isinstance(touched, np.ndarray) and touched.dtype == np.uint8 and touched.ndim == 1
            and touched.flags.c_contiguous):
        raise ValueError("touched: need a contiguous 1-d uint8 array of marks")
    n = touched.shape[0]
    if n < 2 * MARK_BLOCK_MIN:
        return np.flatnonzero(touched)
    n_blocks = max(1, min(numba.get_num_threads(), n // MARK_BLOCK_MIN))
    # block edges on whole 8-byte words, so each block scans its own words
    edges = (np.arange(n_blocks + 1, dtype=np.int64) * (n // 8) // n_blocks) * 8
    edges[-1] = n
    counts = np.zeros(n_blocks + 1, np.int64)
    count_marks(touched, edges, counts[1:])
    starts = np.cumsum(counts)
    out = np.empty(starts[-1], np.int64)
    fill_marks(touched, edges, starts, out)
    return out


@njit(cache=True, **INTERNAL)
def _nonzero_bytes(word):
    """0x01 in each byte of the uint64 `word` that is non-zero, 0x00 elsewhere."""
    b = word | (word >> np.uint64(4))
    b |= b >> np.uint64(2)
    b |= b >> np.uint64(1)
    return b & np.uint64(0x0101010101010101)


@njit(cache=True, **INTERNAL)
def _marks_in(touched, lo, hi, out, at):
    """Rows of touched[lo:hi] with a non-zero mark: written to out[at:] if out has room, else only
    counted; returns how many. lo is a multiple of 8, so whole uint64 words cover
    [lo, hi - (hi - lo) % 8); a count adds a word's marks without a branch per row."""
    n_words = (hi - lo) // 8
    words = touched[lo:lo + 8 * n_words].view(np.uint64)
    k = 0
    if out.shape[0] == 0:
        for w in range(n_words):
            k += (_nonzero_bytes(words[w]) * np.uint64(0x0101010101010101)) >> np.uint64(56)
    else:
        for w in range(n_words):
            if words[w] != 0:
                base = lo + 8 * w
                for r in range(base, base + 8):
                    if touched[r] != 0:
                        out[at + k] = r
                        k += 1
    for r in range(lo + 8 * n_words, hi):
        if touched[r] != 0:
            if out.shape[0] > 0:
                out[at + k] = r
            k += 1
    return k


@njit(parallel=True, cache=True)
def count_marks(touched, edges, counts):
    """counts[b] = marked rows of touched[edges[b]:edges[b + 1]], one block per thread."""
    nothing = np.empty(0, np.int64)
    for block in prange(edges.shape[0] - 1):
        b = np.int64(block)
        counts[b] = _marks_in(touched, edges[b], edges[b + 1], nothing, np.int64(0))


@njit(parallel=True, cache=True)
def fill_marks(touched, edges, starts, out):
    """The marked rows of block b into out[starts[b]:starts[b + 1]], ascending."""
    for block in prange(edges.shape[0] - 1):
        b = np.int64(block)
        _marks_in(touched, edges[b], edges[b + 1], out, starts[b])


def adam_lr(lr: float, beta1: float, beta2: float, step: int) -> np.float32:
    """The bias-corrected step size of Adam at 1-based step `step`."""
    return np.float32(lr * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))


def scheduled_lr(lr: float, schedule: str, warmup_steps: int, step: int, progress: float) -> float:
    """The learning rate of 0-based step `step`: `lr` ramped up linearly over `warmup_steps`, and
    for the "linear" schedule scaled by (1 - progress), progress in [0, 1] being the share of the
    run already done. "constant" with no warm-up returns `lr` itself."""
    factor = 1.0
    if warmup_steps and step < warmup_steps:
        factor = (step + 1) / warmup_steps
    if schedule == "linear":
        factor *= max(0.0, 1.0 - min(1.0, progress))
    return lr if factor == 1.0 else lr * factor


def apply_updates(layers, *, optimizer: str, lr: float, beta1: float, beta2: float, eps: float, step: int,
                  weight_decay: float = 0.0, input_scale: float = 1.0, records=None, gathered=None) -> int:
    """One optimizer step over every layer's touched rows and biases. Returns rows updated.
    Adam's weight_decay applies to weight rows, never to biases.

    input_scale (Engine.input_scale): layer 0's weights W stand for c W over inputs scaled by c, so
    their step is the one c W would take on the scaled inputs, times c: Adam's step does not depend
    on the gradient's scale, so lr c; SGD's gradient on W is 1 / c of the scaled one, so lr c^2.
    The decay's shrink factor is the same either way.

    records (network.OutputRecords, Adam only): the output layer's weight gradient of this batch,
    held as records instead of in its weight_grad (kernels.train_batch with record_output).
    gathered ((rows (R,) int64, grads (R, D) float32), Adam only): the output layer's weight
    gradient as rows of their own (union.union_output_step); records are then not read."""
    if (records is not None or gathered is not None) and optimizer != "adam":
        raise ValueError("output gradient records are applied by Adam only")
    updated = 0
    lr_t = adam_lr(lr, beta1, beta2, step) if optimizer == "adam" else np.float32(lr)
    b1, b2, e = np.float32(beta1), np.float32(beta2), np.float32(eps)
    decay, no_decay = np.float32(lr * weight_decay), np.float32(0.0)
    input_lr_t = np.float32(lr_t * (input_scale if optimizer == "adam" else input_scale * input_scale))
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        rows = touched_rows(layer.row_touched)
        weight_lr_t = input_lr_t if index == 0 else lr_t
        # A neuron-major layer (every layer after the input-major first) marks a neuron's weight
        # row and its bias together, so its bias marks are its row marks: one scan serves both.
        bias_rows = touched_rows(layer.bias_touched) if index == 0 else rows
        # A bias vector is updated as a column of one-float rows: the same kernel serves both.
        bias2 = layer.bias.reshape(-1, 1)
        bias_grad2 = layer.bias_grad.reshape(-1, 1)
        if optimizer == "adam":
            if gathered is not None and index == last:
                rows, grads = gathered
                adam_update_gathered(layer.weights, layer.weight_m, layer.weight_v, layer.row_touched, rows, grads,
                                     lr_t, b1, b2, e, decay)
            elif records is not None and index == last:  # the biases are updated beside their rows
                apply_recorded_adam(layer, records, rows, lr_t, b1, b2, e, decay)
                updated += rows.shape[0]
                continue
            else:
                adam_update_rows(layer.weights, layer.weight_grad, layer.weight_m, layer.weight_v,
                                 layer.row_touched, rows, weight_lr_t, b1, b2, e, decay)
            adam_update_rows(bias2, bias_grad2, layer.bias_m.reshape(-1, 1), layer.bias_v.reshape(-1, 1),
                             layer.bias_touched, bias_rows, lr_t, b1, b2, e, no_decay)
        else:
            sgd_update_rows(layer.weights, layer.weight_grad, layer.row_touched, rows, weight_lr_t)
            sgd_update_rows(bias2, bias_grad2, layer.bias_touched, bias_rows, lr_t)
        updated += rows.shape[0]
    return updated
