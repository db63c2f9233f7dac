"""Sparse forward/backward over per-sample active sets, and the parallel batch drivers.

Three tiers (see STYLE.md):
  * `engine.py` validates and allocates (Python);
  * `train_batch` / `infer_batch` are the parallel drivers: `prange` over T thread chunks, each
    chunk a contiguous block of the batch with its own scratch row `t`, run by the serial chunk
    workers `train_chunk` / `infer_chunk`;
  * `train_sample` / `forward_sample` are the serial per-sample workers; each layer's active set
    comes from one call of `selection.select_active`.

Compile cost. Every njit function called from another is compiled on its own and then optimised
again inside each caller, so the drivers call their chunk workers through the workers' addresses
(indirect.py), which links nothing: each driver compiles to its own few lines, and a second
process can compile it while this one compiles the worker (precompile.py). Each serial function
has one signature: the prange index is cast to int64 (parfors type it unsigned, which would
compile every callee twice), flags are passed as runtime values rather than literals, and `kinds`
(constants.kinds_marker) keeps the index kinds a network does not query out of the compiled code.

Phases. Where a batch's output sets overlap, the engine runs the output layer as dense products
over their union (union.py) and calls train_batch per phase: PHASE_HIDDEN / PHASE_SELECT(_SCORED)
for the hidden layers and the output's selection, PHASE_HIDDEN_BACKWARD after the products. Each
phase re-seeds a sample's RNG and recomputes its hidden layers (cheap next to the output layer),
so every phase sees the dropout masks and active sets of the whole-sample path, PHASE_FULL; a
single hidden layer's backward restores its activations from those the first phase kept. On a
cluster index the whole-sample path splits the same way: PHASE_HIDDEN, one product for every
sample's centroid scores, then PHASE_FULL_SCORED, PHASE_FULL reading them.

Output gradient records. With `record_output` (Engine.records_output: Adam, dense last hidden
layer) the output layer's weight and bias gradients are not accumulated: `backward_output_recorded`
writes the sample's (row, g) pairs and its hidden vector into per-sample slots
(network.OutputRecords), and the optimizer sums g * hidden (and g, for the bias) per row as it
updates it (optimizer.apply_recorded_adam). The slots are indexed by batch position, so they do
not depend on the thread split.

Hogwild. Threads add their samples' gradients into the shared `weight_grad` / `bias_grad` arrays
and set `row_touched` / `bias_touched` marks without locks, on purpose: two threads rarely hit the
same (row, column) at once when active sets are sparse, and a lost float add costs less than any
lock (SLIDE's finding). The marks are idempotent byte stores, so their races are benign. Nothing
else is shared: scratch, RNG state and outputs are indexed by chunk or sample. With one chunk
(`training.deterministic`, or threads = 1) the order of every addition is fixed, so reruns are
bit-identical.

Randomness (negatives, top-ups, dropout masks) comes from a per-sample state seeded by (seed, step, position in
batch), so it does not depend on which thread runs a sample.

Shape letters: B batch, F input features, D layer input dim, N neurons, A active capacity,
T thread chunks, K top-k.
"""

import numpy as np
from numba import njit, prange, typeof, types

from .constants import (INTERNAL, LOSS_BCE, MODE_ALL, PHASE_FULL, PHASE_FULL_SCORED, PHASE_HIDDEN,
                        PHASE_HIDDEN_BACKWARD, PHASE_SELECT_SCORED, SPEC_DROPOUT_PPM, SPEC_INFER_MODE, SPEC_MODE)
from .borrow import borrow, borrow_for_chunks, chunk_list_type
from .indirect import call_worker, type_fingerprint, worker_table
from .prefetch import prefetch_row, rows_ahead
from .rng import derive_seed, seed_state, uniform_of, xorshift_step
from .scoring import push_topk
from .selection import correction_weight, select_active, unique_prefix


# ---------------------------------------------------------------------------------------------
# Dot products: the only place fastmath is allowed (reassociation lets LLVM vectorise the sum).
# ---------------------------------------------------------------------------------------------


@njit(fastmath=True, cache=True, **INTERNAL)
def dot_dense(w, x, n):
    """sum_j w[j] * x[j] for j < n."""
    s = np.float32(0.0)
    for j in range(n):
        s += w[j] * x[j]
    return s


@njit(fastmath=True, cache=True, **INTERNAL)
def dot_gather(w, ids, x, n):
    """sum_j w[ids[j]] * x[j] for j < n."""
    s = np.float32(0.0)
    for j in range(n):
        s += w[ids[j]] * x[j]
    return s


@njit(cache=True, **INTERNAL)
def mark_touched(touched, r):
    """Set touched[r] = 1, reading first: most marks are already set after the first samples of a
    batch, and a load keeps the cache line shared between cores where a store would bounce it."""
    if touched[r] == 0:
        touched[r] = 1


# ---------------------------------------------------------------------------------------------
# Layer forward / backward over active sets. `dense_out` means ids[:n_act] == arange(N) and
# `dense_in` means the input set is the previous layer's every neuron in id order; both unlock
# contiguous loops.
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def local_sum(start, n):
    """A private copy of start[:n] to accumulate into, written back by the caller when done.

    Why: a loop that adds row after row into a row of a scratch array passed in (one row per
    thread chunk) ran no faster on two threads than on one, while the same loop into a freshly
    allocated array ran 1.9x faster (a standalone kernel on the 2-core VM). In training, with
    borrow.py, Bibtex's hidden-layer forward phase (batches of 128, dropout) went from 1.51 / 1.18
    ms on one / two threads to 1.36 / 0.91 ms. Our reading, not verified in the machine code: the
    compiler cannot tell a passed-in row from the weights it reads, so it keeps the sums in memory,
    while a fresh array cannot alias anything. The sums are those of the in-place loop, in the same
    order.
    """
    acc = np.empty(n, np.float32)
    for j in range(n):
        acc[j] = start[j]
    return acc


@njit(cache=True)
def store_sum(out, acc, n):
    """out[:n] = acc[:n] (local_sum's write-back), element by element: a slice assignment between
    arrays checks their shapes and so compiles numba's string formatting for the error message it
    could raise, about 2 s of every cold start."""
    for j in range(n):
        out[j] = acc[j]


@njit(cache=True)
def forward_input_layer(layer, x_ids, x_vals, nx, ids, n_act, dense_out, out):
    """Layer 0 (weights (F, N), input-major): out[a] = bias[ids[a]] + sum_j x_j * W[x_ids[j], ids[a]]."""
    bias = layer.bias
    weights = layer.weights
    acc = np.empty(n_act, np.float32)  # a local sum: see local_sum
    for a in range(n_act):
        acc[a] = bias[ids[a]]
    distance = rows_ahead(weights)  # prefetch.py: rows of a large array lie far apart in memory
    for j in range(nx):
        if j + distance < nx:
            prefetch_row(weights, x_ids[j + distance])
        row = weights[x_ids[j]]
        v = x_vals[j]
        if dense_out:
            for a in range(n_act):
                acc[a] += v * row[a]
        else:
            for a in range(n_act):
                acc[a] += v * row[ids[a]]
    store_sum(out, acc, n_act)


@njit(cache=True)
def forward_layer(layer, in_ids, in_vals, n_in, dense_in, ids, n_act, out):
    """Layer l > 0 (weights (N, D), neuron-major): out[a] = bias[n] + W[n] . input, n = ids[a]."""
    bias = layer.bias
    weights = layer.weights
    distance = rows_ahead(weights)  # prefetch.py: rows of a large array lie far apart in memory
    for a in range(n_act):
        if a + distance < n_act:
            prefetch_row(weights, ids[a + distance])
        n = ids[a]
        if dense_in:
            out[a] = bias[n] + dot_dense(weights[n], in_vals, n_in)
        else:
            out[a] = bias[n] + dot_gather(weights[n], in_ids, in_vals, n_in)


@njit(cache=True)
def backward_input_layer(layer, x_ids, x_vals, nx, ids, n_act, dense_out, grads):
    """Accumulate layer 0's gradients: dW[x_ids[j], ids[a]] += x_j * g[a], db[ids[a]] += g[a].

    Unlike backward_layer, zero gradients are not skipped: this layer's rows are features, so a
    row is touched (and takes its lazy Adam step) whenever its feature occurs, whatever each
    unit's gradient, and the active units' biases are marked alike, so that a unit's bias ages
    with its weights."""
    bias_grad = layer.bias_grad
    bias_touched = layer.bias_touched
    row_touched = layer.row_touched
    for a in range(n_act):
        bias_grad[ids[a]] += grads[a]  # Hogwild: unsynchronised on purpose
        mark_touched(bias_touched, ids[a])
    distance = rows_ahead(layer.weight_grad)
    for j in range(nx):
        if j + distance < nx:
            prefetch_row(layer.weight_grad, x_ids[j + distance])
        f = x_ids[j]
        v = x_vals[j]
        mark_touched(row_touched, f)
        grad_row = layer.weight_grad[f]
        if dense_out:
            for a in range(n_act):
                grad_row[a] += v * grads[a]
        else:
            for a in range(n_act):
                grad_row[ids[a]] += v * grads[a]


@njit(cache=True)
def backward_layer(layer, in_ids, in_vals, n_in, dense_in, ids, n_act, grads, in_grads, need_in_grads):
    """Accumulate layer l's gradients and, if asked, d loss / d input into in_grads[:n_in].

    Reads the weights before any update: the optimizer runs after the whole batch.
    """
    weights = layer.weights
    weight_grad = layer.weight_grad
    acc = local_sum(in_grads, n_in if need_in_grads else 0)
    for a in range(n_act):
        g = grads[a]
        if g == 0.0:  # ReLU-dead or exactly-predicted neuron: nothing to add anywhere
            continue
        n = ids[a]
        layer.bias_grad[n] += g  # Hogwild: unsynchronised on purpose
        mark_touched(layer.bias_touched, n)
        mark_touched(layer.row_touched, n)
        w = weights[n]
        grad_row = weight_grad[n]
        if dense_in:
            for j in range(n_in):
                grad_row[j] += g * in_vals[j]
            if need_in_grads:
                for j in range(n_in):
                    acc[j] += g * w[j]
        else:
            for j in range(n_in):
                grad_row[in_ids[j]] += g * in_vals[j]
            if need_in_grads:
                for j in range(n_in):
                    acc[j] += g * w[in_ids[j]]
    if need_in_grads:
        store_sum(in_grads, acc, n_in)


@njit(cache=True)
def backward_output_recorded(layer, in_vals, n_in, ids, n_act, grads, in_grads, out_rows, out_grads):
    """The output layer's backward over a dense input without touching `weight_grad`: d loss /
    d input goes into in_grads[:n_in] and each neuron with a non-zero gradient is recorded as
    (out_rows[c], out_grads[c]) = (n, g); returns the count c. The optimizer rebuilds the weight
    gradient of row n as the sum of g * input over its records (optimizer.adam_update_rows_recorded),
    so the (N, D) gradient rows are never read or written here, nor is `bias_grad`: a bias's
    gradient is the sum of its row's g, summed there too. Marks as backward_layer.
    """
    weights = layer.weights
    acc = local_sum(in_grads, n_in)
    count = 0
    for a in range(n_act):
        g = grads[a]
        if g == 0.0:  # exactly-predicted neuron: nothing to add anywhere
            continue
        n = ids[a]
        mark_touched(layer.bias_touched, n)
        mark_touched(layer.row_touched, n)
        out_rows[count] = n
        out_grads[count] = g
        count += 1
        w = weights[n]
        for j in range(n_in):
            acc[j] += g * w[j]
    store_sum(in_grads, acc, n_in)
    return count


# ---------------------------------------------------------------------------------------------
# Loss at the output layer.
# ---------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def label_positions(ids, n_act, dense_out, labels, n_labels, positions):
    """Position in the active set of each (unique) label. Labels are the first entries of a
    non-dense active set (they are forced in first); in a dense set position == id."""
    for j in range(n_labels):
        positions[j] = labels[j] if dense_out else j


@njit(cache=True)
def softmax_xent(logits, n_act, positions, n_labels, scale, grads, uniform_from=-1, log_weight=0.0):
    """Softmax cross-entropy against the labels as a uniform target; returns the loss.

    Max-subtracted, so any logit range and a single-neuron set are safe. grads = scale * (p - y).
    Sampled-softmax correction: entries a >= uniform_from (when >= 0) are uniform samples that each
    stand for exp(log_weight) neurons, so log_weight is added to their logits inside the softmax
    (Jean et al. 2015); the gradient with respect to the raw logit is unchanged in form.
    """
    start = n_act if uniform_from < 0 else uniform_from
    peak = -np.inf
    for a in range(n_act):
        z = np.float64(logits[a]) + (log_weight if a >= start else 0.0)
        if z > peak:
            peak = z
    # One exp per neuron, kept in grads until the sum is known: the exps were half of a step's
    # loss time when each neuron took two. exp(z - peak) <= 1 cannot overflow in float32.
    total = 0.0
    for a in range(n_act):
        e = np.exp(np.float32(np.float64(logits[a]) + (log_weight if a >= start else 0.0) - peak))
        grads[a] = e
        total += e
    log_total = np.log(total)
    norm = np.float32(scale / total)
    for a in range(n_act):
        grads[a] *= norm
    target = 1.0 / n_labels
    loss = 0.0
    for j in range(n_labels):
        p = positions[j]
        loss -= target * (np.float64(logits[p]) - peak - log_total)
        grads[p] -= np.float32(scale * target)
    return loss


@njit(cache=True)
def sigmoid_xent(logits, n_act, positions, n_labels, scale, grads, uniform_from=-1, log_weight=0.0):
    """Independent binary cross-entropy per active neuron (labels are the positives). Uniform
    samples (a >= uniform_from when >= 0) weigh exp(log_weight) in the loss, as the neurons they
    stand for."""
    start = n_act if uniform_from < 0 else uniform_from
    weight = np.exp(log_weight)
    loss = 0.0
    for a in range(n_act):
        z = np.float64(logits[a])
        w = weight if a >= start else 1.0
        loss += w * (max(z, 0.0) + np.log1p(np.exp(-abs(z))))  # -log(1 - sigmoid(z)), stable
        grads[a] = np.float32(w * scale / (1.0 + np.exp(-z)))
    for j in range(n_labels):
        p = positions[j]
        loss -= np.float64(logits[p])  # turns the positive's term into -log sigmoid(z)
        grads[p] -= np.float32(scale)
    return loss


# ---------------------------------------------------------------------------------------------
# Per-sample workers.
# ---------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def dropout(vals, n_act, ppm, rng, t):
    """Inverted dropout in place: each of vals[:n_act] is zeroed with probability ppm / 10^6 and
    the rest scaled by 1 / keep, so the expected activation is unchanged and inference needs no
    rescaling. One uniform draw per active neuron, in order, from the sample's own stream.
    The stream's state stays in a register through the loop, and a draw picks its value without a
    branch (kept at random half the time, a branch mispredicts half the time): Bibtex's dropout
    (512 units at 0.5) took 11% of a step on one thread drawing through rng[t] with a branch."""
    keep = 1.0 - ppm * 1e-6
    scale = np.float32(1.0 / keep)
    x = rng[t]
    for a in range(n_act):
        x = xorshift_step(x)
        vals[a] = vals[a] * scale if uniform_of(x) < keep else np.float32(0.0)
    rng[t] = x


@njit(cache=True)
def forward_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels,
                   training, rng, pool, n_active, n_layers, scores_in, score_row):
    """Select and compute the active sets of layers 0 .. n_layers-1 for one sample; n_active[l]
    gets the sizes. Hidden activations are ReLU'd in place; the output layer keeps raw logits.
    pool: the batch's shared negatives (selection.select_active). scores_in[score_row] (score_row
    >= 0): the output layer's centroid scores from the batch's product; with -1 its query scores
    the centroids itself."""
    last = spec.shape[0] - 1
    in_ids = x_ids
    in_vals = x_vals
    n_in = nx
    dense_in = np.bool_(False)  # not the literal False: forward_layer would compile for it too
    for l in range(n_layers):
        is_output = l == last
        mode = spec[l, SPEC_MODE] if training else spec[l, SPEC_INFER_MODE]
        scr = scratch[l]
        # a hidden layer's query scores its centroids itself (score_row -1: scores_in is not read)
        n_act = select_active(l, mode, is_output, training, spec, scr, lsh_layers[l], kinds, t, in_ids, in_vals, n_in,
                              labels, n_labels, rng, pool, scores_in, score_row if is_output else np.int64(-1))
        n_active[l] = n_act
        ids = scr.act_ids[t]
        vals = scr.act_vals[t]
        dense_out = mode == MODE_ALL
        if l == 0:
            forward_input_layer(layers[0], x_ids, x_vals, nx, ids, n_act, dense_out, vals)
        else:
            forward_layer(layers[l], in_ids, in_vals, n_in, dense_in, ids, n_act, vals)
        if not is_output:
            for a in range(n_act):
                if vals[a] < 0.0:
                    vals[a] = 0.0
            if training and spec[l, SPEC_DROPOUT_PPM] > 0:
                dropout(vals, n_act, spec[l, SPEC_DROPOUT_PPM], rng, t)
        in_ids = ids
        in_vals = vals
        n_in = n_act
        dense_in = dense_out


@njit(cache=True)
def train_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels, loss_kind,
                 grad_scale, rng, pool, n_active, positions, record_output, hidden_row, out_rows, out_grads, out_count,
                 b, scores_in, score_row):
    """Forward, loss and backward of one sample; gradients go into the shared arrays. Returns the
    loss. A sample without labels has no target: it is skipped (loss 0, no gradient).

    record_output (the caller guarantees the output layer is not layer 0 and its input is dense):
    the output layer's weight gradient is not accumulated; instead the sample's last-hidden vector
    goes into hidden_row (D,) and its (row, g) records into out_rows / out_grads (A,), their count
    into out_count[b] (see backward_output_recorded). scores_in / score_row: as in forward_sample."""
    if n_labels == 0:
        return 0.0
    n_layers = spec.shape[0]
    # np.bool_(True), not True: a literal flag would compile forward_sample once for training and
    # once more for inference
    forward_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels, np.bool_(True),
                   rng, pool, n_active, n_layers, scores_in, score_row)
    last = n_layers - 1
    out = scratch[last]
    n_out = n_active[last]
    dense_out = spec[last, SPEC_MODE] == MODE_ALL
    label_positions(out.act_ids[t], n_out, dense_out, labels, n_labels, positions)
    uniform_from, log_weight = correction_weight(spec, last, out.uniform_from[t], n_out)
    if loss_kind == LOSS_BCE:
        loss = sigmoid_xent(out.act_vals[t], n_out, positions, n_labels, grad_scale, out.act_grads[t],
                            uniform_from, log_weight)
    else:
        loss = softmax_xent(out.act_vals[t], n_out, positions, n_labels, grad_scale, out.act_grads[t],
                            uniform_from, log_weight)

    backward_sample(layers, spec, scratch, t, x_ids, x_vals, nx, n_active, last, record_output, hidden_row,
                    out_rows, out_grads, out_count, b)
    return loss


@njit(cache=True)
def backward_sample(layers, spec, scratch, t, x_ids, x_vals, nx, n_active, start, record_output, hidden_row, out_rows,
                    out_grads, out_count, b):
    """Backward of one sample from layer `start` down to layer 0, from d loss / d output of layer
    `start` in scratch[start].act_grads[t]: the output layer (start == last) after the loss, or the
    last hidden layer (start == last - 1) when the output layer ran as a batch product (union.py).
    Gradients go into the shared arrays; record_output as in train_sample."""
    last = spec.shape[0] - 1
    for l in range(start, -1, -1):
        scr = scratch[l]
        ids = scr.act_ids[t]
        grads = scr.act_grads[t]
        n_act = n_active[l]
        dense_out = spec[l, SPEC_MODE] == MODE_ALL
        if l < last:  # ReLU (and dropout): gradient flows only where the activation was positive
            vals = scr.act_vals[t]
            ppm = spec[l, SPEC_DROPOUT_PPM]
            scale = np.float32(1.0 / (1.0 - ppm * 1e-6))  # d kept output / d ReLU output
            for a in range(n_act):
                if vals[a] <= 0.0:
                    grads[a] = 0.0
                elif ppm > 0:
                    grads[a] *= scale
        if l == 0:
            backward_input_layer(layers[0], x_ids, x_vals, nx, ids, n_act, dense_out, grads)
        else:
            prev = scratch[l - 1]
            n_in = n_active[l - 1]
            in_grads = prev.act_grads[t]
            for j in range(n_in):
                in_grads[j] = 0.0
            dense_in = spec[l - 1, SPEC_MODE] == MODE_ALL
            if record_output and l == last:
                in_vals = prev.act_vals[t]
                for j in range(n_in):
                    hidden_row[j] = in_vals[j]
                out_count[b] = backward_output_recorded(layers[l], in_vals, n_in, ids, n_act, grads, in_grads,
                                                        out_rows, out_grads)
            else:
                backward_layer(layers[l], prev.act_ids[t], prev.act_vals[t], n_in, dense_in, ids, n_act, grads,
                               in_grads, True)


@njit(cache=True)
def select_output_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels, rng, pool,
                         n_active, positions, hidden_row, out_ids, meta_row, select, scores_in, score_row):
    """The first half of a sample whose output layer runs as a batch product (union.py): forward
    through the hidden layers, then (if `select`) only the output layer's selection. The last
    hidden layer is dense (Engine.records_output): its activations go into hidden_row (D,), the
    output's active ids into out_ids (A,), and meta_row (2 + labels,) int32 gets [uniform_from,
    n_labels, the labels' positions in out_ids]. Returns the active count (0 for a sample without
    labels, or without `select`). The RNG draws are those of train_sample up to the output layer's
    forward, so both paths choose the same active sets. scores_in / score_row: the centroid
    scores of the batch's product, as in selection.select_active (score_row -1: none)."""
    last = spec.shape[0] - 1
    if n_labels == 0:
        meta_row[1] = 0
        # its row of the products' G is zero, but G^T H still reads this row: a previous step's
        # vector left here would turn 0 x NaN into NaN across the union after a NaN rollback
        hidden_row[:] = 0.0
        return np.int64(0)
    forward_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels, np.bool_(True),
                   rng, pool, n_active, last, scores_in, np.int64(-1))
    prev = scratch[last - 1]
    n_in = n_active[last - 1]
    in_vals = prev.act_vals[t]
    for j in range(n_in):
        hidden_row[j] = in_vals[j]
    if not select:
        return np.int64(0)
    scr = scratch[last]
    n = select_active(last, spec[last, SPEC_MODE], np.bool_(True), np.bool_(True), spec, scr, lsh_layers[last], kinds,
                      t, prev.act_ids[t], in_vals, n_in, labels, n_labels, rng, pool, scores_in, score_row)
    n_active[last] = n
    ids = scr.act_ids[t]
    for a in range(n):
        out_ids[a] = ids[a]
    label_positions(ids, n, spec[last, SPEC_MODE] == MODE_ALL, labels, n_labels, positions)
    meta_row[0] = scr.uniform_from[t]
    meta_row[1] = n_labels
    for j in range(n_labels):
        meta_row[2 + j] = positions[j]
    return n


@njit(cache=True)
def backward_hidden_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels, rng, pool,
                           n_active, hidden_grad, record_output, hidden_row, out_rows, out_grads, out_count, b):
    """The second half of such a sample: given d loss / d last hidden layer (D,) from the batch
    product, run the hidden layers' backward. One hidden layer: its activations are hidden_row,
    kept by the first half (dense, after ReLU and dropout: all the backward needs). More: recompute
    their forward (same seed, so the same dropout masks and active sets; the weights have not
    moved since the first half)."""
    if n_labels == 0:
        return
    last = spec.shape[0] - 1
    if last == 1:
        scr = scratch[0]
        n_hidden = hidden_row.shape[0]
        ids = scr.act_ids[t]
        vals = scr.act_vals[t]
        for j in range(n_hidden):
            ids[j] = j
            vals[j] = hidden_row[j]
        n_active[0] = n_hidden
    else:
        forward_sample(layers, spec, scratch, lsh_layers, kinds, t, x_ids, x_vals, nx, labels, n_labels,
                       np.bool_(True), rng, pool, n_active, last, scratch[0].hash_vals, np.int64(-1))
    grads = scratch[last - 1].act_grads[t]
    for j in range(n_active[last - 1]):
        grads[j] = hidden_grad[j]
    backward_sample(layers, spec, scratch, t, x_ids, x_vals, nx, n_active, last - 1, record_output, hidden_row,
                    out_rows, out_grads, out_count, b)


# ---------------------------------------------------------------------------------------------
# Parallel drivers.
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def train_chunk(layers, spec, scratch, lsh_layers, kinds, x_indptr, x_indices, x_values, y_indptr, y_indices,
                rows, chunk_bounds, seed, step, loss_kind, grad_scale, rng, pool, label_buf, position_buf, n_active,
                active_sum, loss_out, record_output, out_hidden, out_rows, out_grads, out_count, phase, out_meta,
                hidden_grads, scores, t):
    """train_batch's serial worker: chunk t's samples, batch positions chunk_bounds[t]:chunk_bounds[t+1].
    layers, scratch, lsh_layers: the chunk's borrowed Lists (borrow.borrow_for_chunks); the rest as
    train_batch got them (borrowed)."""
    labels = label_buf[t]
    positions = position_buf[t]
    counts = n_active[t]
    for b in range(chunk_bounds[t], chunk_bounds[t + 1]):
        i = rows[b]
        seed_state(rng, t, derive_seed(seed, step, b))
        x0 = x_indptr[i]
        x1 = x_indptr[i + 1]
        y0 = y_indptr[i]
        n_labels = unique_prefix(y_indices[y0:y_indptr[i + 1]], y_indptr[i + 1] - y0, labels)
        r = b if record_output else 0  # not recording: one unused dummy row
        if phase == PHASE_HIDDEN_BACKWARD:
            backward_hidden_sample(layers, spec, scratch, lsh_layers, kinds, t, x_indices[x0:x1], x_values[x0:x1],
                                   x1 - x0, labels, n_labels, rng, pool, counts, hidden_grads[b], record_output,
                                   out_hidden[r], out_rows[r], out_grads[r], out_count, r)
            continue
        out_count[r] = 0
        loss_out[b] = 0.0
        if phase != PHASE_FULL and phase != PHASE_FULL_SCORED:  # PHASE_HIDDEN, PHASE_SELECT(_SCORED)
            out_count[r] = select_output_sample(layers, spec, scratch, lsh_layers, kinds, t, x_indices[x0:x1],
                                                x_values[x0:x1], x1 - x0, labels, n_labels, rng, pool, counts,
                                                positions, out_hidden[r], out_rows[r], out_meta[b],
                                                phase != PHASE_HIDDEN, scores,
                                                b if phase == PHASE_SELECT_SCORED else np.int64(-1))
            if phase == PHASE_HIDDEN:
                continue
        else:
            loss_out[b] = train_sample(layers, spec, scratch, lsh_layers, kinds, t, x_indices[x0:x1],
                                       x_values[x0:x1], x1 - x0, labels, n_labels, loss_kind, grad_scale, rng,
                                       pool, counts, positions, record_output, out_hidden[r], out_rows[r],
                                       out_grads[r], out_count, r, scores,
                                       b if phase == PHASE_FULL_SCORED else np.int64(-1))
        if n_labels > 0:
            for l in range(spec.shape[0]):
                active_sum[t, l] += counts[l]


@njit(parallel=True, cache=True)
def train_batch(layers, spec, scratch, lsh_layers, kinds, x_indptr, x_indices, x_values, y_indptr, y_indices,
                rows, chunk_bounds, seed, step, loss_kind, grad_scale, rng, pool, label_buf, position_buf, n_active,
                active_sum, loss_out, record_output, out_hidden, out_rows, out_grads, out_count, phase, out_meta,
                hidden_grads, scores, worker):
    """Train on dataset rows `rows` (B,): chunk t handles batch positions
    chunk_bounds[t]:chunk_bounds[t+1]. Writes loss_out (B,) and adds active-set sizes into
    active_sum (T, n_layers). Gradients land in `layers`; the caller then runs the optimizer.
    kinds: constants.kinds_marker of the index kinds the LSH layers query. pool (P,) int32: the
    step's shared uniform negatives of the output layer (selection.draw_negative_pool), empty when
    each sample draws its own.

    record_output: the output layer's weight gradient is recorded instead of accumulated: sample b
    writes its last-hidden vector to out_hidden[b] (>= B, D) float32, its (row, g) records to
    out_rows[b] (>= B, A) int32 / out_grads[b] float32 and their count to out_count[b] (>= B,)
    int64 (0 for an unlabelled sample). Otherwise pass (1, 1) / (1,) dummies (never read; row 0 is
    written by every chunk, harmlessly).

    phase (constants.PHASE_*): PHASE_FULL runs each sample whole (train_sample). When the output
    layer runs as a batch product (union.py, record_output set) the step takes two calls:
    PHASE_SELECT (select_output_sample: out_hidden[b], out_rows[b] = the output's active ids,
    out_count[b] their count, out_meta (>= B, 2 + labels) int32 [uniform_from, n_labels,
    positions]) and, after the product, PHASE_HIDDEN_BACKWARD (backward_hidden_sample, from
    hidden_grads (>= B, D) float32). On a cluster index PHASE_HIDDEN (out_hidden only) comes first,
    so that one product scores every sample's centroids: PHASE_SELECT_SCORED, PHASE_SELECT's
    twin, then reads sample b's from scores[b] ((>= B, L*C) float32). The whole-sample path takes
    them the same way: PHASE_HIDDEN, the product, then PHASE_FULL_SCORED (Engine.train_step).
    Other phases take (1, 1) dummies for out_meta / hidden_grads / scores.

    worker (2,) int64: where train_chunk, compiled for the types it gets here, lives
    (chunk_worker(train_chunk, the other arguments))."""
    n_chunks = chunk_bounds.shape[0] - 1
    # Borrowed (borrow.py): no per-sample view or List read touches a reference count that the
    # other threads touch too. Each chunk gets Lists of its own.
    layers_by_chunk, scratch_by_chunk, index_by_chunk = (borrow_for_chunks(layers, n_chunks),
                                                         borrow_for_chunks(scratch, n_chunks),
                                                         borrow_for_chunks(lsh_layers, n_chunks))
    (spec, x_indptr, x_indices, x_values, y_indptr, y_indices, rows, chunk_bounds, rng, pool, label_buf, position_buf,
     n_active, active_sum, loss_out, out_hidden, out_rows, out_grads, out_count, out_meta, hidden_grads,
     scores) = borrow((spec, x_indptr, x_indices, x_values, y_indptr, y_indices, rows, chunk_bounds, rng, pool,
                       label_buf, position_buf, n_active, active_sum, loss_out, out_hidden, out_rows, out_grads,
                       out_count, out_meta, hidden_grads, scores))
    for chunk in prange(n_chunks):
        t = np.int64(chunk)  # parfors type the index unsigned: one int64 type for every callee
        call_worker(train_chunk, worker, (layers_by_chunk[t], spec, scratch_by_chunk[t], index_by_chunk[t], kinds,
                                          x_indptr, x_indices, x_values, y_indptr, y_indices, rows, chunk_bounds, seed,
                                          step, loss_kind, grad_scale, rng, pool, label_buf, position_buf, n_active,
                                          active_sum, loss_out, record_output, out_hidden, out_rows, out_grads,
                                          out_count, phase, out_meta, hidden_grads, scores, t))


@njit(cache=True)
def infer_chunk(layers, spec, scratch, lsh_layers, kinds, x_indptr, x_indices, x_values, rows, chunk_bounds, seed,
                rng, n_active, active_sum, n_layers, top_ids, top_scores, hidden_out, t):
    """infer_batch's serial worker: chunk t's samples, batch positions chunk_bounds[t]:chunk_bounds[t+1].
    layers, scratch, lsh_layers: the chunk's borrowed Lists (borrow.borrow_for_chunks); the rest as
    infer_batch got them (borrowed)."""
    top = n_layers - 1
    to_output = n_layers == spec.shape[0]
    k = top_ids.shape[1]
    no_labels = np.zeros(0, np.int32)
    no_pool = no_labels  # inference draws no negatives
    counts = n_active[t]
    scr = scratch[top]
    for b in range(chunk_bounds[t], chunk_bounds[t + 1]):
        i = rows[b]
        # seeded by the dataset row, not its place in this call: a sample's draws (random top-ups
        # of a thin LSH set) are then the same whichever rows it is predicted with
        seed_state(rng, t, derive_seed(seed, np.uint64(0), np.int64(i)))
        x0 = x_indptr[i]
        x1 = x_indptr[i + 1]
        forward_sample(layers, spec, scratch, lsh_layers, kinds, t, x_indices[x0:x1], x_values[x0:x1], x1 - x0,
                       no_labels, np.int64(0), np.bool_(False), rng, no_pool, counts, n_layers, scr.hash_vals,
                       np.int64(-1))
        ids = scr.act_ids[t]
        vals = scr.act_vals[t]
        if to_output:
            top_ids[b, :] = -1
            top_scores[b, :] = -np.inf
            for a in range(counts[top]):
                push_topk(top_ids[b], top_scores[b], k, ids[a], vals[a])
        else:
            hidden_out[b, :] = 0.0
            for a in range(counts[top]):
                hidden_out[b, ids[a]] = vals[a]
        for l in range(n_layers):
            active_sum[t, l] += counts[l]


@njit(parallel=True, cache=True)
def infer_batch(layers, spec, scratch, lsh_layers, kinds, x_indptr, x_indices, x_values, rows, chunk_bounds, seed,
                rng, n_active, active_sum, n_layers, top_ids, top_scores, hidden_out, worker):
    """Inference on dataset rows `rows` (B,) through layers 0 .. n_layers-1 (SPEC_INFER_MODE).

    n_layers == all layers: top_ids/top_scores (B, K) get each sample's K best output neurons by
    logit (descending; -1 / -inf where fewer than K were scored); hidden_out is not touched.
    n_layers < all layers: hidden_out (B, D) gets the activations of layer n_layers-1 as dense rows
    (zeros for inactive neurons), e.g. the last hidden layer for a BLAS product with the output
    layer when it is scored exactly; top_ids/top_scores are not touched (pass (0, 0) arrays).
    active_sum (T, n_layers) gets the active-set sizes of the layers run.
    worker (2,) int64: where infer_chunk lives (chunk_worker(infer_chunk, the other arguments)).
    """
    n_chunks = chunk_bounds.shape[0] - 1
    # borrowed, as in train_batch
    layers_by_chunk, scratch_by_chunk, index_by_chunk = (borrow_for_chunks(layers, n_chunks),
                                                         borrow_for_chunks(scratch, n_chunks),
                                                         borrow_for_chunks(lsh_layers, n_chunks))
    (spec, x_indptr, x_indices, x_values, rows, chunk_bounds, rng, n_active, active_sum, top_ids, top_scores,
     hidden_out) = borrow((spec, x_indptr, x_indices, x_values, rows, chunk_bounds, rng, n_active, active_sum, top_ids,
                           top_scores, hidden_out))
    for chunk in prange(n_chunks):
        t = np.int64(chunk)  # parfors type the index unsigned: one int64 type for every callee
        call_worker(infer_chunk, worker, (layers_by_chunk[t], spec, scratch_by_chunk[t], index_by_chunk[t], kinds,
                                          x_indptr, x_indices, x_values, rows, chunk_bounds, seed, rng, n_active,
                                          active_sum, n_layers, top_ids, top_scores, hidden_out, t))


def chunk_worker_types(driver_args: tuple) -> tuple:
    """The numba types train_chunk / infer_chunk get from their driver called with `driver_args`
    (its arguments but the last, `worker`): the layers, scratch and index tuples as the chunk
    Lists the driver makes of them (borrow.borrow_for_chunks), the rest as they are (borrowing
    keeps a type), and the chunk index."""
    layers, spec, scratch, lsh_layers, *rest = driver_args
    return (chunk_list_type(layers), typeof(spec), chunk_list_type(scratch), chunk_list_type(lsh_layers),
            *(typeof(a) for a in rest), types.int64)


# chunk_worker's tables, by worker and the type fingerprint of the driver's arguments
_chunk_workers: dict = {}


def chunk_worker(worker, driver_args: tuple) -> np.ndarray:
    """The `worker` argument of a driver called with driver_args (all but `worker`): where the
    chunk worker `worker` (train_chunk, infer_chunk), compiled for the types it will get, lives
    (indirect.worker_table). Compiles or loads it on first use.

    Typing every argument costs ~0.7 ms a call, a step's time on small sets; numba's own
    fingerprint of the arguments' types (what its dispatchers look their compiled versions up by)
    keys the tables made. Of the layers, scratch and index tuples it takes the first item only,
    which alone gives the chunk List's type (chunk_worker_types): ~4 us a call instead of ~8."""
    layers, spec, scratch, lsh_layers, *rest = driver_args
    try:
        key = (worker, type_fingerprint((layers[0], spec, scratch[0], lsh_layers[0], *rest)))
    except (TypeError, ValueError):  # a type numba does not fingerprint: no shortcut
        return worker_table(worker, chunk_worker_types(driver_args))
    table = _chunk_workers.get(key)
    if table is None:
        table = _chunk_workers[key] = worker_table(worker, chunk_worker_types(driver_args))
    return table
