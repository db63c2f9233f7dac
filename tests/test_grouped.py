"""Tests for slidepy/grouped.py: the output layer of a step row by row over the union of the
batch's active sets. Its kernels against NumPy references (tests/naive.py), the whole step against
the per-sample path and the batch products (Engine.output_path), and the engine's choice of path.

One numba thread (conftest.one_thread), as in test_union.py.
"""

import numpy as np
import pytest

import naive
from slidepy import engine as engine_mod
from slidepy import grouped as grouped_mod
from slidepy import union as union_mod
from slidepy.constants import LOSS_CODES, SPEC_CORRECTION
from test_engine import make_data
from test_union import make_engine


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_group_pairs_sorts_each_rows_pairs_in_batch_order():
    rng = np.random.default_rng(0)
    b, a, u = 7, 12, 9
    cols = rng.integers(0, u, (b, a)).astype(np.int32)
    counts = np.array([12, 0, 5, 12, 1, 9, 3], np.int64)
    row_start, cursor = np.full(u + 1, -7, np.int64), np.full(u, -7, np.int64)
    pair_b, pair_a = np.full(b * a, -1, np.int32), np.full(b * a, -1, np.int32)
    assert grouped_mod.group_pairs(cols, counts, np.int64(u), row_start, cursor, pair_b, pair_a) == counts.sum()
    for c in range(u):
        want = [(s, j) for s in range(b) for j in range(counts[s]) if cols[s, j] == c]
        got = list(zip(pair_b[row_start[c]:row_start[c + 1]].tolist(), pair_a[row_start[c]:row_start[c + 1]].tolist()))
        assert got == want, c
    assert row_start[0] == 0 and row_start[u] == counts.sum()


def test_drop_zero_pairs_keeps_the_non_zero_records_and_their_rows():
    union = np.array([11, 4, 7, 30], np.int32)
    row_start = np.array([0, 3, 5, 5, 8], np.int64)  # row 7 has no pairs at all
    pair_b = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.int32)
    pair_g = np.array([0.5, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, 3.0], np.float32)  # row 4: zeros only
    rows = np.full(4, -1, np.int64)
    r = grouped_mod.drop_zero_pairs(union, row_start, pair_b, pair_g, rows)
    assert r == 2 and rows[:r].tolist() == [11, 30]
    assert row_start[:r + 1].tolist() == [0, 2, 4]
    assert pair_b[:4].tolist() == [0, 2, 5, 7] and pair_g[:4].tolist() == [0.5, -1.0, 2.0, 3.0]


def test_chunk_bounds_split_rows_by_pairs():
    row_start = np.array([0, 40, 41, 42, 43, 44], np.int64)  # one heavy row, four light ones
    bounds = grouped_mod.chunk_bounds(row_start, 5, 2)
    assert bounds.tolist() == [0, 1, 5]
    assert grouped_mod.chunk_bounds(row_start, 5, 1).tolist() == [0, 5]


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("correction", [False, True])
def test_grouped_output_step_matches_the_per_sample_reference(loss, correction):
    """Losses, d hidden, the records' weight and bias gradients and the touched marks of
    grouped_output_step against naive_union_output, on sets that overlap (rows shared by up to
    six samples, so the four-at-a-time loops and their remainders both run), an empty sample, an
    unlabelled one (its stale gradients and non-finite hidden row must not reach anything) and
    samples with uniform draws."""
    rng = np.random.default_rng(1)
    n, d, b, a, width = 40, 6, 7, 9, 2
    layer = engine_mod.init_params([(3, d), (d, n)], seed=2)[1]
    layer.bias[:] = rng.normal(0, 0.3, n).astype(np.float32)
    hidden = np.maximum(rng.normal(0, 1, (b, d)), 0).astype(np.float32)
    hidden[6] = np.nan  # sample 6 is unlabelled: a row no record may read
    ids = np.zeros((b, a), np.int32)
    counts = np.array([9, 4, 0, 9, 7, 9, 5], np.int64)
    meta = np.zeros((b, 2 + width), np.int32)
    for s in range(b):
        ids[s, :counts[s]] = rng.choice(n // 2 if s % 2 else n, counts[s], replace=False)
        n_labels = 0 if counts[s] == 0 or s == 6 else 1 + s % 2
        meta[s, :2] = (counts[s] - 3 if counts[s] > 5 else counts[s], n_labels)
        meta[s, 2:2 + n_labels] = np.arange(n_labels)
    spec = np.zeros((2, 11), np.int64)
    spec[1, 1] = n
    spec[1, SPEC_CORRECTION] = int(correction)
    buffers = union_mod.make_union_buffers(b, a, width, n)
    buffers.grads[:] = 5.0  # what an earlier step left: the unlabelled sample's must not be read
    loss_out = np.full(b, 9.0)
    step = grouped_mod.grouped_output_step(layer, spec, hidden, ids, counts, meta, LOSS_CODES[loss], 1.0 / b,
                                           buffers, loss_out)
    want_loss, want_dh, want_dw, want_db = naive.naive_union_output(
        layer.weights, layer.bias, np.nan_to_num(hidden), ids, counts, meta, n, loss, correction, 1.0 / b)
    np.testing.assert_allclose(loss_out, want_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(step.hidden_grads, want_dh, rtol=1e-5, atol=1e-7)
    got_dw, got_db = np.zeros((n, d)), np.zeros(n)
    for r, row in enumerate(step.rows):
        pairs = slice(step.row_start[r], step.row_start[r + 1])
        assert (step.pair_g[pairs] != 0).all()
        assert step.pair_b[pairs].tolist() == sorted(step.pair_b[pairs].tolist())  # batch order
        got_dw[row] = step.pair_g[pairs] @ hidden[step.pair_b[pairs]]
        got_db[row] = step.pair_g[pairs].sum()
    np.testing.assert_allclose(got_dw, want_dw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_db, want_db, rtol=1e-5, atol=1e-7)
    labelled = [s for s in range(b) if meta[s, 1] > 0]
    active = np.unique(np.concatenate([ids[s, :counts[s]] for s in labelled]))
    assert sorted(step.rows.tolist()) == active.tolist()  # the unlabelled sample's own rows are not
    assert np.flatnonzero(layer.row_touched).tolist() == active.tolist()
    assert np.flatnonzero(layer.bias_touched).tolist() == active.tolist()
    assert step.union_rows == np.unique(np.concatenate([ids[s, :counts[s]] for s in range(b)])).shape[0]
    assert not layer.weight_grad.any() and not layer.bias_grad.any()


@pytest.mark.parametrize("output", [("all",), ("random", 7), ("lsh", 8, "kmeans"), ("lsh", 8, "srp")])
@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_grouped_trains_as_the_per_sample_path(output, loss):
    """Three steps (and the index rebuilds between them) row by row and per sample give the same
    losses, weights and Adam moments to float32 rounding: the same active sets and the same
    arithmetic, d hidden's and the logits' sums in another order."""
    data = make_data(6, n_samples=24, n_labels=24)
    batches = [list(range(0, 10)), list(range(8, 18)), [20, 3, 14, 22, 1, 9]]
    runs = []
    for path in ("per-sample", "grouped"):
        eng = make_engine([8], output, loss=loss)
        eng.output_path = path
        losses = []
        for rows in batches:
            losses.append(eng.train_step(data, np.array(rows, np.int64)).loss)
            eng.maybe_rebuild()
        runs.append((eng, losses))
    (per_sample, loss_a), (grouped, loss_b) = runs
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
    for x, y in zip(per_sample.layers, grouped.layers):
        for name in ("weights", "bias", "weight_m", "weight_v", "bias_m", "bias_v"):
            np.testing.assert_allclose(getattr(y, name), getattr(x, name), rtol=1e-4, atol=1e-6, err_msg=name)
        assert not y.row_touched.any() and not y.bias_touched.any()  # the optimizer cleared its marks
    assert grouped._union is not None and per_sample._union is None


def test_the_engine_takes_the_grouped_path_where_rows_are_shared_but_sparse(monkeypatch):
    """"auto" after a step of density below UNION_MIN_DENSITY: row by row when a row of the union is
    shared by GROUPED_MIN_SHARING samples on average (density x batch), per sample below that."""
    taken = []
    for name in ("union_output_step", "grouped_output_step"):
        real = getattr(engine_mod, name)
        monkeypatch.setattr(engine_mod, name, lambda *a, _real=real, _name=name: taken.append(_name) or _real(*a))
    data = make_data(7, n_samples=64, n_labels=3000, max_labels=1)
    rows = np.arange(64, dtype=np.int64)
    eng = make_engine([8], ("random", 4), n_labels=3000)
    sharing = grouped_mod.GROUPED_MIN_SHARING
    eng.output_density = 1.5 * sharing / rows.shape[0]  # below UNION_MIN_DENSITY, rows shared by 1.5x the floor
    assert eng.output_density < union_mod.UNION_MIN_DENSITY
    eng.train_step(data, rows)
    assert taken == ["grouped_output_step"]
    # 64 samples x 5 active of 3,000 rows share almost none: the next step goes per sample
    assert eng.output_density * rows.shape[0] < sharing
    eng.train_step(data, rows)
    assert taken == ["grouped_output_step"]
    eng.output_density = 0.5
    eng.train_step(data, rows)
    assert taken == ["grouped_output_step", "union_output_step"]
