"""Tests for slidepy/union.py: the output layer of a step as dense products over the union of
the batch's active sets. Its kernels against NumPy references (tests/naive.py), and the whole
step against the per-sample path it replaces (Engine.output_products "always" vs "never"): the
same active sets, so the same weights up to the order of float additions. Also the per-sample
path's centroid scores from one product (Engine._centroid_scores).

One numba thread (conftest.one_thread), as in test_engine.py: exact comparisons of Hogwild sums on
tiny layers would be flaky with more.
"""

import numpy as np
import pytest

import naive
from slidepy import engine as engine_mod
from slidepy import optimizer as optimizer_mod
from slidepy import union as union_mod
from slidepy.clusters import probe_clusters
from slidepy.config import Lsh
from slidepy.constants import LOSS_CODES, SPEC_CORRECTION
from slidepy.engine import Engine, LayerSelection
from slidepy.model import lsh_options
from test_engine import make_data


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_union_columns_numbers_the_distinct_ids_in_first_seen_order():
    rng = np.random.default_rng(0)
    n, b, a = 50, 7, 12
    ids = rng.integers(0, n, (b, a)).astype(np.int32)
    counts = np.array([12, 0, 5, 12, 1, 9, 3], np.int64)  # an empty sample and partly used rows
    buffers = union_mod.make_union_buffers(b, a, 1, n)
    u = union_mod.union_columns(ids, counts, buffers.slot, buffers.union, buffers.cols)
    seen = list(dict.fromkeys(int(ids[s, j]) for s in range(b) for j in range(counts[s])))
    assert buffers.union[:u].tolist() == seen
    for s in range(b):
        for j in range(counts[s]):
            assert buffers.union[buffers.cols[s, j]] == ids[s, j]
    assert (buffers.slot == -1).all()  # left clean for the next step


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("correction", [False, True])
def test_union_output_step_matches_the_per_sample_reference(loss, correction):
    """Losses, d hidden, the gathered weight gradient, the bias gradient and the touched marks of
    union_output_step against naive_union_output, on sets that overlap, one empty sample and
    samples with uniform draws."""
    rng = np.random.default_rng(1)
    n, d, b, a, width = 40, 6, 6, 9, 2
    layer = engine_mod.init_params([(3, d), (d, n)], seed=2)[1]
    layer.bias[:] = rng.normal(0, 0.3, n).astype(np.float32)
    hidden = np.maximum(rng.normal(0, 1, (b, d)), 0).astype(np.float32)
    ids = np.zeros((b, a), np.int32)
    counts = np.array([9, 4, 0, 9, 7, 9], np.int64)
    meta = np.zeros((b, 2 + width), np.int32)
    for s in range(b):
        ids[s, :counts[s]] = rng.choice(n // 2 if s % 2 else n, counts[s], replace=False)  # overlapping sets
        n_labels = 0 if counts[s] == 0 else 1 + s % 2
        meta[s, :2] = (counts[s] - 3 if counts[s] > 5 else counts[s], n_labels)  # uniform draws at the tail
        meta[s, 2:2 + n_labels] = np.arange(n_labels)
    spec = np.zeros((2, 11), np.int64)
    spec[1, 1] = n
    spec[1, SPEC_CORRECTION] = int(correction)
    buffers = union_mod.make_union_buffers(b, a, width, n)
    loss_out = np.zeros(b)
    step = union_mod.union_output_step(layer, spec, hidden, ids, counts, meta, LOSS_CODES[loss], 1.0 / b, buffers,
                                       loss_out)
    want_loss, want_dh, want_dw, want_db = naive.naive_union_output(
        layer.weights, layer.bias, hidden, ids, counts, meta, n, loss, correction, 1.0 / b)
    np.testing.assert_allclose(loss_out, want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(step.hidden_grads, want_dh, rtol=1e-5, atol=1e-7)
    got_dw = np.zeros((n, d))
    got_dw[step.rows] = step.weight_grads
    np.testing.assert_allclose(got_dw, want_dw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer.bias_grad, want_db, rtol=1e-5, atol=1e-7)
    active = np.unique(np.concatenate([ids[s, :counts[s]] for s in range(b)]))
    assert sorted(step.rows.tolist()) == active.tolist()
    assert np.flatnonzero(layer.row_touched).tolist() == active.tolist()
    assert np.flatnonzero(layer.bias_touched).tolist() == active.tolist()
    assert step.union_rows == active.shape[0]
    assert not layer.weight_grad.any()  # the output's gradient never goes through weight_grad


def test_adam_update_gathered_equals_adam_update_rows():
    """The same Adam arithmetic whether a row's gradient sits in the (N, D) gradient array or in
    its own gathered row: bit-identical weights and moments, marks cleared."""
    rng = np.random.default_rng(3)
    n, d = 30, 5
    rows = np.array([4, 17, 0, 29], np.int64)
    grads = rng.normal(0, 1, (rows.shape[0], d)).astype(np.float32)
    results = []
    for gathered in (False, True):
        p = np.random.default_rng(4).normal(0, 1, (n, d)).astype(np.float32)
        m, v = np.full((n, d), 0.1, np.float32), np.full((n, d), 0.2, np.float32)
        touched = np.zeros(n, np.uint8)
        touched[rows] = 1
        args = (np.float32(0.01), np.float32(0.9), np.float32(0.999), np.float32(1e-8), np.float32(0.001))
        if gathered:
            optimizer_mod.adam_update_gathered(p, m, v, touched, rows, grads, *args)
        else:
            full = np.zeros((n, d), np.float32)
            full[rows] = grads
            optimizer_mod.adam_update_rows(p, full, m, v, touched, rows, *args)
        assert not touched.any()
        results.append((p, m, v))
    for x, y in zip(*results):
        np.testing.assert_array_equal(x, y)


def make_engine(hidden, output, *, n_labels=24, loss="softmax", dropout=0.25, **kw):
    """An engine over 40 features with dense hidden layers; output: ("all",) / ("random", budget) /
    ("lsh", budget, family)."""
    lsh = lsh_options(Lsh(family=output[2], random_share=0.25)) if output[0] == "lsh" else None
    out = LayerSelection() if output[0] == "all" else LayerSelection(
        mode=output[0], budget=output[1], lsh=lsh, correction=output[0] != "all")
    sel = [LayerSelection() for _ in hidden] + [out]
    return Engine(40, list(hidden), n_labels, sel, lr=0.01, seed=3, dropout=dropout, loss=loss, weight_decay=0.05,
                  **kw)


@pytest.mark.parametrize("output", [("all",), ("random", 7), ("lsh", 8, "kmeans"), ("lsh", 8, "srp")])
@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("hidden", [[8], [8, 6]])
def test_products_train_as_the_per_sample_path(output, loss, hidden):
    """Three steps (and the index rebuilds between them) through the batch products and through
    the per-sample kernels give the same losses, weights and Adam moments to float32 rounding: the
    same active sets (same RNG draws, and on the cluster index the same centroid scores up to
    rounding) and the same arithmetic in another order."""
    data = make_data(6, n_samples=24, n_labels=24)
    batches = [list(range(0, 10)), list(range(8, 18)), [20, 3, 14, 22, 1, 9]]
    runs = []
    for products in ("never", "always"):
        eng = make_engine(hidden, output, loss=loss)
        eng.output_products = products
        losses = []
        for rows in batches:
            losses.append(eng.train_step(data, np.array(rows, np.int64)).loss)
            eng.maybe_rebuild()
        runs.append((eng, losses))
    (per_sample, loss_a), (products, loss_b) = runs
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
    for x, y in zip(per_sample.layers, products.layers):
        for name in ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v"):
            np.testing.assert_allclose(getattr(y, name), getattr(x, name), rtol=1e-4, atol=1e-6, err_msg=name)
    assert products._union is not None and per_sample._union is None


def _score_each_row(centroids_t, hidden, out):
    """out[b] = what a query with the dense input hidden[b] scores by itself: clusters.probe_clusters
    with no room to take a cluster (cap 0) returns right after scoring, its scores untouched."""
    n_c = centroids_t.shape[1]
    ids = np.arange(hidden.shape[1], dtype=np.int32)
    indptr, members = np.zeros(n_c + 1, np.int64), np.zeros(1, np.int32)
    order, stamp, taken = np.zeros(64, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int32)
    for b in range(hidden.shape[0]):
        probe_clusters(centroids_t, indptr, members, ids, hidden[b], hidden.shape[1], out[b], order, stamp, 1, taken,
                       0, 0)


def test_the_whole_sample_path_reads_the_products_centroid_scores(monkeypatch):
    """On a cluster index the per-sample path takes its centroid scores from one product over the
    batch's last hidden vectors (Engine._centroid_scores). Given the very scores each query would
    compute itself (the same float32 sums in the same order),
    three steps train bit for bit as when every query scores alone."""
    calls = []

    def scores_as_each_query_would(centroids_t, hidden):
        calls.append(hidden.shape[0])
        out = np.empty((hidden.shape[0], centroids_t.shape[1]), np.float32)
        _score_each_row(centroids_t, hidden, out)
        return out

    monkeypatch.setattr(engine_mod, "score_centroids_batch", scores_as_each_query_would)
    data = make_data(6, n_samples=24, n_labels=24)
    batches = [list(range(0, 10)), list(range(8, 18)), [20, 3, 14, 22, 1, 9]]

    def steps(eng):
        losses = []
        for rows in batches:
            losses.append(eng.train_step(data, np.array(rows, np.int64)).loss)
            eng.maybe_rebuild()
        return losses

    runs = []
    for product in (False, True):
        eng = make_engine([8], ("lsh", 8, "kmeans"))
        eng.output_products = "never"
        if not product:
            eng._centroid_scores = lambda *args: None  # each query scores its centroids itself
        runs.append((eng, steps(eng)))
    (alone, loss_a), (product, loss_b) = runs
    assert calls == [len(rows) for rows in batches]
    np.testing.assert_array_equal(loss_b, loss_a)
    for x, y in zip(alone.layers, product.layers):
        for name in ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v"):
            np.testing.assert_array_equal(getattr(y, name), getattr(x, name), err_msg=name)
    # the queries do read them: reversed scores pick other clusters, so other active sets
    monkeypatch.setattr(engine_mod, "score_centroids_batch", lambda c, h: -scores_as_each_query_would(c, h))
    eng = make_engine([8], ("lsh", 8, "kmeans"))
    eng.output_products = "never"
    assert not np.allclose(steps(eng), loss_a, rtol=1e-3)
    # and with the real product, the same steps to float32 rounding of the scores
    monkeypatch.undo()
    eng = make_engine([8], ("lsh", 8, "kmeans"))
    eng.output_products = "never"
    np.testing.assert_allclose(steps(eng), loss_a, rtol=1e-5)


def test_the_engine_takes_the_products_only_where_the_sets_overlap(monkeypatch):
    """"auto": the first step tries the products; a step whose (sample, neuron) pairs fill less than
    UNION_MIN_DENSITY of the batch x union cells sends the next one down the per-sample path, and a
    dense output layer (every neuron in every set, density 1) stays on the products."""
    calls = []
    real = engine_mod.union_output_step

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(engine_mod, "union_output_step", spy)
    sparse_data = make_data(7, n_samples=64, n_labels=3000, max_labels=1)
    rows = np.arange(64, dtype=np.int64)
    eng = make_engine([8], ("random", 4), n_labels=3000)  # 64 samples x 4 of 3,000: little overlap
    eng.train_step(sparse_data, rows)
    assert calls == [1] and eng.output_density < union_mod.UNION_MIN_DENSITY
    eng.train_step(sparse_data, rows)
    assert calls == [1]  # per-sample now
    assert eng.output_density < union_mod.UNION_MIN_DENSITY  # still measured on that path

    dense = make_engine([8], ("all",), n_labels=24)
    data = make_data(8, n_samples=24, n_labels=24)
    for _ in range(2):
        dense.train_step(data, np.arange(10, dtype=np.int64))
    assert calls == [1, 1, 1] and dense.output_density == pytest.approx(1.0)


def test_an_unlabelled_sample_leaves_no_stale_hidden_row_in_the_products():
    """G^T H reads every sample's hidden row, an unlabelled sample's against a zero row of G: its
    row is cleared, so a non-finite vector left by an earlier step cannot spread over the union."""
    data = make_data(6, n_samples=24, n_labels=24, no_labels=(3,))
    eng = make_engine([8], ("random", 7))
    eng.output_products = "always"
    rows = np.arange(10, dtype=np.int64)
    eng.train_step(data, rows)
    eng._records.hidden[3] = np.nan  # what a rolled-back NaN step would have left there
    eng.train_step(data, rows)
    assert not eng._records.hidden[3].any()
    for layer in eng.layers:
        assert np.isfinite(layer.weights).all() and np.isfinite(layer.bias).all()


def test_a_resumed_engine_takes_the_output_path_the_uninterrupted_one_would():
    """The last step's density picks the next step's path (products or per sample), and the two
    add floats in different orders: it travels with the checkpoint's meta, so a resumed engine
    steps bit-identically. 0.1 stands for a late DebianDeps step, below UNION_MIN_DENSITY, where
    a fresh engine would try the products first."""
    data = make_data(6, n_samples=24, n_labels=24)
    rows = np.arange(12, dtype=np.int64)
    straight = make_engine([8], ("random", 7))
    straight.train_step(data, rows)
    straight.output_density = 0.1
    resumed = make_engine([8], ("random", 7))
    engine_mod.load_state(resumed, {k: v.copy() for k, v in engine_mod.state_arrays(straight).items()},
                          engine_mod.state_meta(straight))
    assert resumed.output_density == 0.1 and not resumed._takes_union(rows.shape[0])
    for eng in (straight, resumed):
        eng.train_step(data, rows[::-1].copy())
    for a, b in zip(straight.layers, resumed.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.bias, b.bias)
    meta = engine_mod.state_meta(straight)
    del meta["output_density"]  # a checkpoint written before it was kept
    engine_mod.load_state(resumed, engine_mod.state_arrays(straight), meta)
    assert resumed.output_density is None
