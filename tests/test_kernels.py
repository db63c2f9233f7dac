"""Tests for the serial leaves of slidepy/selection.py, slidepy/kernels.py and slidepy/optimizer.py
against the naive references in tests/naive.py (MLP reference, LSH and selection sections); and,
through the drivers, a sample's whole LSH active set (labels, index candidates, random share), the
sampled-softmax correction of its loss, and LSH-mode prediction, each against a NumPy reference."""

import numba
import numpy as np
import pytest

import naive
from slidepy import kernels as kn
from slidepy import optimizer as opt
from slidepy import rng as srng
from slidepy import selection as sel
from slidepy.configfile import config_from_dict
from slidepy.constants import SPEC_CORRECTION, SPEC_FIELDS, SPEC_OUT_DIM, kinds_marker
from slidepy.data import Dataset
from slidepy.engine import Engine, LayerSelection
from slidepy.model import lsh_options
from slidepy.network import LayerParams

# float32 kernels against float64 references
RTOL, ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------------------------
# selection.py
# ---------------------------------------------------------------------------------------------


def test_next_mark_increments_and_wraps():
    stamp = np.arange(10, dtype=np.int32).reshape(2, 5) + 1
    mark = np.array([5, 7], np.int32)
    assert sel.next_mark(stamp, mark, 0) == 6 and mark[0] == 6 and mark[1] == 7
    np.testing.assert_array_equal(stamp, np.arange(10).reshape(2, 5) + 1)  # no wipe in the common case
    # wrap-around: the next value would reach the limit -> row t wiped, mark restarts at 1
    limit = int(sel._MARK_LIMIT)
    mark[1] = limit - 1
    stamp[1] = 1  # stale entries equal to the restart value must not survive
    assert sel.next_mark(stamp, mark, 1) == 1 and mark[1] == 1
    np.testing.assert_array_equal(stamp[1], 0)
    np.testing.assert_array_equal(stamp[0], [1, 2, 3, 4, 5])  # the other chunk's row is untouched
    assert mark[0] == 6
    mark[0] = limit - 2  # one below: still a normal increment
    assert sel.next_mark(stamp, mark, 0) == limit - 1
    np.testing.assert_array_equal(stamp[0], [1, 2, 3, 4, 5])


@pytest.mark.parametrize("seed", range(6))
def test_unique_prefix_matches_python(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(0, 20))
    ids = rng.integers(0, 6, size).astype(np.int32)
    n = int(rng.integers(0, size + 1))
    out = np.full(max(1, size), -7, np.int32)
    k = sel.unique_prefix(ids, n, out)
    want = naive.naive_unique(ids[:n])
    assert k == len(want)
    assert out[:k].tolist() == want
    assert np.all(out[k:] == -7)  # nothing written past the count


def test_fill_all():
    ids = np.full(7, -1, np.int32)
    assert sel.fill_all(ids, 5) == 5
    assert ids.tolist() == [0, 1, 2, 3, 4, -1, -1]


@pytest.mark.parametrize("n_neurons,forced,target", [
    (20, [3, 7, 3, 19], 9),  # repeated forced id: added once
    (20, [], 19),  # target = N - 1: rejection sampling near the top of the range
    (10, [0, 1, 2, 3, 4, 5], 4),  # forced ids already exceed the target: nothing drawn
    (50, [49], 1),
])
def test_add_forced_and_fill_random(n_neurons, forced, target):
    ids = np.full(n_neurons + 2, -1, np.int32)
    stamp = np.zeros((2, n_neurons), np.int32)
    mark = np.zeros(2, np.int32)
    m = sel.next_mark(stamp, mark, 1)
    forced_arr = np.array(forced, np.int32)
    n = sel.add_forced(ids, 0, stamp[1], m, forced_arr, forced_arr.shape[0])
    want_forced = naive.naive_unique(forced)
    assert n == len(want_forced) and ids[:n].tolist() == want_forced
    state = srng.make_state(123, 2)
    x = int(state[1])
    n2 = sel.fill_random(ids, n, target, n_neurons, stamp[1], m, state, 1)
    got = ids[:n2].tolist()
    assert n2 == max(target, n)
    assert len(set(got)) == n2  # distinct
    assert all(0 <= v < n_neurons for v in got)
    assert got[:n] == want_forced  # forced ids first, never drawn again
    assert np.all(ids[n2:] == -1)
    # the exact draw sequence: rejection sampling on the xorshift64* stream of chunk 1
    want = list(want_forced)
    while len(want) < target:
        x, v = naive.naive_randint(x, n_neurons)
        if v not in want:
            want.append(v)
    assert got == want and int(state[1]) == x
    # the stamp row marks exactly the chosen ids; the other chunk's row is untouched
    assert sorted(np.flatnonzero(stamp[1] == m).tolist()) == sorted(got)
    assert np.all(stamp[0] == 0)


def test_fill_random_fresh_mark_forgets_previous_sample():
    n_neurons = 8
    ids = np.zeros(n_neurons, np.int32)
    stamp = np.zeros((1, n_neurons), np.int32)
    mark = np.zeros(1, np.int32)
    state = srng.make_state(5)
    for _ in range(3):  # each sample can pick any neuron again, without clearing the stamp row
        m = sel.next_mark(stamp, mark, 0)
        n = sel.fill_random(ids, 0, n_neurons - 1, n_neurons, stamp[0], m, state, 0)
        assert n == n_neurons - 1 and len(set(ids[:n].tolist())) == n_neurons - 1


# ---------------------------------------------------------------------------------------------
# kernels.py: loss leaves
# ---------------------------------------------------------------------------------------------


def _loss_case(rng, n_act, n_labels, spread=3.0):
    logits = (rng.standard_normal(n_act) * spread).astype(np.float32)
    positions = rng.choice(n_act, n_labels, replace=False).astype(np.int32)
    return logits, positions


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("n_act,n_labels,spread", [(12, 1, 3.0), (12, 3, 3.0), (1, 1, 3.0), (5, 2, 1e4),
                                                   (7, 7, 2.0)])
def test_loss_leaves_match_naive(loss, n_act, n_labels, spread):
    rng = np.random.default_rng(n_act * 10 + n_labels)
    logits, positions = _loss_case(rng, n_act, n_labels, spread)
    scale = np.float32(0.25)
    grads = np.full(n_act + 2, 99.0, np.float32)
    fn = kn.softmax_xent if loss == "softmax" else kn.sigmoid_xent
    value = fn(logits, n_act, positions, n_labels, scale, grads)
    want_value, want_grad = naive.naive_sample_loss(logits.astype(np.float64), positions.tolist(), loss)
    assert np.isfinite(value) and np.all(np.isfinite(grads[:n_act]))
    np.testing.assert_allclose(value, want_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[:n_act], 0.25 * want_grad, rtol=RTOL, atol=ATOL)
    assert np.all(grads[n_act:] == 99.0)  # only the active prefix is written
    if loss == "softmax":
        assert abs(float(grads[:n_act].sum())) < 1e-5  # p sums to 1, the target too
    if loss == "softmax" and n_act == 1:  # a single-neuron set: p = 1 exactly, no loss, no gradient
        assert value == 0.0 and grads[0] == 0.0


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("n_act,n_labels,uniform_from,log_weight", [(12, 1, 4, 1.7), (12, 3, 3, 0.4),
                                                                    (9, 2, 8, 3.0), (6, 2, 2, 0.0),
                                                                    (6, 1, -1, 2.0)])
def test_corrected_loss_matches_naive(loss, n_act, n_labels, uniform_from, log_weight):
    """The sampled-softmax correction: entries from uniform_from on stand for exp(log_weight)
    neurons each (softmax: their logits shifted by log_weight; BCE: their terms weighted)."""
    rng = np.random.default_rng(n_act + 100 * n_labels + uniform_from)
    logits = (rng.standard_normal(n_act) * 3.0).astype(np.float32)
    positions = np.arange(n_labels, dtype=np.int32)  # labels come first in a sampled set
    grads = np.full(n_act, 99.0, np.float32)
    fn = kn.softmax_xent if loss == "softmax" else kn.sigmoid_xent
    value = fn(logits, n_act, positions, n_labels, np.float32(0.5), grads, np.int64(uniform_from),
               np.float64(log_weight))
    want_value, want_grad = naive.naive_corrected_loss(logits, positions, uniform_from, log_weight, loss)
    np.testing.assert_allclose(value, want_value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grads, 0.5 * want_grad, rtol=RTOL, atol=ATOL)
    if uniform_from < 0 or log_weight == 0.0:  # no correction: the plain loss
        plain = naive.naive_sample_loss(logits.astype(np.float64), positions.tolist(), loss)
        np.testing.assert_allclose(value, plain[0], rtol=1e-6)


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("uniform_from,n_act", [(3, 10), (0, 7), (10, 10), (12, 12)])
def test_correction_weight_matches_naive(correction, uniform_from, n_act):
    spec = np.zeros((2, SPEC_FIELDS), np.int64)
    spec[1, SPEC_OUT_DIM] = 500
    spec[1, SPEC_CORRECTION] = correction
    got = sel.correction_weight(spec, np.int64(1), np.int64(uniform_from), np.int64(n_act))
    want = naive.naive_correction_weight(500, uniform_from, n_act, correction)
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)


def test_loss_leaves_use_only_the_active_prefix():
    logits = np.array([1.0, -2.0, 0.5, 1e30, -1e30], np.float32)  # garbage beyond n_act = 3
    positions = np.array([2], np.int32)
    grads = np.zeros(5, np.float32)
    value = kn.softmax_xent(logits, 3, positions, 1, np.float32(1.0), grads)
    want, want_grad = naive.naive_sample_loss(logits[:3].astype(np.float64), [2], "softmax")
    np.testing.assert_allclose(value, want, rtol=1e-6)
    np.testing.assert_allclose(grads[:3], want_grad, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------
# kernels.py: one layer's forward / backward over sparse active sets
# ---------------------------------------------------------------------------------------------


def _layer(rng, rows, cols, n):
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    return LayerParams(
        weights=w, bias=rng.standard_normal(n).astype(np.float32),
        weight_grad=np.zeros_like(w), bias_grad=np.zeros(n, np.float32),
        weight_m=np.zeros((0, 0), np.float32), weight_v=np.zeros((0, 0), np.float32),
        bias_m=np.zeros(0, np.float32), bias_v=np.zeros(0, np.float32),
        row_touched=np.zeros(rows, np.uint8), bias_touched=np.zeros(n, np.uint8))


@pytest.mark.parametrize("dense_out", [False, True])
def test_input_layer_forward_backward(dense_out):
    rng = np.random.default_rng(1)
    f, n = 15, 9
    layer = _layer(rng, f, n, n)  # input-major (F, N)
    x_ids = np.array([4, 0, 4, 11], np.int32)  # feature 4 repeated: values add
    x_vals = rng.standard_normal(4).astype(np.float32)
    ids = np.arange(n, dtype=np.int32) if dense_out else np.array([7, 2, 5], np.int32)
    n_act = ids.shape[0]
    out = np.zeros(n, np.float32)
    kn.forward_input_layer(layer, x_ids, x_vals, 4, ids, n_act, dense_out, out)
    x = np.zeros(f)
    np.add.at(x, x_ids, x_vals.astype(np.float64))
    w = layer.weights.astype(np.float64)
    want = x @ w[:, ids] + layer.bias[ids]
    np.testing.assert_allclose(out[:n_act], want, rtol=RTOL, atol=ATOL)
    g = rng.standard_normal(n_act).astype(np.float32)
    kn.backward_input_layer(layer, x_ids, x_vals, 4, ids, n_act, dense_out, g)
    want_dw = np.zeros((f, n))
    want_dw[:, ids] = np.outer(x, g)
    want_db = np.zeros(n)
    want_db[ids] = g
    np.testing.assert_allclose(layer.weight_grad, want_dw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.bias_grad, want_db, rtol=RTOL, atol=ATOL)
    assert np.flatnonzero(layer.row_touched).tolist() == [0, 4, 11]
    assert np.flatnonzero(layer.bias_touched).tolist() == sorted(ids.tolist())


@pytest.mark.parametrize("dense_in", [False, True])
def test_hidden_layer_forward_backward(dense_in):
    rng = np.random.default_rng(2)
    d, n = 10, 8
    layer = _layer(rng, n, d, n)  # neuron-major (N, D)
    in_ids = np.arange(d, dtype=np.int32) if dense_in else np.array([9, 3, 6, 0], np.int32)
    n_in = in_ids.shape[0]
    in_vals = rng.standard_normal(n_in).astype(np.float32)
    ids = np.array([1, 6, 4, 0], np.int32)
    out = np.zeros(4, np.float32)
    kn.forward_layer(layer, in_ids, in_vals, n_in, dense_in, ids, 4, out)
    x = np.zeros(d)
    x[in_ids] = in_vals
    w = layer.weights.astype(np.float64)
    np.testing.assert_allclose(out, w[ids] @ x + layer.bias[ids], rtol=RTOL, atol=ATOL)
    grads = np.array([0.5, 0.0, -1.5, 2.0], np.float32)  # neuron 6 has no gradient: skipped
    in_grads = np.zeros(d, np.float32)
    kn.backward_layer(layer, in_ids, in_vals, n_in, dense_in, ids, 4, grads, in_grads, True)
    g = np.zeros(n)
    g[ids] = grads
    np.testing.assert_allclose(layer.weight_grad, np.outer(g, x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.bias_grad, g, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(in_grads[:n_in], (g @ w)[in_ids], rtol=RTOL, atol=ATOL)
    assert np.flatnonzero(layer.row_touched).tolist() == [0, 1, 4]
    assert np.flatnonzero(layer.bias_touched).tolist() == [0, 1, 4]


@pytest.mark.parametrize("shuffled", [False, True])
def test_push_topk_matches_naive_topk(shuffled):
    """In ascending ids, as the exact output layer pushes them, and in any order, as LSH candidates
    and the input space's neighbours arrive: the same lists, ties to the lower id."""
    rng = np.random.default_rng(3)
    scores = np.round(rng.standard_normal((20, 9)), 1).astype(np.float32)  # rounded: many ties
    for k in (1, 4, 9, 12):
        want_ids, want_vals = naive.naive_topk(scores, k)
        for i in range(scores.shape[0]):
            ids = np.full(k, -1, np.int32)
            vals = np.full(k, -np.inf, np.float32)
            order = rng.permutation(scores.shape[1]) if shuffled else range(scores.shape[1])
            for j in order:
                kn.push_topk(ids, vals, k, np.int32(j), scores[i, j])
            assert ids.tolist() == want_ids[i].tolist()
            np.testing.assert_array_equal(vals, want_vals[i])


# ---------------------------------------------------------------------------------------------
# optimizer.py
# ---------------------------------------------------------------------------------------------

B1, B2, EPS = np.float32(0.9), np.float32(0.999), np.float32(1e-8)


def _opt_arrays(rng, rows, width):
    param = rng.standard_normal((rows, width)).astype(np.float32)
    grad = rng.standard_normal((rows, width)).astype(np.float32)
    m = (rng.standard_normal((rows, width)) * 0.1).astype(np.float32)
    v = rng.random((rows, width)).astype(np.float32) * 0.01
    touched = rng.integers(0, 2, rows).astype(np.uint8)
    return param, grad, m, v, touched


@pytest.mark.parametrize("rows", [[], [3], [0, 2, 5, 9], list(range(10))])
@pytest.mark.parametrize("width", [1, 6])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("scale", [1.0, 1e-8])
def test_adam_update_rows_matches_numpy(rows, width, weight_decay, scale):
    """scale 1e-8: gradients and moments where sqrt(v) is eps' size, so that eps' place in the
    step (sqrt(v) + eps, not sqrt(v + eps)) shows."""
    rng = np.random.default_rng(len(rows) * 7 + width)
    param, grad, m, v, touched = _opt_arrays(rng, 10, width)
    grad *= np.float32(scale)
    m *= np.float32(scale)
    v *= np.float32(scale * scale)
    before = [a.copy() for a in (param, grad, m, v, touched)]
    rows = np.array(rows, np.int64)
    step = 3
    lr_t = opt.adam_lr(0.01, 0.9, 0.999, step)
    np.testing.assert_allclose(lr_t, 0.01 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3), rtol=1e-6)
    opt.adam_update_rows(param, grad, m, v, touched, rows, lr_t, B1, B2, EPS, np.float32(0.01 * weight_decay))
    want_p, want_m, want_v = naive.naive_adam_rows(before[0], before[1], before[2], before[3], rows,
                                                   0.01, 0.9, 0.999, 1e-8, step, weight_decay)
    # the kernel takes beta1/beta2 as float32 (1 - float32(0.999) is 1.3e-5 off 1e-3 relative): rtol 1e-4
    np.testing.assert_allclose(param, want_p, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(m, want_m, rtol=RTOL, atol=1e-7 * scale)
    np.testing.assert_allclose(v, want_v, rtol=RTOL, atol=1e-9 * scale * scale)
    other = np.setdiff1d(np.arange(10), rows)
    for got, old in zip((param, grad, m, v), before):
        np.testing.assert_array_equal(got[other], old[other])  # bit-identical off the row list
    assert np.all(grad[rows] == 0.0)  # consumed gradient zeroed
    assert np.all(touched[rows] == 0)
    np.testing.assert_array_equal(touched[other], before[4][other])


def test_adam_stores_moments_under_the_floor_as_zero():
    """A moment that decays under MOMENT_FLOOR (a unit whose gradient stays zero) is stored as 0,
    so the update's products never reach subnormal numbers; one at the floor or above is kept."""
    rng = np.random.default_rng(8)
    param, grad, m, v, touched = _opt_arrays(rng, 4, 3)
    grad[...] = 0.0
    m[...] = [[1e-30], [-1e-30], [2e-30], [1e-3]]  # x beta1: under, under, over, over the floor
    v[...] = [[1e-30], [1e-8], [1e-8], [1.0005e-30]]
    rows = np.arange(4, dtype=np.int64)
    opt.adam_update_rows(param, grad, m, v, touched, rows, np.float32(1e-3), B1, B2, EPS, np.float32(0.0))
    np.testing.assert_array_equal(m[:2], 0.0)
    np.testing.assert_allclose(m[2:], [[1.8e-30] * 3, [9e-4] * 3], rtol=1e-6)
    assert np.all(v[0] == 0.0) and np.all(v[3] == 0.0) and np.all(v[1:3] > 0.0)  # 1.0005e-30 x beta2 < floor
    assert np.all(np.isfinite(param))


def test_backward_output_recorded_matches_backward_layer():
    """The recording backward gives backward_layer's input gradient and marks, leaves weight_grad
    and bias_grad alone, and its records rebuild backward_layer's weight and bias gradients."""
    rng = np.random.default_rng(3)
    d, n = 10, 8
    recorded = _layer(rng, n, d, n)
    plain = recorded._replace(**{f: getattr(recorded, f).copy() for f in recorded._fields})
    in_ids = np.arange(d, dtype=np.int32)
    in_vals = rng.standard_normal(d).astype(np.float32)
    ids = np.array([1, 6, 4, 0], np.int32)
    grads = np.array([0.5, 0.0, -1.5, 2.0], np.float32)  # neuron 6 has no gradient: no record
    in_a, in_b = np.zeros(d, np.float32), np.zeros(d, np.float32)
    kn.backward_layer(plain, in_ids, in_vals, d, True, ids, 4, grads, in_a, True)
    out_rows, out_grads = np.full(4, -1, np.int32), np.zeros(4, np.float32)
    count = kn.backward_output_recorded(recorded, in_vals, d, ids, 4, grads, in_b, out_rows, out_grads)
    assert count == 3 and out_rows[:3].tolist() == [1, 4, 0] and out_grads[:3].tolist() == [0.5, -1.5, 2.0]
    assert not recorded.weight_grad.any()
    np.testing.assert_array_equal(in_b, in_a)
    assert not recorded.bias_grad.any()
    rebuilt_bias = np.zeros(n, np.float32)
    np.add.at(rebuilt_bias, out_rows[:3], out_grads[:3])
    np.testing.assert_array_equal(rebuilt_bias, plain.bias_grad)
    np.testing.assert_array_equal(recorded.row_touched, plain.row_touched)
    np.testing.assert_array_equal(recorded.bias_touched, plain.bias_touched)
    rebuilt = np.zeros((n, d), np.float32)
    for r, g in zip(out_rows[:3], out_grads[:3]):
        rebuilt[r] += g * in_vals
    np.testing.assert_array_equal(rebuilt, plain.weight_grad)


def _random_records(rng, n, d, batch, capacity, sizes):
    """OutputRecords for `batch` samples with sizes[b] distinct random rows each (random g, hidden
    vectors with ReLU zeros), the touched marks they imply, and the dense float64 gradient."""
    from slidepy.network import make_output_records

    rec = make_output_records(batch + 2, capacity, d, n)  # two spare rows beyond the batch: count 0
    rec.hidden[:] = np.maximum(rng.standard_normal(rec.hidden.shape), 0.0)
    touched = np.zeros(n, np.uint8)
    grad = np.zeros((n, d))
    for b, size in enumerate(sizes):
        ids = rng.choice(n, size, replace=False).astype(np.int32)
        g = (rng.standard_normal(size) * 0.1).astype(np.float32)
        rec.rows[b, :size], rec.grads[b, :size], rec.counts[b] = ids, g, size
        touched[ids] = 1
        grad[ids] += g[:, None].astype(np.float64) * rec.hidden[b].astype(np.float64)
    return rec, touched, grad


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("sizes", [[], [5], [30, 0, 12, 30, 7], [30] * 9])
def test_recorded_adam_matches_numpy(threads, weight_decay, sizes):
    """apply_recorded_adam (group_records + adam_update_rows_recorded) against naive_adam_rows on
    the weight and bias gradients built in NumPy from the records (biases never decay); rows 0..4
    all get the records of many samples, so multi-record rows (the four-at-a-time loop and its
    tail) are covered."""
    from slidepy.network import init_params

    rng = np.random.default_rng(len(sizes) * 31 + threads)
    n, d = 40, 13
    layer = init_params([(7, d), (d, n)], seed=2)[1]
    layer.weight_m[...] = rng.standard_normal(layer.weight_m.shape) * 0.1
    layer.weight_v[...] = rng.random(layer.weight_v.shape) * 0.01
    rec, touched, grad = _random_records(rng, n, d, len(sizes), 32, sizes)
    layer.bias_m[...] = rng.standard_normal(n) * 0.1
    layer.bias_v[...] = rng.random(n) * 0.01
    layer.row_touched[...] = touched
    layer.bias_touched[...] = touched
    bias_grad = opt.recorded_bias_grad(rec, n)
    rows = np.flatnonzero(touched)
    before = [a.copy() for a in (layer.weights, layer.weight_m, layer.weight_v, layer.bias, layer.bias_m, layer.bias_v)]
    step = 4
    lr_t = opt.adam_lr(0.01, 0.9, 0.999, step)
    numba_threads = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        opt.apply_recorded_adam(layer, rec, rows, lr_t, B1, B2, EPS, np.float32(0.01 * weight_decay))
    finally:
        numba.set_num_threads(numba_threads)
    want_p, want_m, want_v = naive.naive_adam_rows(before[0], grad, before[1], before[2], rows, 0.01, 0.9, 0.999,
                                                   1e-8, step, weight_decay)
    np.testing.assert_allclose(layer.weights, want_p, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(layer.weight_m, want_m, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(layer.weight_v, want_v, rtol=RTOL, atol=1e-9)
    want_b, want_bm, want_bv = naive.naive_adam_rows(before[3][:, None], bias_grad[:, None], before[4][:, None],
                                                     before[5][:, None], rows, 0.01, 0.9, 0.999, 1e-8, step)
    np.testing.assert_allclose(layer.bias, want_b[:, 0], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(layer.bias_m, want_bm[:, 0], rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(layer.bias_v, want_bv[:, 0], rtol=RTOL, atol=1e-9)
    other = np.setdiff1d(np.arange(n), rows)
    for got, old in zip((layer.weights, layer.weight_m, layer.weight_v, layer.bias, layer.bias_m, layer.bias_v),
                        before):
        np.testing.assert_array_equal(got[other], old[other])
    assert not layer.row_touched.any() and not layer.bias_touched.any()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()
    assert not rec.counts.any() and not rec.cursor.any()  # records consumed, sort scratch left zero


@pytest.mark.parametrize("n_chunks", [1, 2, 3])
def test_group_records_orders_by_row_then_batch_and_refuses_unmarked_rows(n_chunks):
    from slidepy.network import make_output_records

    rec = make_output_records(3, 4, 2, 6)
    rec.rows[0, :3], rec.grads[0, :3], rec.counts[0] = [4, 1, 2], [1, 2, 3], 3
    rec.rows[2, :2], rec.grads[2, :2], rec.counts[2] = [1, 4], [4, 5], 2
    rows = np.array([1, 2, 4], np.int64)
    row_start = np.zeros(4, np.int64)
    placed = opt.group_records(rows, rec.counts, rec.rows, rec.grads, rec.cursor, row_start, rec.sorted_pos,
                               rec.sorted_g, n_chunks)
    assert placed == 5 and row_start.tolist() == [0, 2, 3, 5]
    assert rec.sorted_pos[:5].tolist() == [0, 2, 0, 0, 2] and rec.sorted_g[:5].tolist() == [2, 4, 3, 1, 5]
    assert not rec.cursor.any()
    for marked in ([1, 4], [2, 4], [1, 2]):  # a record whose row has no mark, in each chunk's range
        placed = opt.group_records(np.array(marked, np.int64), rec.counts, rec.rows, rec.grads, rec.cursor,
                                   row_start, rec.sorted_pos, rec.sorted_g, n_chunks)
        assert placed == -1 and not rec.cursor.any()
    placed = opt.group_records(np.array([2, 1, 4], np.int64), rec.counts, rec.rows, rec.grads, rec.cursor,
                               row_start, rec.sorted_pos, rec.sorted_g, n_chunks)  # not ascending
    assert placed == -2 and not rec.cursor.any()


@pytest.mark.parametrize("n_chunks", [2, 5, 64])
def test_group_records_in_chunks_equals_one_thread(n_chunks):
    """The chunked counting sort places every record where the one-chunk sort does (the order of
    a row's records, batch order, does not depend on the split), on random records over 1,000
    rows; with more chunks than rows too."""
    from slidepy.network import make_output_records

    rng = np.random.default_rng(n_chunks)
    batch, capacity, n = 16, 40, 1000
    rec = make_output_records(batch, capacity, 2, n)
    for b in range(batch):
        c = int(rng.integers(0, capacity + 1))
        rec.rows[b, :c] = rng.choice(n, c, replace=False)
        rec.grads[b, :c] = rng.standard_normal(c)
        rec.counts[b] = c
    rows = np.unique(np.concatenate([rec.rows[b, :rec.counts[b]] for b in range(batch)])).astype(np.int64)
    want_start = np.zeros(rows.shape[0] + 1, np.int64)
    assert opt.group_records(rows, rec.counts, rec.rows, rec.grads, rec.cursor, want_start, rec.sorted_pos,
                             rec.sorted_g, 1) == rec.counts.sum()
    want_pos, want_g = rec.sorted_pos.copy(), rec.sorted_g.copy()
    rec.sorted_pos[:], rec.sorted_g[:] = -1, np.nan
    row_start = np.zeros_like(want_start)
    assert opt.group_records(rows, rec.counts, rec.rows, rec.grads, rec.cursor, row_start, rec.sorted_pos,
                             rec.sorted_g, n_chunks) == rec.counts.sum()
    placed = int(rec.counts.sum())
    np.testing.assert_array_equal(row_start, want_start)
    np.testing.assert_array_equal(rec.sorted_pos[:placed], want_pos[:placed])
    np.testing.assert_array_equal(rec.sorted_g[:placed], want_g[:placed])
    assert not rec.cursor.any()


@pytest.mark.parametrize("rows", [[], [1, 4, 8]])
def test_sgd_update_rows_matches_numpy(rows):
    rng = np.random.default_rng(11)
    param, grad, _, _, touched = _opt_arrays(rng, 10, 4)
    p0, g0, t0 = param.copy(), grad.copy(), touched.copy()
    rows = np.array(rows, np.int64)
    opt.sgd_update_rows(param, grad, touched, rows, np.float32(0.05))
    want = p0.astype(np.float64)
    want[rows] -= 0.05 * g0[rows]
    np.testing.assert_allclose(param, want, rtol=1e-6, atol=1e-7)
    other = np.setdiff1d(np.arange(10), rows)
    np.testing.assert_array_equal(param[other], p0[other])
    np.testing.assert_array_equal(grad[other], g0[other])
    assert np.all(grad[rows] == 0.0) and np.all(touched[rows] == 0)
    np.testing.assert_array_equal(touched[other], t0[other])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 3 * opt.MARK_BLOCK_MIN + 13])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.5, 1.0])
def test_touched_rows_are_the_non_zero_marks_in_order(threads, n, density):
    """touched_rows (word-skipping, one block per thread) lists what np.flatnonzero lists, for any
    length (whole words and a tail), any share of marked rows, and marks other than 1."""
    rng = np.random.default_rng(n)
    marks = (rng.random(n) < density).astype(np.uint8) * rng.integers(1, 256, n).astype(np.uint8)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        rows = opt.touched_rows(marks)
    finally:
        numba.set_num_threads(previous)
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(rows, np.flatnonzero(marks))


def test_touched_rows_refuses_marks_it_cannot_scan():
    for bad in (np.zeros(16, bool), np.zeros(16, np.int32), np.zeros((4, 4), np.uint8), np.zeros(32, np.uint8)[::2]):
        with pytest.raises(ValueError, match="touched"):
            opt.touched_rows(bad)


@pytest.mark.parametrize("optimizer,weight_decay", [("adam", 0.0), ("adam", 0.5), ("sgd", 0.0)])
def test_apply_updates_visits_touched_rows_and_biases_only(optimizer, weight_decay):
    from slidepy.network import init_params

    rng = np.random.default_rng(4)
    layers = init_params([(6, 5), (5, 3)], optimizer=optimizer, seed=1)
    for layer in layers:
        layer.weight_grad[...] = rng.standard_normal(layer.weight_grad.shape)
        layer.bias_grad[...] = rng.standard_normal(layer.bias_grad.shape)
    layers[0].row_touched[[1, 4]] = 1
    layers[0].bias_touched[[0, 2]] = 1
    layers[1].row_touched[[1, 2]] = 1  # a neuron-major layer marks a neuron's row and bias together
    layers[1].bias_touched[[1, 2]] = 1
    before = [(l.weights.copy(), l.bias.copy(), l.weight_grad.copy(), l.bias_grad.copy()) for l in layers]
    touched = [(np.flatnonzero(l.row_touched), np.flatnonzero(l.bias_touched)) for l in layers]
    n = opt.apply_updates(layers, optimizer=optimizer, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, step=1,
                          weight_decay=weight_decay)
    assert n == 4
    for layer, (w0, b0, gw, gb), (rows, brows) in zip(layers, before, touched):
        if optimizer == "adam":  # weight rows decay, biases never do
            want_w = naive.naive_adam_rows(w0, gw, np.zeros_like(w0), np.zeros_like(w0), rows, 0.01, 0.9, 0.999,
                                           1e-8, 1, weight_decay)[0]
            want_b = naive.naive_adam_rows(b0[:, None], gb[:, None], np.zeros((b0.size, 1)), np.zeros((b0.size, 1)),
                                           brows, 0.01, 0.9, 0.999, 1e-8, 1)[0][:, 0]
        else:
            want_w = w0.astype(np.float64)
            want_w[rows] -= 0.01 * gw[rows]
            want_b = b0.astype(np.float64)
            want_b[brows] -= 0.01 * gb[brows]
        np.testing.assert_allclose(layer.weights, want_w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer.bias, want_b, rtol=1e-5, atol=1e-7)
        assert not layer.row_touched.any() and not layer.bias_touched.any()
        assert np.all(layer.weight_grad[rows] == 0) and np.all(layer.bias_grad[brows] == 0)
        keep = np.setdiff1d(np.arange(gw.shape[0]), rows)
        np.testing.assert_array_equal(layer.weight_grad[keep], gw[keep])  # untouched rows keep gradient


# ---------------------------------------------------------------------------------------------
# selection.py through the drivers: a sample's whole LSH active set, its corrected loss, and
# LSH-mode prediction, against NumPy references (naive.naive_lsh_active_set / naive_lsh_fill).
# ---------------------------------------------------------------------------------------------

N_FEATURES, N_HIDDEN, N_OUT = 30, 12, 160


def _lsh_cfg(family, **extra):
    lsh = {"family": family, "rebuild": {"initial_interval": 1000}, **extra}
    if family == "kmeans":
        lsh.setdefault("clusters", 16)
    else:
        lsh.update({"k": 3, "l": 6, "range_pow": 4, "bucket_capacity": 16})
    return lsh_options(config_from_dict({"model": {"output": {"selection": {"mode": "lsh", "lsh": lsh}}}})
                       .model.output.selection.lsh)


def _lsh_engine(family, loss="softmax", budget=40, min_active=0, seed=5, negatives="batch", **lsh):
    sel_out = LayerSelection(mode="lsh", budget=budget, min_active=min_active, inference="lsh",
                             lsh=_lsh_cfg(family, **lsh), correction=True, negatives=negatives)
    eng = Engine(N_FEATURES, [N_HIDDEN], N_OUT, [LayerSelection(), sel_out], loss=loss, seed=seed, max_labels=3)
    rng = np.random.default_rng(seed)  # spread the rows and biases, as training would
    eng.layers[1].weights[...] = rng.standard_normal(eng.layers[1].weights.shape).astype(np.float32)
    eng.layers[1].bias[...] = rng.standard_normal(N_OUT).astype(np.float32)
    eng.lsh[1].rebuild(eng.layers[1].weights, False, bias=eng.layers[1].bias)
    return eng


def _lsh_data(seed, n_samples=12):
    rng = np.random.default_rng(seed)
    xp, xi, xv, yp, yi = [0], [], [], [0], []
    for i in range(n_samples):
        ids = rng.choice(N_FEATURES, int(rng.integers(2, 8)), replace=False)
        xi += ids.tolist()
        xv += rng.uniform(0.1, 1.0, ids.size).tolist()
        xp.append(len(xi))
        yi += rng.choice(N_OUT, int(rng.integers(1, 4)), replace=False).tolist()
        yp.append(len(yi))
    return Dataset(np.array(xp, np.int64), np.array(xi, np.int32), np.array(xv, np.float32), np.array(yp, np.int64),
                   np.array(yi, np.int32), N_FEATURES, N_OUT)


def _hidden(eng, data, i):
    x0, x1 = data.x_indptr[i], data.x_indptr[i + 1]
    return naive.naive_hidden_float32(eng.layers[0].weights, eng.layers[0].bias, data.x_indices[x0:x1],
                                      data.x_values[x0:x1])


@pytest.mark.parametrize("family,loss,share,min_active", [("srp", "softmax", 0.25, 0), ("srp", "bce", 0.5, 40),
                                                          ("dwta", "softmax", 0.25, 0), ("kmeans", "softmax", 0.25, 0),
                                                          ("kmeans", "bce", 0.0, 40), ("srp", "softmax", 0.0, 40)])
@pytest.mark.parametrize("negatives", ["batch", "sample"])
def test_lsh_active_set_and_corrected_loss_match_naive(one_thread, family, loss, share, min_active, negatives):
    """One sample per step through the training driver: its output active set is the labels,
    then the index's candidates up to the budget less the random share, then uniform negatives up
    to the budget (the step's shared pool first when negatives is "batch", then draws from the
    sample's stream derive_seed(seed, step, 0)), then own draws up to min_active; the loss is the
    corrected loss of that set, the uniform draws standing for (N - u) / (n - u) neurons."""
    eng = _lsh_engine(family, loss=loss, random_share=share, min_active=min_active, negatives=negatives)
    assert (eng.negative_pool_size() > 0) == (negatives == "batch" and share > 0)
    data = _lsh_data(7)
    assert eng.kinds() == kinds_marker([{"srp": 0, "dwta": 2, "kmeans": 4}[family]])
    for i in [0, 3, 5, 9]:
        step = eng.step
        stats = eng.train_step(data, np.array([i], np.int64), apply=False)  # weights stay as they are
        scr = eng._get_scratch(True, 1)
        labels = data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]].tolist()
        h = _hidden(eng, data, i)
        np.testing.assert_array_equal(scr[0].act_vals[0, :N_HIDDEN], h)  # the query the index saw
        state = naive.naive_seed_state(naive.naive_derive_seed(eng.seed, step, 0))
        want, uniform_from, _ = naive.naive_lsh_active_set(eng.lsh[1], h, labels, 40, int(round(1000 * share)),
                                                           min_active, N_OUT, state,
                                                           naive.naive_negative_pool(eng.seed, step, N_OUT,
                                                                                     eng.negative_pool_size()))
        n = int(stats.active_mean[1])
        assert scr[1].act_ids[0, :n].tolist() == want
        assert scr[1].uniform_from[0] == uniform_from
        logits = eng.layers[1].weights[want].astype(np.float64) @ h + eng.layers[1].bias[want]
        u, log_weight = naive.naive_correction_weight(N_OUT, uniform_from, n, True)
        positions = [want.index(y) for y in naive.naive_unique(labels)]
        want_loss, _ = naive.naive_corrected_loss(logits, positions, u, log_weight, loss)
        np.testing.assert_allclose(stats.loss, want_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["srp", "wta", "kmeans"])
def test_lsh_predict_matches_numpy_forward_over_lsh_set(family):
    """Engine.predict(use_lsh=True): the output layer scores only the index's candidates for the
    sample's hidden activations (no labels, no random share at inference), and the top-k of
    those logits comes back; exact scoring (use_lsh=False) is the dense top-k."""
    eng = _lsh_engine(family, budget=30)
    data = _lsh_data(8, n_samples=20)
    rows = np.arange(20, dtype=np.int64)
    ids, scores, active = eng.predict(data, rows, k=5, batch_size=7, use_lsh=True)
    sizes = []
    for b, i in enumerate(rows):
        h = _hidden(eng, data, i)
        chosen = naive.naive_lsh_fill(eng.lsh[1], h, [], 30)
        sizes.append(len(chosen))
        logits = eng.layers[1].weights[chosen].astype(np.float64) @ h + eng.layers[1].bias[chosen]
        order = np.argsort(-logits, kind="stable")[:5]
        want_ids = np.full(5, -1)
        want_scores = np.full(5, -np.inf)
        want_ids[:order.size] = np.array(chosen)[order]
        want_scores[:order.size] = logits[order]
        np.testing.assert_array_equal(ids[b], want_ids)
        np.testing.assert_allclose(scores[b], want_scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(active, [N_HIDDEN, np.mean(sizes)])
    exact_ids, _, _ = eng.predict(data, rows, k=5, use_lsh=False)
    dense = np.stack([_hidden(eng, data, i) for i in rows]).astype(np.float64) @ eng.layers[1].weights.T.astype(
        np.float64) + eng.layers[1].bias
    np.testing.assert_array_equal(exact_ids, naive.naive_topk(dense, 5)[0])


def test_lsh_predict_of_a_sample_does_not_depend_on_the_rows_beside_it():
    """With thin LSH sets topped up by random draws (min_active), a sample's draws are seeded by
    its dataset row, so predicting it alone, among others or in another order gives one answer."""
    eng = _lsh_engine("srp", budget=80, min_active=80, bucket_capacity=2)
    data = _lsh_data(8, n_samples=20)
    rows = np.arange(20, dtype=np.int64)
    ids, scores, active = eng.predict(data, rows, k=5, batch_size=7, use_lsh=True)
    assert active[1] == 80  # every set was topped up: the index alone returns at most 6 x 2 rows
    for part in (rows[5:10], rows[::-1].copy(), np.array([13], np.int64)):
        part_ids, part_scores, _ = eng.predict(data, part, k=5, batch_size=3, use_lsh=True)
        np.testing.assert_array_equal(part_ids, ids[part])
        np.testing.assert_array_equal(part_scores, scores[part])


def test_exact_then_lsh_predict_on_a_layer_the_budget_covers():
    """A budget of the whole layer trains it exactly (no stamp row needed) while inference still
    goes through the index, which marks candidates in a stamp row: the scratch of an exact
    prediction must not be reused by a later LSH one (it wrote past a zero-width stamp)."""
    eng = _lsh_engine("srp", budget=2 * N_OUT)
    data = _lsh_data(8, n_samples=20)
    rows = np.arange(20, dtype=np.int64)
    exact_ids, _, _ = eng.predict(data, rows, k=5, use_lsh=False)
    ids, scores, _ = eng.predict(data, rows, k=5, use_lsh=True)
    # two scratch sets, the LSH one with a stamp row per chunk over the whole layer
    assert sorted(scratch[1].stamp.shape[1] for scratch in eng._scratch.values()) == [0, N_OUT]
    fresh_ids, fresh_scores, _ = _lsh_engine("srp", budget=2 * N_OUT).predict(data, rows, k=5, use_lsh=True)
    np.testing.assert_array_equal(ids, fresh_ids)
    np.testing.assert_array_equal(scores, fresh_scores)
    np.testing.assert_array_equal(eng.predict(data, rows, k=5, use_lsh=False)[0], exact_ids)
