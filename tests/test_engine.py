"""Tests for slidepy/engine.py and the parallel drivers of slidepy/kernels.py: with every neuron
active the engine must equal a dense NumPy MLP (gradients, lazy Adam / SGD steps, predictions);
gradients match finite differences; sparse (random) active sets match the reference restricted to
the same sets; edge cases; bit-identical reruns; randomness independent of the thread split.

Every test runs with one numba thread (conftest.one_thread): with more, the Hogwild gradient adds may
race on these tiny layers, which would make exact comparisons flaky by design.
"""

import os

import numpy as np
import pytest

import naive
from slidepy import engine as engine_mod
from slidepy import optimizer as optimizer_mod
from slidepy.config import Lsh
from slidepy.constants import PHASE_FULL
from slidepy.data import Dataset
from slidepy.engine import Engine, LayerSelection
from slidepy.kernels import chunk_worker, train_batch, train_chunk
from slidepy.model import lsh_options

RTOL, ATOL = 1e-4, 1e-5  # float32 engine against float64 references
F, L = 40, 16  # input features, labels


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def make_data(seed, n_samples=14, n_features=F, n_labels=L, *, max_nnz=6, max_labels=3, empty_x=(),
              no_labels=(1,), x_rows=None, y_rows=None):
    """A random Dataset: 1..max_nnz distinct features (values in [0.1, 1)) and 1..max_labels distinct
    labels per sample; rows in empty_x have no features, rows in no_labels no labels. x_rows /
    y_rows ({row: (ids, values)} / {row: ids}) override single rows."""
    rng = np.random.default_rng(seed)
    x_rows, y_rows = x_rows or {}, y_rows or {}
    xi, xv, xp, yi, yp = [], [], [0], [], [0]
    for i in range(n_samples):
        if i in x_rows:
            ids, vals = x_rows[i]
        elif i in empty_x:
            ids, vals = [], []
        else:
            nnz = int(rng.integers(1, max_nnz + 1))
            ids = rng.choice(n_features, nnz, replace=False).tolist()
            vals = rng.uniform(0.1, 1.0, nnz).tolist()
        xi += list(ids)
        xv += list(vals)
        xp.append(len(xi))
        if i in y_rows:
            labels = list(y_rows[i])
        elif i in no_labels:
            labels = []
        else:
            labels = rng.choice(n_labels, int(rng.integers(1, max_labels + 1)), replace=False).tolist()
        yi += labels
        yp.append(len(yi))
    return Dataset(np.array(xp, np.int64), np.array(xi, np.int32), np.array(xv, np.float32),
                   np.array(yp, np.int64), np.array(yi, np.int32), n_features, n_labels)


def make_engine(hidden, *, modes=None, n_features=F, n_labels=L, negatives="auto", **kw):
    """modes: per layer None ("all") or (mode, budget); negatives: the output layer's setting."""
    modes = modes or [None] * (len(hidden) + 1)
    sel = [LayerSelection() if m is None else LayerSelection(mode=m[0], budget=m[1], negatives=negatives)
           for m in modes]
    kw.setdefault("lr", 0.01)
    return Engine(n_features, list(hidden), n_labels, sel, **kw)


def params_of(eng):
    return [(l.weights.astype(np.float64), l.bias.astype(np.float64)) for l in eng.layers]


def batch_of(data, rows):
    """(dense inputs, label lists, feature-id lists) of dataset rows, for the references."""
    x = naive.naive_dense_rows(data.x_indptr, data.x_indices, data.x_values, data.n_features, rows)
    labels = [data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]].tolist() for i in rows]
    feats = [data.x_indices[data.x_indptr[i]:data.x_indptr[i + 1]].tolist() for i in rows]
    return x, labels, feats


def reference(eng, data, rows, masks=None, params=None):
    x, labels, _ = batch_of(data, rows)
    return naive.naive_forward_backward(params or params_of(eng), x, labels, eng.loss, masks=masks)


def step_and_capture(monkeypatch, eng, data, rows):
    """Engine.train_step, keeping copies of the accumulated gradients and touched marks that the
    optimizer is about to consume. Returns (stats, grads, touched, optimizer kwargs).

    When the engine records the output layer's weight gradient (Engine.records_output) its
    weight_grad stays zero and the gradient captured is the one the records stand for, or the
    gathered rows of a batch product (union.py)."""
    seen = {}

    def spy(layers, **kw):
        seen["grads"] = [(l.weight_grad.copy(), l.bias_grad.copy()) for l in layers]
        if kw.get("records") is not None:
            out = layers[len(layers) - 1]
            assert not out.weight_grad.any()
            assert not out.bias_grad.any()
            seen["grads"][-1] = (optimizer_mod.recorded_weight_grad(kw["records"], out.weights.shape),
                                 optimizer_mod.recorded_bias_grad(kw["records"], out.bias.shape[0]))
        if kw.get("gathered") is not None:
            out = layers[len(layers) - 1]
            assert not out.weight_grad.any()
            grad = np.zeros(out.weights.shape, np.float64)
            rows, grads = kw["gathered"]
            grad[rows] = grads
            seen["grads"][-1] = (grad, out.bias_grad.copy())
        seen["touched"] = [(l.row_touched.astype(bool), l.bias_touched.astype(bool)) for l in layers]
        for rows_marked, biases_marked in seen["touched"][1:]:  # apply_updates reuses a neuron-major
            np.testing.assert_array_equal(rows_marked, biases_marked)  # layer's row marks for its biases
        seen["kw"] = kw
        return optimizer_mod.apply_updates(layers, **kw)

    monkeypatch.setattr(engine_mod, "apply_updates", spy)
    stats = eng.train_step(data, np.asarray(rows, np.int64))
    return stats, seen["grads"], seen["touched"], seen["kw"]


def run_train_batch(eng, data, rows, bounds, records=None):
    """kernels.train_batch as Engine.train_step calls it, but with chosen chunk bounds and no
    optimizer step; the output layer's gradient goes into `records` (network.OutputRecords) if
    given, else into its weight_grad. Returns (scratch, n_active (T, layers), loss_out (B,))."""
    rows = np.ascontiguousarray(rows, np.int64)
    bounds = np.asarray(bounds, np.int64)
    n_chunks = bounds.shape[0] - 1
    eng.ensure_label_capacity(int(np.max(data.y_indptr[rows + 1] - data.y_indptr[rows], initial=0)))
    scratch = eng._get_scratch(True, n_chunks)
    width = max(1, eng.max_labels)
    n_active = np.zeros((n_chunks, eng.n_layers), np.int64)
    loss_out = np.zeros(rows.shape[0], np.float64)
    args = (eng.layers, eng.spec, scratch, eng.lsh_layers(), eng.kinds(), data.x_indptr, data.x_indices, data.x_values,
            data.y_indptr, data.y_indices, rows, bounds, np.uint64(eng.seed), np.uint64(eng.step),
            eng.loss_code, np.float32(1.0 / rows.shape[0]), np.zeros(n_chunks, np.uint64), eng.negative_pool(),
            np.zeros((n_chunks, width), np.int32), np.zeros((n_chunks, width), np.int32), n_active,
            np.zeros((n_chunks, eng.n_layers), np.int64), loss_out, np.bool_(records is not None),
            *(engine_mod._NO_RECORDS if records is None else records)[:4], PHASE_FULL, engine_mod._NO_META,
            engine_mod._NO_HIDDEN_GRADS, engine_mod._NO_SCORES)
    train_batch(*args, chunk_worker(train_chunk, args))
    return scratch, n_active, loss_out


def layer_specs(eng, modes):
    """(mode, budget, min_active, N) per layer for naive.naive_active_sets."""
    return [("all", n, 0, n) if m is None else (m[0], m[1], 0, n) for m, (_, n) in zip(modes, eng.sizes)]


def shared_pool(eng, step):
    """The output layer's shared negatives at `step`, drawn in Python (naive.naive_negative_pool)."""
    return naive.naive_negative_pool(eng.seed, step, eng.sizes[-1][1], eng.negative_pool_size())


def active_masks(eng, modes, data, rows, step):
    """(B, N_l) bool masks of the training active sets the engine draws at `step` (batch positions)."""
    specs = layer_specs(eng, modes)
    pool = shared_pool(eng, step)
    masks = [np.zeros((len(rows), n), bool) for _, n in eng.sizes]
    _, labels, _ = batch_of(data, rows)
    for b in range(len(rows)):
        if not labels[b]:
            continue  # skipped by the engine: nothing drawn
        for l, ids in enumerate(naive.naive_active_sets(eng.seed, step, b, labels[b], specs, pool)):
            masks[l][b, ids] = True
    return masks


def assert_grads(got, want, rtol=RTOL, atol=ATOL):
    for l, ((gw, gb), (ww, wb)) in enumerate(zip(got, want)):
        np.testing.assert_allclose(gw, ww, rtol=rtol, atol=atol, err_msg=f"layer {l} weights")
        np.testing.assert_allclose(gb, wb, rtol=rtol, atol=atol, err_msg=f"layer {l} bias")


def assert_touched(got, data, rows, ref, masks=None):
    _, labels, feats = batch_of(data, rows)
    want = naive.naive_touched(feats, labels, ref["deltas"], data.n_features, masks)
    for l, ((gr, gb), (wr, wb)) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(gr, wr, err_msg=f"layer {l} row_touched")
        np.testing.assert_array_equal(gb, wb, err_msg=f"layer {l} bias_touched")


ROWS = [5, 0, 1, 9, 3, 7, 11, 2, 12, 4]  # B = 10, sample 1 unlabelled: gradients still scale by 1/10


# ---------------------------------------------------------------------------------------------
# Every neuron active: the engine is a dense MLP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("hidden", [[8], [8, 6]])
def test_all_active_gradients_equal_dense_mlp(monkeypatch, hidden, loss):
    data = make_data(1)
    eng = make_engine(hidden, loss=loss)
    ref = reference(eng, data, ROWS)
    stats, grads, touched, kw = step_and_capture(monkeypatch, eng, data, ROWS)
    # Adam over a dense last hidden layer: the output's gradient is recorded, or gathered by the batch product
    assert kw["records"] is not None or kw["gathered"] is not None
    assert_grads(grads, ref["grads"])
    assert_touched(touched, data, ROWS, ref)
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5)  # mean over the 9 labelled samples
    np.testing.assert_array_equal(stats.active_mean, [n for _, n in eng.sizes])
    assert stats.rows_updated == sum(int(r.sum()) for r, _ in touched)
    assert kw["step"] == 1 and eng.step == 1


@pytest.mark.parametrize("hidden", [[8], [8, 6]])
def test_dropout_gradients_equal_dense_mlp_with_the_same_masks(monkeypatch, hidden):
    """Inverted dropout on the hidden outputs: the engine's gradients are the dense MLP's with the
    masks the sample streams draw (naive_dropout_masks); the loss scale and ReLU gating hold."""
    data = make_data(1)
    eng = make_engine(hidden, dropout=0.4)
    _, labels, _ = batch_of(data, ROWS)
    masks = naive.naive_dropout_masks(eng.seed, eng.step, [bool(y) for y in labels], hidden, 0.4)
    dropped = np.concatenate([(m == 0).ravel() for m in masks])
    assert 0.2 < dropped.mean() < 0.7  # p = 0.4 of the draws, plus the unlabelled sample's row
    ref = reference(eng, data, ROWS, masks=masks + [None])
    stats, grads, _, _ = step_and_capture(monkeypatch, eng, data, ROWS)
    assert_grads(grads, ref["grads"])
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5)
    without = reference(eng, data, ROWS)  # the masks matter: without them the gradients differ
    assert not np.allclose(grads[0][0], without["grads"][0][0], rtol=RTOL, atol=ATOL)


def test_dropout_is_training_only():
    """Prediction is deterministic and equals a dropout-free engine with the same weights."""
    data = make_data(1)
    eng = make_engine([8], dropout=0.5)
    plain = make_engine([8])
    rows = np.arange(data.n_samples, dtype=np.int64)
    a = eng.predict(data, rows, k=3)
    b = plain.predict(data, rows, k=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


def _zero_moments(w, b):
    return np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)


def _lazy_reference_step(ref_params, moments, ref, touched, optimizer, lr, step):
    """One optimizer step of the float64 reference: lazy Adam (or SGD) on the touched rows."""
    out = []
    for l, ((w, b), (gw, gb), (rows, brows)) in enumerate(zip(ref_params, ref["grads"], touched)):
        rows, brows = np.flatnonzero(rows), np.flatnonzero(brows)
        if optimizer == "sgd":
            w, b = w.copy(), b.copy()
            w[rows] -= lr * gw[rows]
            b[brows] -= lr * gb[brows]
        else:
            mw, vw, mb, vb = moments[l]
            w, mw, vw = naive.naive_adam_rows(w, gw, mw, vw, rows, lr, 0.9, 0.999, 1e-8, step)
            b2, mb, vb = naive.naive_adam_rows(b[:, None], gb[:, None], mb[:, None], vb[:, None], brows, lr, 0.9,
                                               0.999, 1e-8, step)
            b, mb, vb = b2[:, 0], mb[:, 0], vb[:, 0]
            moments[l] = (mw, vw, mb, vb)
        out.append((w, b))
    return out


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("hidden", [[8], [8, 6]])
def test_all_active_steps_equal_lazy_numpy_optimizer(hidden, optimizer):
    """Three Engine.train_step calls against the float64 reference MLP + optimizer.

    Compared: every weight and bias after each step (and Adam's moments at the end). The
    reference Adam is dense Adam restricted to the rows the engine marks touched (naive_touched:
    layer-0 rows of the features seen, every layer-0 bias, and rows / biases with non-zero
    gradient above), with bias correction from the global step: lazy Adam. The batches overlap
    only partly, so rows seen at step 1 and unseen at step 2 must keep their weights and moments;
    the test checks that a dense Adam would have moved them.
    """
    data = make_data(2, n_samples=24)
    eng = make_engine(hidden, optimizer=optimizer)
    batches = [list(range(0, 10)), list(range(8, 18)), [20, 3, 14, 22, 1, 9]]
    ref_params = params_of(eng)
    dense_params = params_of(eng)
    moments = [_zero_moments(w, b) for w, b in ref_params]
    dense_moments = [_zero_moments(w, b) for w, b in ref_params]
    for step, rows in enumerate(batches, 1):
        ref = reference(eng, data, rows, params=ref_params)
        _, labels, feats = batch_of(data, rows)
        touched = naive.naive_touched(feats, labels, ref["deltas"], F)
        ref_params = _lazy_reference_step(ref_params, moments, ref, touched, optimizer, 0.01, step)
        dense_ref = reference(eng, data, rows, params=dense_params)
        every = [(np.ones(w.shape[0], bool), np.ones(b.shape[0], bool)) for w, b in dense_params]
        dense_params = _lazy_reference_step(dense_params, dense_moments, dense_ref, every, optimizer, 0.01, step)
        eng.train_step(data, np.array(rows, np.int64))
        for l, (layer, (w, b)) in enumerate(zip(eng.layers, ref_params)):
            np.testing.assert_allclose(layer.weights, w, rtol=RTOL, atol=ATOL, err_msg=f"step {step} layer {l}")
            np.testing.assert_allclose(layer.bias, b, rtol=RTOL, atol=ATOL, err_msg=f"step {step} layer {l}")
            assert not layer.row_touched.any() and not layer.bias_touched.any()
            assert not layer.weight_grad.any() and not layer.bias_grad.any()  # all consumed
    if optimizer == "adam":
        for layer, (mw, vw, mb, vb) in zip(eng.layers, moments):
            np.testing.assert_allclose(layer.weight_m, mw, rtol=RTOL, atol=1e-7)
            np.testing.assert_allclose(layer.weight_v, vw, rtol=RTOL, atol=1e-9)
            np.testing.assert_allclose(layer.bias_m, mb, rtol=RTOL, atol=1e-7)
            np.testing.assert_allclose(layer.bias_v, vb, rtol=RTOL, atol=1e-9)
        gap = max(np.abs(layer.weights - w).max() for layer, (w, _) in zip(eng.layers, dense_params))
        assert gap > 1e-3  # lazy and dense Adam really differ on this schedule
    else:  # untouched rows have zero gradient: lazy SGD is dense SGD
        for layer, (w, b) in zip(eng.layers, dense_params):
            np.testing.assert_allclose(layer.weights, w, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("hidden", [[4], [4, 3]])
def test_gradients_match_finite_differences(monkeypatch, hidden, loss):
    """Engine gradient (every neuron active) against central differences of the float64 NumPy loss
    (1/B) sum_b loss_b evaluated from the engine's own weights; the reference's gradient too."""
    data = make_data(3, n_samples=4, n_features=7, n_labels=5, max_nnz=4, max_labels=2,
                     x_rows={0: ([2, 5, 2], [0.5, 0.8, 0.3])})  # a repeated feature
    rows = [0, 1, 2, 3]  # sample 1 unlabelled
    eng = make_engine(hidden, loss=loss, n_features=7, n_labels=5)
    params = params_of(eng)
    x, labels, _ = batch_of(data, rows)
    ref = naive.naive_forward_backward(params, x, labels, loss)
    _, grads, _, _ = step_and_capture(monkeypatch, eng, data, rows)

    def objective():
        return naive.naive_forward_backward(params, x, labels, loss)["sample_loss"].sum() / len(rows)

    h = 1e-5
    for l in range(len(params)):
        for which in (0, 1):
            arr = params[l][which]
            fd = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                up = objective()
                arr[idx] = old - h
                down = objective()
                arr[idx] = old
                fd[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(ref["grads"][l][which], fd, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(grads[l][which], fd, rtol=RTOL, atol=ATOL, err_msg=f"layer {l}/{which}")
            assert np.abs(fd).max() > 1e-3  # a live layer, not a vacuous comparison


# ---------------------------------------------------------------------------------------------
# Sparse active sets
# ---------------------------------------------------------------------------------------------

SPARSE_MODES = {
    "output": [None, ("random", 6)],
    "both": [("random", 5), ("random", 6)],
    "deep": [None, ("random", 4), ("random", 5)],
}


@pytest.mark.parametrize("negatives", ["sample", "batch"])
@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("layout", sorted(SPARSE_MODES))
def test_random_active_sets_match_restricted_reference(monkeypatch, layout, loss, negatives):
    """Gradients with random selection equal the reference restricted to the same active sets
    (softmax / BCE over the active logits only, inactive hidden neurons output 0), the active
    sets being redrawn in Python from derive_seed(seed, step, position) and xorshift64*, the
    output layer's negatives from the step's shared pool first when negatives is "batch"."""
    modes = SPARSE_MODES[layout]
    hidden = [8] if len(modes) == 2 else [8, 6]
    data = make_data(4, n_labels=20, y_rows={4: [3, 3, 17]})  # duplicate label: forced once
    eng = make_engine(hidden, modes=modes, n_labels=20, loss=loss, seed=7, negatives=negatives)
    assert (eng.negative_pool_size() > 0) == (negatives == "batch")
    for step, rows in enumerate([ROWS, [13, 4, 6, 8, 10]]):
        masks = active_masks(eng, modes, data, rows, step)
        ref = reference(eng, data, rows, masks=masks)
        stats, grads, touched, kw = step_and_capture(monkeypatch, eng, data, rows)
        # only over a dense last hidden layer
        assert (kw["records"] is not None or kw["gathered"] is not None) == (layout == "output")
        assert_grads(grads, ref["grads"])
        assert_touched(touched, data, rows, ref, masks)
        np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5)
        labelled = [b for b, i in enumerate(rows) if data.y_indptr[i + 1] > data.y_indptr[i]]
        np.testing.assert_allclose(stats.active_mean, [m[labelled].sum(axis=1).mean() for m in masks])


def test_random_active_set_in_scratch_matches_python(monkeypatch):
    """One sample per batch: the kernel's active ids (scratch act_ids, in order) are the labels
    followed by the Python-drawn neurons, at several steps (the step enters the seed)."""
    modes = [("random", 5), ("random", 6)]
    data = make_data(5, n_labels=20)
    eng = make_engine([8], modes=modes, n_labels=20, seed=11)
    specs = layer_specs(eng, modes)
    seen = []
    for i in [0, 2, 3, 2]:
        step = eng.step
        stats = eng.train_step(data, np.array([i], np.int64))
        scratch = eng._get_scratch(True, 1)
        labels = data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]].tolist()
        want = naive.naive_active_sets(eng.seed, step, 0, labels, specs, shared_pool(eng, step))
        for l in range(2):
            n = int(stats.active_mean[l])
            assert scratch[l].act_ids[0, :n].tolist() == want[l]
        assert want[1][:len(labels)] == labels
        seen.append(tuple(want[1]))
    assert seen[1] != seen[3]  # same sample, another step: another draw


# ---------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------


def test_empty_input_row(monkeypatch):
    data = make_data(6, empty_x=(0,))
    eng = make_engine([8])
    rows = [0, 2, 3]
    ref = reference(eng, data, rows)
    _, grads, touched, _ = step_and_capture(monkeypatch, eng, data, rows)
    assert_grads(grads, ref["grads"])
    assert_touched(touched, data, rows, ref)
    # a batch of just the empty row: no layer-0 weight row, but the biases learn
    ref = reference(eng, data, [0])
    stats, grads, touched, _ = step_and_capture(monkeypatch, eng, data, [0])
    assert_grads(grads, ref["grads"])
    assert not touched[0][0].any() and touched[0][1].all()
    assert not grads[0][0].any() and grads[0][1].any()
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5)


def test_unlabelled_samples_give_no_gradient(monkeypatch):
    data = make_data(7, no_labels=(1, 4, 6))
    for modes in ([None, None], [("random", 3), ("random", 5)]):
        eng = make_engine([8], modes=modes)
        before = [(l.weights.copy(), l.bias.copy()) for l in eng.layers]
        stats, grads, touched, _ = step_and_capture(monkeypatch, eng, data, [4, 1, 6])
        assert stats.loss == 0.0 and stats.rows_updated == 0
        np.testing.assert_array_equal(stats.active_mean, 0)
        for (gw, gb), (tr, tb) in zip(grads, touched):
            assert not gw.any() and not gb.any() and not tr.any() and not tb.any()
        for layer, (w, b) in zip(eng.layers, before):
            np.testing.assert_array_equal(layer.weights, w)
            np.testing.assert_array_equal(layer.bias, b)
        assert eng.step == 1
        # mixed in a batch: only the labelled samples get a loss (the 1/B scale is checked above)
        _, _, loss_out = run_train_batch(eng, data, np.array([4, 0, 1, 2], np.int64), [0, 4])
        assert loss_out[0] == 0.0 and loss_out[2] == 0.0 and loss_out[1] > 0 and loss_out[3] > 0


@pytest.mark.parametrize("modes", [[None, None], [None, ("random", 4)]])
def test_duplicate_label_ids_count_once(modes):
    dup = make_data(8, y_rows={0: [3, 3, 5, 3], 2: [7, 7]})
    dedup = make_data(8, y_rows={0: [3, 5], 2: [7]})
    a, b = make_engine([8], modes=modes), make_engine([8], modes=modes)
    for rows in ([0, 1, 2, 3], [2, 0, 5]):
        sa = a.train_step(dup, np.array(rows, np.int64))
        sb = b.train_step(dedup, np.array(rows, np.int64))
        assert sa.loss == sb.loss
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.weights, lb.weights)
        np.testing.assert_array_equal(la.bias, lb.bias)


def test_duplicate_feature_ids_act_as_summed_values(monkeypatch):
    split = make_data(9, x_rows={0: ([4, 9, 4, 4], [0.25, 0.5, 0.5, 0.125])})
    summed = make_data(9, x_rows={0: ([4, 9], [0.875, 0.5])})
    a, b = make_engine([8]), make_engine([8])
    ref = reference(a, summed, [0, 2, 3])
    sa, ga, ta, _ = step_and_capture(monkeypatch, a, split, [0, 2, 3])
    sb, gb, tb, _ = step_and_capture(monkeypatch, b, summed, [0, 2, 3])
    np.testing.assert_allclose(sa.loss, sb.loss, rtol=1e-6)
    assert_grads(ga, gb, rtol=1e-5, atol=1e-7)
    assert_grads(ga, ref["grads"])
    for (ra, ba), (rb, bb) in zip(ta, tb):
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ba, bb)


@pytest.mark.parametrize("labels", [[6], [6, 11]])
def test_single_neuron_active_set(monkeypatch, labels):
    """Budget 1 on the output: only the labels are active (they are forced even past the budget);
    the softmax over them stays finite. One label: p = 1 exactly, so loss 0 and no gradient."""
    data = make_data(10, y_rows={0: labels})
    modes = [None, ("random", 1)]
    eng = make_engine([8], modes=modes)
    masks = active_masks(eng, modes, data, [0], 0)
    assert np.flatnonzero(masks[1][0]).tolist() == sorted(labels)
    ref = reference(eng, data, [0], masks=masks)
    stats, grads, _, _ = step_and_capture(monkeypatch, eng, data, [0])
    assert stats.active_mean[1] == len(labels)
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5, atol=1e-7)
    assert_grads(grads, ref["grads"])
    for gw, gb in grads:
        assert np.all(np.isfinite(gw)) and np.all(np.isfinite(gb))
    if len(labels) == 1:
        assert stats.loss == 0.0
        assert all(not gw.any() and not gb.any() for gw, gb in grads)
    else:
        assert stats.loss >= np.log(2.0) - 1e-6  # two labels, uniform target: at least log 2
    assert all(np.all(np.isfinite(l.weights)) for l in eng.layers)


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("modes", [[None, None, None], [None, None, ("random", 5)]])
def test_huge_logits_stay_finite(monkeypatch, loss, modes):
    data = make_data(11)
    eng = make_engine([8, 6], modes=modes, loss=loss)
    for layer in eng.layers:
        layer.weights[...] *= np.float32(1e3)  # logits ~ 1e6
        layer.bias[...] = np.float32(1e3)
    masks = active_masks(eng, modes, data, ROWS, 0)
    ref = reference(eng, data, ROWS, masks=masks)
    assert np.abs(ref["logits"]).max() > 1e4
    stats, grads, _, _ = step_and_capture(monkeypatch, eng, data, ROWS)
    assert np.isfinite(stats.loss)
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-3)
    for gw, gb in grads:
        assert np.all(np.isfinite(gw)) and np.all(np.isfinite(gb))
    for layer in eng.layers:
        assert np.all(np.isfinite(layer.weights)) and np.all(np.isfinite(layer.bias))


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modes", [[None, None, None], [("random", 4), None, ("random", 5)]])
def test_predict_matches_dense_topk(modes):
    """Engine.predict scores every neuron (training selection random or not) and returns the
    top-k of the dense forward pass; -1 / -inf pad k beyond the number of labels."""
    data = make_data(12, empty_x=(3,))
    eng = make_engine([8, 6], modes=modes)
    eng.train_step(data, np.array(ROWS, np.int64))
    eng.train_step(data, np.array([13, 6, 8, 10], np.int64))
    rows = np.array([0, 3, 5, 7, 8, 9, 13, 2, 1, 4, 11], np.int64)
    x, _, _ = batch_of(data, rows)
    _, hs = naive.naive_forward(params_of(eng), x)
    for k in (1, 5, L, L + 3):
        ids, scores, active = eng.predict(data, rows, k=k, batch_size=4)
        want_ids, want_scores = naive.naive_topk(hs[-1], k)
        assert ids.dtype == np.int32 and ids.shape == (rows.shape[0], k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(active, [n for _, n in eng.sizes])
    assert np.all(ids[:, L:] == -1) and np.all(scores[:, L:] == -np.inf)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_input_scale_trains_as_on_scaled_inputs(optimizer):
    """An engine with input_scale c on the data as given takes the steps a plain engine takes on
    the data with every value times c: its layer-0 weights are c times the plain ones, every other
    array equal, and so are the scores. (Adam's eps is the one term that does not scale: against
    this tiny batch's smallest gradients 1e-8 is not negligible, so the test sets it to 1e-20.)"""
    data = make_data(4, n_samples=24)
    c = 7.5
    scaled = Dataset(data.x_indptr, data.x_indices, data.x_values * np.float32(c), data.y_indptr, data.y_indices,
                     data.n_features, data.n_labels)
    eng = make_engine([8, 6], optimizer=optimizer, input_scale=c, eps=1e-20)
    plain = make_engine([8, 6], optimizer=optimizer, eps=1e-20)
    for rows in ([0, 4, 9, 13, 20], list(range(6, 18)), [2, 3, 23, 11]):
        eng.train_step(data, np.array(rows, np.int64))
        plain.train_step(scaled, np.array(rows, np.int64))
    np.testing.assert_allclose(eng.layers[0].weights, c * plain.layers[0].weights, rtol=RTOL, atol=ATOL)
    for layer, twin in zip(eng.layers[1:], plain.layers[1:]):
        np.testing.assert_allclose(layer.weights, twin.weights, rtol=RTOL, atol=ATOL)
    for layer, twin in zip(eng.layers, plain.layers):
        np.testing.assert_allclose(layer.bias, twin.bias, rtol=RTOL, atol=ATOL)
    rows = np.arange(data.n_samples, dtype=np.int64)
    ours, twin = eng.predict(data, rows, k=3), plain.predict(scaled, rows, k=3)
    np.testing.assert_array_equal(ours[0], twin[0])
    np.testing.assert_allclose(ours[1], twin[1], rtol=1e-4)
    # the plain engine on the unscaled data is another network: the factor is not a no-op
    unscaled = make_engine([8, 6], optimizer=optimizer, eps=1e-20)
    unscaled.train_step(data, np.array([0, 4, 9, 13, 20], np.int64))
    assert not np.allclose(unscaled.layers[1].weights, plain.layers[1].weights, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("modes", [[None, None], [("random", 5), ("random", 6)]])
def test_serial_training_is_bit_identical(modes):
    data = make_data(13, n_samples=30, n_labels=20)

    def run(seed):
        eng = make_engine([8], modes=modes, n_labels=20, seed=seed)
        order = np.random.default_rng(0)
        losses = [eng.train_step(data, order.choice(30, 12, replace=False).astype(np.int64)).loss for _ in range(5)]
        return eng, losses

    (a, la), (b, lb), (c, _) = run(3), run(3), run(4)
    assert la == lb
    for x, y in zip(a.layers, b.layers):
        for name in ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
    assert not np.array_equal(a.layers[1].weights, c.layers[1].weights)  # the seed matters


@pytest.mark.parametrize("n,size", [(50, 1), (50, 20), (50, 50), (3000, 700)])
def test_negative_pool_matches_naive(n, size):
    """The shared pool is `size` distinct neurons in draw order from the step's own stream, the
    same list naive.naive_negative_pool draws in Python (a permutation of all when size == N)."""
    eng = make_engine([8], modes=[None, ("random", 6)], n_labels=n, seed=3, negatives="batch")
    pool = np.empty(size, np.int32)
    for step in (0, 7):
        engine_mod.draw_negative_pool(np.uint64(3), np.uint64(step), n, pool)
        assert pool.tolist() == naive.naive_negative_pool(3, step, n, size)
        assert len(set(pool.tolist())) == size
    eng.step = 7
    assert eng.negative_pool().tolist() == naive.naive_negative_pool(3, 7, n, eng.negative_pool_size())


def test_negative_pool_size_follows_the_output_selection():
    """A pool only where the output layer trains on uniform negatives and shares them: random mode
    (the whole budget) or lsh with a random share, by choice or ("auto") on a k-means index; its
    size leaves a margin over the budget."""
    def size(mode, budget, negatives="batch", share=0.25, n=400, family="kmeans"):
        lsh = lsh_options(Lsh(family=family, random_share=share)) if mode == "lsh" else None
        sel = [LayerSelection(), LayerSelection(mode=mode, budget=budget, lsh=lsh, negatives=negatives)]
        return Engine(F, [8], n, sel).negative_pool_size()

    assert size("random", 20) == 20 + 2 + 32  # budget + ceil(2 * 20^2 / 400) + 32
    assert size("lsh", 100) == 100 + 50 + 32
    assert size("random", 390) == 400  # never more than N
    assert size("random", 20, negatives="sample") == 0
    assert size("lsh", 100, share=0.0) == 0
    assert size("all", 400) == 0
    assert size("random", 400) == 0  # a budget of N is exact: nothing sampled
    # auto: shared on a k-means index only (Engine.shares_negatives)
    assert size("lsh", 100, negatives="auto") == 182
    assert size("lsh", 100, negatives="auto", family="srp") == 0
    assert size("random", 20, negatives="auto") == 0


def test_shared_negatives_are_uniform_over_the_neurons_not_chosen():
    """A sample's negatives from the shared pool are a uniform sample of the neurons outside its
    set: over many steps every non-label neuron is drawn about equally often and the labels never
    (the sampled-softmax correction relies on it), and each step's draws are the pool's prefix."""
    n, budget, steps = 60, 25, 1500
    data = make_data(1, n_samples=1, n_labels=n, no_labels=(), y_rows={0: [3, 17, 41]})
    sel = [LayerSelection(), LayerSelection(mode="random", budget=budget, negatives="batch")]
    eng = Engine(F, [8], n, sel, seed=2)
    counts = np.zeros(n)
    for _ in range(steps):
        pool = eng.negative_pool()
        eng.train_step(data, np.array([0], np.int64), apply=False)
        ids = eng._get_scratch(True, 1)[1].act_ids[0, :budget]
        assert ids[:3].tolist() == [3, 17, 41]
        assert ids[3:].tolist() == [v for v in pool.tolist() if v not in (3, 17, 41)][:budget - 3]
        counts[ids[3:]] += 1
    assert counts[[3, 17, 41]].sum() == 0
    others = np.delete(counts, [3, 17, 41])
    expected = steps * (budget - 3) / (n - 3)
    # each count is hypergeometric-like with sd < sqrt(expected): 5 sd apart would be a bias
    assert np.abs(others - expected).max() < 5 * np.sqrt(expected)


def test_shared_negatives_touch_fewer_rows_than_per_sample_ones():
    """The point of the pool: a batch whose samples share negatives touches the labels' output
    rows plus the pool's prefix, where per-sample draws touch most of the layer."""
    n, budget, batch = 2000, 60, 64
    data = make_data(4, n_samples=batch, n_labels=n, no_labels=())
    rows = np.arange(batch, dtype=np.int64)
    touched = {}
    for negatives in ("batch", "sample"):
        sel = [LayerSelection(), LayerSelection(mode="random", budget=budget, negatives=negatives, correction=True)]
        eng = Engine(F, [8], n, sel, seed=1, max_labels=3)
        run_train_batch(eng, data, rows, [0, batch], engine_mod.output_records(eng, batch))
        touched[negatives] = set(np.flatnonzero(eng.layers[1].row_touched).tolist())
        if negatives == "batch":
            pool = shared_pool(eng, 0)
    labels = set(data.y_indices.tolist())
    assert touched["batch"] <= labels | set(pool)
    assert len(touched["batch"]) <= len(labels) + budget + 3  # the labels, then the pool's first ~budget
    assert len(touched["sample"]) > 5 * len(touched["batch"])


@pytest.mark.parametrize("negatives", ["sample", "batch"])
def test_random_active_sets_independent_of_thread_chunks(negatives):
    """The same batch split into 1, 3 uneven or B chunks draws the same active sets (the per-sample
    seed uses the batch position), so gradients and touched marks agree; with one sample per chunk
    the scratch of chunk t holds exactly the Python-drawn set of position t."""
    modes = [("random", 5), ("random", 6)]
    data = make_data(14, n_labels=20)
    rows = np.array(ROWS, np.int64)
    splits = [[0, 10], [0, 2, 3, 9, 10], list(range(11))]
    results = []
    for bounds in splits:
        eng = make_engine([8], modes=modes, n_labels=20, seed=5, negatives=negatives)
        eng.step = 3
        scratch, n_active, loss_out = run_train_batch(eng, data, rows, bounds)
        specs = layer_specs(eng, modes)
        _, labels, _ = batch_of(data, rows)
        for t in range(len(bounds) - 1):
            b = bounds[t + 1] - 1  # the chunk's last sample is what its scratch row still holds
            if not labels[b]:
                continue
            want = naive.naive_active_sets(5, 3, b, labels[b], specs, shared_pool(eng, 3))
            for l in range(2):
                assert scratch[l].act_ids[t, :n_active[t, l]].tolist() == want[l]
        results.append((eng, loss_out))
    (first, loss0), *others = results
    for eng, loss in others:
        np.testing.assert_allclose(loss, loss0, rtol=1e-6)
        for x, y in zip(first.layers, eng.layers):
            np.testing.assert_array_equal(x.row_touched, y.row_touched)
            np.testing.assert_array_equal(x.bias_touched, y.bias_touched)
            np.testing.assert_allclose(x.weight_grad, y.weight_grad, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(x.bias_grad, y.bias_grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("modes", [None, [None, ("random", 6)]])
def test_recorded_output_gradient_is_bit_identical_to_accumulated(monkeypatch, modes):
    """On one thread, the records path adds each row's g * hidden in the order backward_layer would
    have accumulated them (batch order), in float32: the weights and moments after several steps
    equal, bit for bit, those of the same engine accumulating the output's weight_grad."""
    data = make_data(6, n_samples=24, n_labels=20)
    batches = [list(range(0, 10)), list(range(8, 18)), [20, 3, 14, 22, 1, 9]]

    def train(record):
        monkeypatch.setattr(Engine, "records_output", lambda self: record)
        eng = make_engine([8], modes=modes, n_labels=20, seed=3, dropout=0.25, weight_decay=0.1)
        eng.output_products = "never"  # the per-sample records; tests/test_union.py holds the products to them
        for rows in batches:
            eng.train_step(data, np.array(rows, np.int64))
        return eng

    a, b = train(True), train(False)
    assert a._records is not None and b._records is None
    for x, y in zip(a.layers, b.layers):
        for name in ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_output_records_independent_of_thread_chunks():
    """The output layer's gradient records are indexed by batch position, so the same batch split
    into 1, 3 uneven or B chunks writes bit-identical records (and layer 0 the same gradient)."""
    from slidepy.network import make_output_records

    modes = [None, ("random", 6)]
    data = make_data(14, n_labels=20)
    rows = np.array(ROWS, np.int64)
    results = []
    for bounds in [[0, 10], [0, 2, 3, 9, 10], list(range(11))]:
        eng = make_engine([8], modes=modes, n_labels=20, seed=5)
        eng.step = 3
        records = make_output_records(12, int(eng.spec[-1, engine_mod.SPEC_CAPACITY]), 8, 20)
        run_train_batch(eng, data, rows, bounds, records)
        assert not eng.layers[1].weight_grad.any()
        labelled = data.y_indptr[rows + 1] > data.y_indptr[rows]  # position 2 (dataset row 1) is not
        assert np.all(records.counts[:10][labelled] > 0) and not records.counts[:10][~labelled].any()
        assert not records.counts[10:].any()  # beyond the batch
        results.append((eng, records))
    (first, rec0), *others = results
    for eng, rec in others:
        for name in ("hidden", "rows", "grads", "counts"):
            np.testing.assert_array_equal(getattr(rec, name), getattr(rec0, name), err_msg=name)
        np.testing.assert_allclose(eng.layers[0].weight_grad, first.layers[0].weight_grad, rtol=1e-6, atol=1e-8)
        np.testing.assert_array_equal(eng.layers[1].row_touched, first.layers[1].row_touched)


def test_chunk_bounds_cover_the_batch():
    indptr = np.array([0, 5, 5, 105, 106, 110, 300, 301], np.int64)
    rows = np.array([6, 0, 2, 1, 5, 3, 4], np.int64)
    for n_chunks in (1, 2, 3, 7):
        bounds = Engine.chunk_bounds(indptr, rows, n_chunks)
        assert bounds.shape == (n_chunks + 1,) and bounds[0] == 0 and bounds[-1] == rows.shape[0]
        assert np.all(np.diff(bounds) >= 0)


@pytest.mark.parametrize("loss,rate,expect", [("bce", 0.01, np.log(0.01 / 0.99)), ("bce", 0.0, 0.0),
                                              ("softmax", 0.01, 0.0)])
def test_output_biases_start_at_the_label_log_odds_for_bce_only(loss, rate, expect):
    eng = make_engine([8], loss=loss, label_rate=rate)
    np.testing.assert_allclose(eng.layers[-1].bias, np.float32(expect))
    assert not eng.layers[0].bias.any()


def test_lsh_layers_are_remade_only_when_an_index_replaces_an_array():
    """Engine.lsh_layers keeps one tuple while the indexes keep their arrays (a typed List built
    every step cost ~0.3 ms an item); an index that replaces an array (SRP's redraw) gets a new
    tuple that holds the new array, and an array changed in place is seen through the kept one."""
    lsh = lsh_options(Lsh(family="srp", k=3, l=4))
    sel = [LayerSelection(), LayerSelection(mode="lsh", budget=6, lsh=lsh)]
    eng = Engine(F, [8], L, sel, lr=0.01)
    first = eng.lsh_layers()
    assert eng.lsh_layers() is first
    index = eng.lsh[1]
    index.counts[0, 0] += 1  # in place: the same tuple, which sees it
    assert eng.lsh_layers() is first and first[1].counts[0, 0] == index.counts[0, 0]
    old_params = index.params
    index.rebuild(eng.layers[1].weights, False, bias=eng.layers[1].bias, redraw=True)
    assert index.params is not old_params
    second = eng.lsh_layers()
    assert second is not first
    np.testing.assert_array_equal(second[1].params.proj_sign, index.params.proj_sign)
    assert eng.lsh_layers() is second


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
@pytest.mark.parametrize("resident", [True, False])
def test_optimizer_arrays_are_resident_from_the_start(monkeypatch, resident):
    """The Adam moments and the gradient rows are written once when the engine is made
    (network.make_resident), so that no training thread faults their pages in row by row; without
    it the process holds almost none of them. 40,000 x 256 rows: 41 MB an array; the two weight
    arrays are written either way, and the four written now are the input layer's gradient and
    moments and the output layer's moments (its gradient rows are records, never written)."""
    if not resident:
        monkeypatch.setattr(engine_mod, "make_resident", lambda *arrays: None)
    sel = [LayerSelection(), LayerSelection(mode="random", budget=64)]
    before = _rss_bytes()
    eng = Engine(40_000, [256], 40_000, sel, lr=0.01)
    grown = _rss_bytes() - before
    array_bytes = 40_000 * 256 * 4
    assert eng.records_output()
    if resident:
        assert grown >= (2 + 4) * array_bytes * 0.9, grown / 2**20
    else:
        assert grown < (2 + 2) * array_bytes, grown / 2**20


def test_the_chunk_worker_table_is_made_once_per_argument_types():
    """Engine steps look the training worker's table up by the driver arguments' type fingerprint
    (kernels.chunk_worker): the same types give the same table, without typing every argument
    again; other types (here strided batch rows) another table, for a worker compiled for them."""
    from numba import typeof

    eng = make_engine([8], modes=[None, ("random", 4)])
    data = make_data(0, 6)
    rows = np.arange(6, dtype=np.int64)
    eng.train_step(data, rows)
    records = engine_mod.output_records(eng, 6) if eng.records_output() else None
    args, _, _ = eng._step_args(data, rows, eng.negative_pool(), records)
    args = (*args, PHASE_FULL, engine_mod._NO_META, engine_mod._NO_HIDDEN_GRADS, engine_mod._NO_SCORES)
    table = chunk_worker(train_chunk, args)
    assert chunk_worker(train_chunk, args) is table
    other = list(args)
    other[10] = np.repeat(rows, 2)[::2]  # the same rows, not contiguous
    other_table = chunk_worker(train_chunk, tuple(other))
    assert other_table[1] != table[1]
    assert typeof(other[10]).layout == "A" and typeof(other[10]) in [sig[10] for sig in train_chunk.signatures]


def test_the_chunk_worker_table_without_a_type_fingerprint(monkeypatch, one_thread):
    """Where numba gives no fingerprint of the arguments' types (a private name it may move), the
    table is made from their full types on every call, and a step runs as before."""
    from slidepy import kernels

    def no_fingerprint(value):
        raise TypeError("no type fingerprint in this numba")

    data = make_data(0, 6)
    rows = np.arange(6, dtype=np.int64)
    plain = make_engine([8], modes=[None, ("random", 4)])
    want = plain.train_step(data, rows)
    monkeypatch.setattr(kernels, "type_fingerprint", no_fingerprint)
    eng = make_engine([8], modes=[None, ("random", 4)])
    stats = eng.train_step(data, rows)
    assert stats.loss == want.loss  # the same step, to the bit
    for a, b in zip(eng.layers, plain.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_rows_outside_the_dataset_are_refused_before_the_kernels_read_them():
    eng = make_engine([8])
    data = make_data(0, 6)
    for rows in ([0, -1], [2, 6], [[0, 1]]):
        with pytest.raises((IndexError, ValueError), match="rows must"):
            eng.train_step(data, np.array(rows, dtype=np.int64))
        with pytest.raises((IndexError, ValueError), match="rows must"):
            eng.predict(data, rows=np.array(rows, dtype=np.int64))
    assert eng.step == 0  # nothing trained


def test_an_engine_needs_a_hidden_layer_and_data_that_fits_it():
    """The output layer's paths read the last hidden vector, and the kernels index weights by id
    without bounds checks: both are refused with a message rather than scored wrongly."""
    with pytest.raises(ValueError, match="at least one layer"):
        make_engine([], modes=[None])
    eng = make_engine([8])
    rows = np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match=f"{F + 1} features, the network {F}"):
        eng.train_step(make_data(0, n_features=F + 1), rows)
    with pytest.raises(ValueError, match=f"{L + 2} labels, the network {L}"):
        eng.train_step(make_data(0, n_labels=L + 2), rows)
    with pytest.raises(ValueError, match="features"):
        eng.predict(make_data(0, n_features=F + 1), rows)
    ids, _, _ = eng.predict(make_data(0, n_labels=L + 2), rows, k=2)  # labels are not read to predict
    assert ids.shape == (4, 2)
