"""slidepy/reranker.py: the leaves' training pairs, their SVM solution, their scores and the
re-ranking against NumPy/SciPy references; then the leaves in a run, a model file and `evaluate`."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import interrupt_at_step
from naive import (
    naive_choose_blend,
    naive_l2svm,
    naive_leaf_pairs,
    naive_precision_at_k,
    naive_rerank,
    naive_unit_rows_with_bias,
)

from slidepy import Trainer, load_config, reranker
from slidepy.cli import main
from slidepy.data import Dataset, write_dataset
from slidepy.errors import ConfigError
from slidepy.model import Model
from slidepy.reranker import (
    SHARES,
    WEIGHT,
    choose_blend,
    fit_leaves,
    random_negatives,
    random_negatives_per_label,
    rerank,
    sample_precision,
    score_leaves,
    training_pairs,
    validation_rows,
)
from slidepy.rng import generator
from slidepy.trainer import Schedule


def random_set(rng, n, n_features, n_labels, density=0.3, zero_rows=()):
    dense = (rng.random((n, n_features)) * (rng.random((n, n_features)) < density)).astype(np.float32)
    dense[list(zero_rows)] = 0.0
    rows, cols = np.nonzero(dense)
    x_indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))]).astype(np.int64)
    labels = [rng.choice(n_labels, rng.integers(1, 3), replace=False) for _ in range(n)]
    y_indptr = np.concatenate([[0], np.cumsum([len(ls) for ls in labels])]).astype(np.int64)
    y_indices = np.concatenate(labels).astype(np.int32)
    data = Dataset(x_indptr, cols.astype(np.int32), dense[rows, cols], y_indptr, y_indices, n_features, n_labels)
    return data, dense


def random_shortlists(rng, n, n_labels, k):
    short = np.stack([rng.choice(n_labels, k, replace=False) for _ in range(n)]).astype(np.int32)
    short[0, -2:] = -1  # padding, as when a layer has fewer labels than k
    return short


def test_training_pairs_match_the_reference():
    rng = np.random.default_rng(0)
    data, _ = random_set(rng, 30, 12, 9)
    short = random_shortlists(rng, 30, 9, 4)
    indptr, rows, positive = training_pairs(short, data.y_indptr, data.y_indices, 9)
    for label, (want_rows, want_pos) in naive_leaf_pairs(short, data.y_indptr, data.y_indices, 9).items():
        assert rows[indptr[label]:indptr[label + 1]].tolist() == want_rows
        assert positive[indptr[label]:indptr[label + 1]].tolist() == want_pos


def test_training_pairs_of_pads_alone_are_the_positives_and_labels_past_them_are_empty():
    rng = np.random.default_rng(2)
    data, _ = random_set(rng, 30, 12, 9)
    indptr, rows, positive = training_pairs(np.full((30, 4), -1, np.int32), data.y_indptr, data.y_indices, 12)
    assert positive.all() and indptr[9] == indptr[12] == data.y_indices.shape[0]
    for label in range(9):
        want = [i for i in range(30) if label in data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]]]
        assert rows[indptr[label]:indptr[label + 1]].tolist() == want


def test_training_pairs_with_random_negatives_match_the_reference():
    """Random (label, sample) draws join the pairs as negatives; a draw of one of the label's own
    samples is that positive, once."""
    rng = np.random.default_rng(3)
    data, _ = random_set(rng, 30, 12, 9)
    short = random_shortlists(rng, 30, 9, 2)
    negatives = random_negatives(9, np.arange(5, 30), 6, np.random.default_rng(4))
    assert np.all(np.bincount(negatives[0], minlength=9) == 6) and negatives[1].min() >= 5
    indptr, rows, positive = training_pairs(short, data.y_indptr, data.y_indices, 9, negatives)
    for label, (want_rows, want_pos) in naive_leaf_pairs(short, data.y_indptr, data.y_indices, 9, negatives).items():
        assert rows[indptr[label]:indptr[label + 1]].tolist() == want_rows
        assert positive[indptr[label]:indptr[label + 1]].tolist() == want_pos
    bare = training_pairs(short, data.y_indptr, data.y_indices, 9)
    assert rows.shape[0] > bare[1].shape[0]


def test_shortlists_of_some_rows_are_those_rows_padded():
    """Shortlists given for some samples (rows=) train the leaves as the full (B, K) array with
    the other samples' rows all pads: those samples give their positives alone."""
    rng = np.random.default_rng(5)
    data, _ = random_set(rng, 40, 12, 9)
    short = random_shortlists(rng, 40, 9, 3)
    rows = np.array([2, 3, 17, 39], np.int64)
    padded = np.full_like(short, -1)
    padded[rows] = short[rows]
    want = training_pairs(padded, data.y_indptr, data.y_indices, 9)
    got = training_pairs(short[rows], data.y_indptr, data.y_indices, 9, rows=rows)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    some, full = fit_leaves(data, short[rows], step=0, rows=rows), fit_leaves(data, padded, step=0)
    for a, b in zip(some[:3], full[:3]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="R=4"):
        fit_leaves(data, short, step=0, rows=rows)
    with pytest.raises(ValueError, match="samples of the 40"):
        fit_leaves(data, short[:1], step=0, rows=np.array([40]))


def test_random_negatives_per_label_keep_to_their_caps():
    assert random_negatives_per_label(1000, 10**6) == reranker.RANDOM_NEGATIVES
    assert random_negatives_per_label(10**6, 10**6) == reranker.RANDOM_PAIRS // 10**6
    assert random_negatives_per_label(1000, 40) == 40
    # labels with many positives get NEGATIVES_PER_POSITIVE times their mean, under the same caps
    assert random_negatives_per_label(1000, 10**6, 38 * 1000) == 38 * reranker.NEGATIVES_PER_POSITIVE
    assert random_negatives_per_label(1000, 10**6, 4 * 1000) == reranker.RANDOM_NEGATIVES
    assert random_negatives_per_label(30_000, 10**6, 38 * 30_000) == reranker.RANDOM_PAIRS // 30_000
    # ... and at most RANDOM_SHARE of the samples, but never under RANDOM_NEGATIVES: Delicious'
    # shape (983 labels, 250 positives a label, 12,920 samples) draws 807, not 4,006
    assert random_negatives_per_label(983, 12_920, 250 * 983) == int(12_920 * reranker.RANDOM_SHARE) == 807
    assert random_negatives_per_label(1000, 300, 38 * 1000) == reranker.RANDOM_NEGATIVES
    assert random_negatives_per_label(20_000, 50_000, 38 * 20_000) == 38 * reranker.NEGATIVES_PER_POSITIVE  # under it


def rows_set(n, rng, n_features=400, nnz=2):
    """n samples of nnz features each (ids and values from few choices, so many rows recur)."""
    ids = np.sort(np.stack([rng.choice(n_features, nnz, replace=False) for _ in range(n)]), axis=1)
    values = rng.choice(np.array([0.5, 1.0], np.float32), (n, nnz))
    indptr = np.arange(0, n * nnz + 1, nnz, dtype=np.int64)
    return Dataset(indptr, ids.ravel().astype(np.int32), values.ravel(), np.arange(n + 1, dtype=np.int64),
                   np.zeros(n, np.int32), n_features, 1)


def test_single_rows_match_the_reference():
    rng = np.random.default_rng(2)
    data = rows_set(3000, rng, n_features=40)
    rows = [tuple(zip(data.x_indices[data.x_indptr[i]:data.x_indptr[i + 1]].tolist(),
                      data.x_values[data.x_indptr[i]:data.x_indptr[i + 1]].tolist())) for i in range(3000)]
    counts = {r: rows.count(r) for r in set(rows)}
    want = np.array([counts[r] == 1 for r in rows])
    assert 0 < want.sum() < 3000
    np.testing.assert_array_equal(reranker.single_rows(data), want)
    # the same row with its pairs in another order is the same row
    swapped = Dataset(data.x_indptr, data.x_indices.reshape(-1, 2)[:, ::-1].ravel().copy(),
                      data.x_values.reshape(-1, 2)[:, ::-1].ravel().copy(), data.y_indptr, data.y_indices, 40, 1)
    np.testing.assert_array_equal(reranker.single_rows(swapped), want)
    # empty rows are one row, the same for all of them
    gaps = Dataset(np.array([0, 0, 1, 1, 3]), np.array([4, 1, 2], np.int32), np.ones(3, np.float32),
                   np.arange(5, dtype=np.int64), np.zeros(4, np.int32), 5, 1)
    np.testing.assert_array_equal(reranker.single_rows(gaps), [False, True, False, True])


def test_the_validation_slice_is_the_seeds_of_single_rows_and_only_where_it_can_be_spared():
    rng = np.random.default_rng(0)
    # 2.5%, within [MIN_VALIDATION, VALIDATION_SAMPLES], where that is at most MAX_VALIDATION_SHARE
    sizes = {n: reranker.validation_size(n) for n in (4_880, 10_239, 10_240, 30_000, 60_000, 100_000)}
    assert sizes == {4_880: 0, 10_239: 0, 10_240: 512, 30_000: 750, 60_000: 1500, 100_000: 2048}
    small = int(reranker.MIN_VALIDATION / reranker.MAX_VALIDATION_SHARE)  # the fewest samples that spare a slice
    assert validation_rows(rows_set(small - 1, rng), 0) is None
    assert validation_rows(rows_set(small, rng), 0).shape == (reranker.MIN_VALIDATION,)  # more than 2.5%
    data = rows_set(100_000, rng)
    rows = validation_rows(data, 3)
    assert rows.shape == (reranker.VALIDATION_SAMPLES,) and np.all(np.diff(rows) > 0) and rows[-1] < 100_000
    assert reranker.single_rows(data)[rows].all()  # no copy of a held-out row is left to train on
    np.testing.assert_array_equal(rows, validation_rows(data, 3))
    assert not np.array_equal(rows, validation_rows(data, 4))
    assert validation_rows(rows_set(60_000, rng), 0).shape == (1500,)  # 2.5% of it
    repeated = rows_set(60_000, rng, n_features=30)  # 435 x 4 distinct rows: none occurs once
    assert validation_rows(repeated, 0) is None


def test_a_schedule_never_trains_on_the_held_out_rows():
    t = load_config({"training": {"batch_size": 7, "seed": 5}}).training
    held = np.array([0, 3, 4, 40, 99])
    schedule = Schedule(t, 100, held)
    assert schedule.n_train == 95 and schedule.batches_per_epoch == 14
    for epoch in range(2):
        seen = np.concatenate([schedule.batch_rows(epoch, b) for b in range(schedule.batches_per_epoch)])
        np.testing.assert_array_equal(np.sort(seen), np.setdiff1d(np.arange(100), held))
    # nothing held out: every row, in the seed's own order
    np.testing.assert_array_equal(Schedule(t, 100).epoch_order(1), generator(5, 1).permutation(100))


@pytest.mark.parametrize("seed,lean,other,deep,depths", [
    (0, 0.0, 0.0, 0, (4, 8)), (1, 0.0, 0.0, 0, (4, 8)), (2, 0.0, 0.0, 0, (4, 8)), (3, 1.5, 0.0, 0, (4, 8)),
    (4, 3.0, 0.0, 0, (4, 8)), (5, 3.0, 0.0, 3.0, (4, 8)), (6, 0.0, 0.0, 0, (2, 4)), (7, 3.0, 0.0, 0, (2, 4)),
    (8, 0.0, 3.0, 0, (4, 8)), (9, 1.5, 3.0, 3.0, (4, 8))])
def test_the_chosen_blend_matches_the_reference(seed, lean, other, deep, depths):
    """`lean` shifts the leaves' scores at C = 1 towards the true labels, `other` those at C = 2,
    so that larger shares (and the C whose leaves lean more) win by more than noise: the evidence
    rule then moves off the default, as the reference does. `deep` puts the true labels past the
    network's top 4 (where only a deeper re-ranking finds them). Depths under 5 are scored as
    predictions rank: the network's order below the re-ranked ones."""
    rng = np.random.default_rng(seed)
    n, n_labels = 200, 12
    data, _ = random_set(rng, n, 5, n_labels)
    ids = random_shortlists(rng, n, n_labels, 8)
    true = np.array([[label in data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]] for label in ids[i]]
                     for i in range(n)])
    if deep:  # each sample's true labels to the back of its ranking
        order = np.argsort(true, axis=1, kind="stable")
        ids, true = np.take_along_axis(ids, order, 1), np.take_along_axis(true, order, 1)
    log_scores = np.sort(rng.normal(size=ids.shape), axis=1)[:, ::-1].astype(np.float32)
    leaf = {cost: (rng.normal(size=ids.shape) + shift * true).astype(np.float32)
            for cost, shift in ((1.0, lean), (2.0, other))}
    chosen, table = choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths)
    assert set(table) == {(cost, share, depth) for cost in (1.0, 2.0) for share in SHARES for depth in depths}
    # at share 0 every depth, and every C, ranks as the network does: a depth under 5 is no handicap
    assert table[(1.0, 0.0, depths[0])] == table[(1.0, 0.0, depths[1])] == table[(2.0, 0.0, depths[1])]
    assert chosen == naive_choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths, SHARES, WEIGHT,
                                        reranker.EVIDENCE)
    if max(lean, other) == 3.0:  # leaves that know the answer: a large share wins, clearly, the best at its C
        assert chosen[1] >= 0.5 and table[chosen] == max(v for t, v in table.items() if t[0] == chosen[0])
    if other > lean == 0.0:  # and where only those at C = 2 know it, at that C
        assert chosen[0] == 2.0
    if deep:  # and they find it only past the top 4
        assert chosen[2] == depths[1]


@pytest.mark.parametrize("shifts,want", [((0.0, 1.5, 3.0), 16.0), ((0.0, 3.0, 0.0), 4.0), ((0.0, 0.0, 3.0), 16.0),
                                          ((3.0, 0.0, 0.0), 1.0)])
def test_the_blend_climbs_cost_by_cost(shifts, want):
    """Leaves at three Cs whose scores lean `shifts` towards the true labels: each C's best is
    taken where it beats the choice so far by EVIDENCE, cost by cost, as the reference does."""
    rng = np.random.default_rng(12)
    n, n_labels, depths = 300, 12, (4, 8)
    data, _ = random_set(rng, n, 5, n_labels)
    ids = random_shortlists(rng, n, n_labels, 8)
    true = np.array([[label in data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]] for label in ids[i]]
                     for i in range(n)])
    log_scores = np.sort(rng.normal(size=ids.shape), axis=1)[:, ::-1].astype(np.float32)
    leaf = {cost: (rng.normal(size=ids.shape) + shift * true).astype(np.float32)
            for cost, shift in zip((1.0, 4.0, 16.0), shifts)}
    chosen, table = choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths)
    assert chosen == naive_choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths, SHARES, WEIGHT,
                                        reranker.EVIDENCE)
    assert chosen[0] == want


def test_the_evidence_rule_keeps_the_default_over_a_small_gain(monkeypatch):
    """Leaves that know nothing, at either C: some triple still scores best on the slice, by
    noise, not by EVIDENCE standard errors, and the default stands; demand no evidence and that
    triple wins."""
    rng = np.random.default_rng(11)
    n, n_labels, depths = 400, 12, (4, 8)
    data, _ = random_set(rng, n, 5, n_labels)
    ids = random_shortlists(rng, n, n_labels, 8)
    log_scores = np.sort(rng.normal(size=ids.shape), axis=1)[:, ::-1].astype(np.float32)
    default = (1.0, WEIGHT, depths[0])
    leaf = {cost: rng.normal(size=ids.shape).astype(np.float32) for cost in (1.0, 2.0)}
    chosen, table = choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths)
    assert max(table.values()) > table[default] and chosen == default
    best = max(table, key=table.get)
    monkeypatch.setattr(reranker, "EVIDENCE", 0.0)
    assert choose_blend(ids, log_scores, leaf, data.y_indptr, data.y_indices, depths)[0] == best


def test_sample_precision_matches_the_reference():
    rng = np.random.default_rng(9)
    data, _ = random_set(rng, 50, 4, 10)
    top = np.stack([rng.permutation(10)[:5] for _ in range(50)]).astype(np.int32)
    top[0, 3:] = -1
    y = data.y_indptr
    want = [np.mean([naive_precision_at_k(top[i:i + 1], [0, y[i + 1] - y[i]], data.y_indices[y[i]:y[i + 1]], k)
                     for k in (1, 3, 5)]) for i in range(50)]
    np.testing.assert_allclose(sample_precision(top, data.y_indptr, data.y_indices), want)


def test_each_leaf_is_the_l2_svm_optimum_on_unit_rows():
    """Without pruning and run to convergence, dual coordinate descent reaches the primal optimum
    that L-BFGS finds on the same samples (unit rows, a bias feature, zero rows included)."""
    rng = np.random.default_rng(1)
    data, dense = random_set(rng, 40, 10, 6, zero_rows=(3,))
    short = random_shortlists(rng, 40, 6, 3)
    leaves = fit_leaves(data, short, step=7, cost=0.7, threshold=0.0, tolerance=1e-9, max_passes=100_000)
    assert leaves.step == 7 and leaves.n_features == 10
    x = naive_unit_rows_with_bias(dense.astype(np.float64))
    for label, (rows, pos) in naive_leaf_pairs(short, data.y_indptr, data.y_indices, 6).items():
        want = naive_l2svm(x[rows], np.where(pos, 1.0, -1.0), 0.7)
        got = np.zeros(11)
        span = slice(leaves.indptr[label], leaves.indptr[label + 1])
        got[leaves.features[span]] = leaves.weights[span]
        assert leaves.features[span][-1] == 10  # the bias last, the features ascending before it
        assert np.all(np.diff(leaves.features[span]) > 0)
        np.testing.assert_allclose(got, want, atol=2e-4)


def test_each_leaf_comes_near_the_optimum_within_the_default_passes():
    """With the default stopping rule (TOLERANCE, MAX_PASSES), on 1,500 correlated rows where half
    the samples are positives, each leaf's primal objective is within 1% of the L-BFGS optimum. A
    cyclic order of the samples (before 2026-12-07) stopped at MAX_PASSES 13-19% above it; a new
    order each pass converges in a few."""
    rng = np.random.default_rng(3)
    data, dense = random_set(rng, 1500, 40, 3, density=0.5)
    short = np.tile(np.arange(3, dtype=np.int32), (1500, 1))  # every sample in every label's pairs
    leaves = fit_leaves(data, short, step=0, threshold=0.0)
    x = naive_unit_rows_with_bias(dense.astype(np.float64))

    def objective(w, rows, y):
        margin = np.maximum(0.0, 1.0 - y * (x[rows] @ w))
        return 0.5 * w @ w + reranker.COST * margin @ margin

    for label, (rows, pos) in naive_leaf_pairs(short, data.y_indptr, data.y_indices, 3).items():
        y = np.where(pos, 1.0, -1.0)
        got = np.zeros(41)
        span = slice(leaves.indptr[label], leaves.indptr[label + 1])
        got[leaves.features[span]] = leaves.weights[span]
        best = objective(naive_l2svm(x[rows], y, reranker.COST), rows, y)
        assert objective(got, rows, y) < 1.01 * best


def test_a_row_that_repeats_a_feature_id_trains_as_its_merged_row():
    """Duplicate ids are kept as entries (data.py) and add up in every dot product: coordinate
    descent on rows whose values are split across repeated ids takes the merged rows' steps."""
    rng = np.random.default_rng(6)
    data, _ = random_set(rng, 40, 10, 5)
    ids, values, indptr = [], [], [0]
    for i in range(40):  # each row's first entry split 30:70 into two entries of the same id
        span = slice(data.x_indptr[i], data.x_indptr[i + 1])
        f, v = data.x_indices[span], data.x_values[span]
        if f.size:
            f, v = np.concatenate([f[:1], f]), np.concatenate([v[:1] * 0.3, v[:1] * 0.7, v[1:]])
        ids.append(f), values.append(v), indptr.append(indptr[-1] + f.size)
    split = Dataset(np.array(indptr, np.int64), np.concatenate(ids).astype(np.int32),
                    np.concatenate(values).astype(np.float32), data.y_indptr, data.y_indices, 10, 5)
    short = random_shortlists(rng, 40, 5, 2)
    kw = {"step": 0, "threshold": 0.0, "tolerance": 0.0, "max_passes": 2}  # the same steps, not just the same optimum
    merged, repeated = fit_leaves(data, short, **kw), fit_leaves(split, short, **kw)
    np.testing.assert_array_equal(merged.indptr, repeated.indptr)
    np.testing.assert_array_equal(merged.features, repeated.features)
    np.testing.assert_allclose(repeated.weights, merged.weights, rtol=1e-4, atol=1e-5)


def test_leaves_fitted_in_small_blocks_of_labels_are_the_same_leaves(monkeypatch):
    """fit_leaves splits the labels into blocks whose buffers fit BLOCK_SLOTS (at least one label
    a block): however small the blocks, the leaves are those of one block."""
    rng = np.random.default_rng(8)
    data, _ = random_set(rng, 50, 12, 9)
    short = random_shortlists(rng, 50, 9, 3)
    whole = fit_leaves(data, short, step=0, threshold=0.0)
    for slots in (1, 30, 100):
        monkeypatch.setattr(reranker, "BLOCK_SLOTS", slots)
        blocks = fit_leaves(data, short, step=0, threshold=0.0)
        for a, b in zip(blocks[:3], whole[:3]):
            np.testing.assert_array_equal(a, b)


def test_gathered_rows_are_the_rows_in_their_order():
    """gather_rows copies a label's training rows (repeats and empty rows too) into a local CSR."""
    rng = np.random.default_rng(4)
    data, dense = random_set(rng, 30, 10, 4, zero_rows=(3, 7))
    scales = rng.random(30).astype(np.float32)
    rows = np.array([7, 0, 3, 3, 29, 12], np.int64)
    span = int(np.diff(data.x_indptr)[rows].sum())
    indptr, indices = np.zeros(len(rows) + 1, np.int64), np.zeros(span, np.int32)
    values, local_scales = np.zeros(span, np.float32), np.zeros(len(rows), np.float32)
    reranker.gather_rows(rows, data.x_indptr, data.x_indices, data.x_values, scales, indptr, indices, values,
                         local_scales)
    for i, r in enumerate(rows):
        lo, hi = data.x_indptr[r], data.x_indptr[r + 1]
        assert indices[indptr[i]:indptr[i + 1]].tolist() == data.x_indices[lo:hi].tolist()
        np.testing.assert_array_equal(values[indptr[i]:indptr[i + 1]], dense[r][dense[r] != 0])
    np.testing.assert_array_equal(local_scales, scales[rows])
    assert indptr[-1] == span


def test_labels_past_the_gather_cap_train_in_place_to_the_same_leaves(monkeypatch):
    """A label whose rows hold more than GATHER_SLOTS non-zeros trains over the training set's rows
    in place, not over a copy: the same leaves, whichever labels pass the cap."""
    rng = np.random.default_rng(6)
    data, _ = random_set(rng, 60, 14, 8)
    short = random_shortlists(rng, 60, 8, 3)
    copied = fit_leaves(data, short, step=0, threshold=0.0)
    indptr, rows, _ = training_pairs(short, data.y_indptr, data.y_indices, 8)
    spans = np.add.reduceat(np.diff(data.x_indptr)[rows], indptr[:-1])
    assert spans.min() < np.median(spans) < spans.max()
    for slots in (0, int(np.median(spans))):  # none copied; the half with fewer non-zeros
        monkeypatch.setattr(reranker, "GATHER_SLOTS", slots)
        in_place = fit_leaves(data, short, step=0, threshold=0.0)
        for a, b in zip(in_place[:3], copied[:3]):
            np.testing.assert_array_equal(a, b)


def test_kept_weights_are_sorted_by_feature_within_each_label():
    """sort_kept compacts each label's kept pairs (written in first-seen order, room to spare) and
    sorts them by feature, as a stable NumPy sort of each label's slice would."""
    rng = np.random.default_rng(5)
    counts = np.array([3, 0, 5, 1], np.int64)
    out_indptr = np.array([0, 6, 6, 12, 14], np.int64)  # room beyond each count holds junk
    out_features = rng.permutation(40)[:14].astype(np.int32)
    out_weights = rng.standard_normal(14).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    features, weights = np.zeros(indptr[-1], np.int32), np.zeros(indptr[-1], np.float32)
    reranker.sort_kept(out_indptr, out_features, out_weights, counts, indptr, features, weights)
    for j, n in enumerate(counts):
        f, w = out_features[out_indptr[j]:out_indptr[j] + n], out_weights[out_indptr[j]:out_indptr[j] + n]
        order = np.argsort(f, kind="stable")
        assert features[indptr[j]:indptr[j + 1]].tolist() == f[order].tolist()
        np.testing.assert_array_equal(weights[indptr[j]:indptr[j + 1]], w[order])


def test_leaves_from_pairs_built_once_are_the_leaves():
    """Model.fit_reranker builds the training pairs once for every C it fits: the same leaves."""
    rng = np.random.default_rng(9)
    data, _ = random_set(rng, 40, 12, 7)
    short = random_shortlists(rng, 40, 7, 3)
    pairs = training_pairs(short, data.y_indptr, data.y_indices, 7)
    for cost in (1.0, 4.0):
        want, got = fit_leaves(data, short, step=0, cost=cost), fit_leaves(data, short, step=0, cost=cost, pairs=pairs)
        for a, b in zip(got[:3], want[:3]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="pairs are for 7 labels"):
        fit_leaves(data, short, step=0, n_labels=9, pairs=pairs)


def test_pruning_keeps_the_large_weights_and_the_bias():
    rng = np.random.default_rng(2)
    data, _ = random_set(rng, 60, 15, 5)
    short = random_shortlists(rng, 60, 5, 2)
    full = fit_leaves(data, short, step=0, threshold=0.0)
    pruned = fit_leaves(data, short, step=0, threshold=0.1)
    for label in range(5):
        f_full = full.features[full.indptr[label]:full.indptr[label + 1]]
        w_full = full.weights[full.indptr[label]:full.indptr[label + 1]]
        keep = (np.abs(w_full) > 0.1) | (f_full == 15)
        span = slice(pruned.indptr[label], pruned.indptr[label + 1])
        assert pruned.features[span].tolist() == f_full[keep].tolist()
        np.testing.assert_array_equal(pruned.weights[span], w_full[keep])
    assert pruned.weights.shape[0] < full.weights.shape[0]


def test_leaf_scores_match_the_dense_product():
    rng = np.random.default_rng(3)
    data, dense = random_set(rng, 25, 8, 7, zero_rows=(0,))
    short = random_shortlists(rng, 25, 7, 4)
    leaves = fit_leaves(data, short, step=0, threshold=0.05)
    w = np.zeros((7, 9))
    for label in range(7):
        span = slice(leaves.indptr[label], leaves.indptr[label + 1])
        w[label, leaves.features[span]] = leaves.weights[span]
    rows = np.array([4, 0, 24, 4, 9], np.int64)
    ids = short[[1, 0, 5, 2, 3]]  # row 0's shortlist has -1 pads
    ids[3, 1] = 7  # a label no leaf was fitted for (there are 7): scored as an unseen label's, 0
    got = score_leaves(leaves, data, rows, ids)
    x = naive_unit_rows_with_bias(dense.astype(np.float64))[rows]
    want = np.where(ids >= 0, np.einsum("bf,bkf->bk", x, w[np.clip(ids, 0, 6)]), -np.inf)
    want[3, 1] = 0.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_rerank_matches_the_reference(weight):
    rng = np.random.default_rng(4)
    ids = np.stack([rng.permutation(20)[:8] for _ in range(6)]).astype(np.int32)
    ids[2, -3:] = -1
    log_scores = np.round(rng.standard_normal((6, 8)), 1).astype(np.float32)  # ties among them
    leaf = np.round(rng.standard_normal((6, 8)) * 2, 1).astype(np.float32)
    ids[3, -4:] = -1  # padding as the engine and score_leaves give it: -inf scores
    log_scores[3, -4:] = leaf[3, -4:] = -np.inf
    got_ids, got_scores = rerank(ids, log_scores, leaf, weight, 5)
    want_ids, want_scores = naive_rerank(ids, log_scores, leaf, weight, 5)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
    assert np.all(got_ids[2, :5] >= 0)  # padding sorts last
    assert got_ids[3, 4] == -1 and got_scores[3, 4] == -np.inf and np.all(np.isfinite(got_scores[3, :4]))


@pytest.mark.parametrize("depth,k", [(3, 5), (5, 5), (8, 5), (2, 8)])
def test_rerank_top_reranks_the_head_and_keeps_the_network_order_below_it(depth, k):
    """The first `depth` of each ranking re-ranked as rerank does, then the rest in the network's
    order; the scores fall along each row (padding last, at -inf), so any first k' are the top k'."""
    rng = np.random.default_rng(12)
    ids = np.stack([rng.permutation(30)[:8] for _ in range(6)]).astype(np.int32)
    log_scores = np.sort(rng.standard_normal((6, 8)), axis=1)[:, ::-1].astype(np.float32)
    ids[1, -3:], log_scores[1, -3:] = -1, -np.inf
    leaf = rng.standard_normal((6, 8)).astype(np.float32)
    got_ids, got_scores = reranker.rerank_top(ids, log_scores, leaf, 0.7, depth, k)
    head = naive_rerank(ids[:, :depth], log_scores[:, :depth], leaf[:, :depth], 0.7, depth)[0]
    want = np.array([(list(head[i]) + list(ids[i, depth:]))[:k] for i in range(6)])
    np.testing.assert_array_equal(got_ids, want)
    assert got_ids.shape == got_scores.shape == (6, min(k, 8))
    assert np.all(np.diff(got_scores, axis=1)[np.isfinite(got_scores[:, 1:])] <= 0)
    assert np.all(np.isneginf(got_scores[got_ids < 0]))


def test_reranker_config_is_checked():
    with pytest.raises(ConfigError, match="reranker.weight"):
        load_config({"model": {"reranker": {"weight": 1.5}}})
    assert load_config({"model": {"reranker": {"weight": 1.0}}}).model.reranker.weight == 1.0  # the leaves alone
    with pytest.raises(ConfigError, match="reranker.shortlist"):
        load_config({"model": {"reranker": {"weight": 0.1, "shortlist": 0}}})


def test_a_run_fits_leaves_that_rerank_and_a_model_file_keeps_them(tiny_config, tmp_path, one_thread):
    """The leaves are fitted on the final weights and saved beside them; the final evaluation ranks
    with them (differently from the network alone), `evaluate` on the saved model gives the same
    figures, and leaves of an earlier step are not used once the network moves on."""
    tiny_config["model"]["reranker"] = {"weight": 0.5, "shortlist": 20}
    trainer = Trainer(load_config(tiny_config), progress=False)
    final = trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fitted = [r for r in records if r["event"] == "reranker"]
    assert len(fitted) == 1 and fitted[0]["step"] == final["step"] and fitted[0]["reranker_weights"] > 150
    model = trainer.model
    assert model.current_leaves() is not None
    test = trainer.test_data
    with_leaves = model.predict(test, k=5)[0]
    leaves, model.leaves = model.leaves, None
    alone = model.predict(test, k=5)[0]
    model.leaves = leaves
    assert (with_leaves != alone).any()
    # all 150 labels: the shortlist of 20 re-ranked, the rest in the network's order below them
    every_id, every_score = model.predict(test, k=150)
    np.testing.assert_array_equal(every_id[:, :5], with_leaves)
    assert np.all(np.diff(every_score, axis=1) <= 0) and np.all(np.sort(every_id, axis=1) == np.arange(150))
    network_all = model.engine.predict(test, k=150)[0]
    np.testing.assert_array_equal(np.sort(every_id[:, :20], axis=1), np.sort(network_all[:, :20], axis=1))
    np.testing.assert_array_equal(every_id[:, 20:], network_all[:, 20:])
    checkpoint = max((tmp_path / "run" / "checkpoints").glob("step-*.npz"))
    loaded, _ = Model.load(checkpoint)
    np.testing.assert_array_equal(loaded.predict(test, k=5)[0], with_leaves)
    write_dataset(test, tmp_path / "test.txt")
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "test.txt"),
                                       "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["P@1"] == pytest.approx(final["P@1"])
    loaded.engine.step += 1  # as if trained on: the leaves no longer match the network
    assert loaded.current_leaves() is None and loaded.reranker_due()
    np.testing.assert_array_equal(loaded.predict(test, k=5)[0], alone)
    arrays, meta = loaded.state()  # nor are they saved with it
    assert "reranker" not in meta and not any(name.startswith("reranker.") for name in arrays)


def one_epoch_state(config: dict, weight: float) -> tuple[dict, dict]:
    """The model file (arrays, meta) of a one-epoch run of `config` with leaves at `weight`."""
    config["model"]["reranker"] = {"weight": weight}
    config["training"]["epochs"] = 1
    trainer = Trainer(load_config(config), progress=False)
    trainer.fit()
    return trainer.model.state()


def test_reranking_in_blocks_of_samples_ranks_as_at_once(tiny_config, monkeypatch, one_thread):
    """Model._top re-ranks at most RERANK_SAMPLES samples at a time (their top `depth` labels are
    transient): blocks of 7 give the ids, scores (to float32 rounding) and mean active neurons
    of one pass."""
    import slidepy.model as model_module

    tiny_config["model"]["reranker"] = {"weight": 0.5, "shortlist": 20}
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(load_config(tiny_config), progress=False)
    trainer.fit()
    model, test = trainer.model, trainer.test_data
    at_once = model._top(test, None, 5)
    monkeypatch.setattr(model_module, "RERANK_SAMPLES", 7)
    in_blocks = model._top(test, None, 5)
    assert test.n_samples > 7 * 3
    np.testing.assert_array_equal(in_blocks[0], at_once[0])
    np.testing.assert_allclose(in_blocks[1], at_once[1], rtol=1e-5)  # BLAS rounds blocks of other shapes apart
    np.testing.assert_allclose(in_blocks[2], at_once[2], rtol=1e-12)


def test_a_model_file_with_half_its_leaves_is_refused(tiny_config, tmp_path, one_thread):
    from slidepy.checkpoint import save_checkpoint
    from slidepy.errors import CheckpointError

    arrays, meta = one_epoch_state(tiny_config, 0.2)
    del arrays["reranker.weights"]
    save_checkpoint(tmp_path / "half.npz", arrays, meta)
    with pytest.raises(CheckpointError, match="half.npz.*reranker"):
        Model.load(tmp_path / "half.npz")


@pytest.mark.parametrize("damage,what", [
    (lambda a, m: a["reranker.features"].__setitem__(0, m["reranker"]["n_features"] + 1), "features outside"),
    (lambda a, m: a["reranker.features"].__setitem__(0, -1), "features outside"),
    (lambda a, m: m["reranker"].__setitem__("n_features", 10**6), "features outside"),
    (lambda a, m: a["reranker.indptr"].__setitem__(1, a["reranker.indptr"][2] + 1), "do not fit together"),
    (lambda a, m: a["reranker.indptr"].__setitem__(0, 1), "do not fit together"),
    (lambda a, m: a.__setitem__("reranker.indptr", np.concatenate([a["reranker.indptr"], a["reranker.indptr"][-1:]])),
     "leaves for 151 labels in a model of 150"),
    (lambda a, m: m["reranker"].__setitem__("depth", 0), "depth 0"),
    (lambda a, m: m["reranker"].__setitem__("share", 1.5), "share 1.5"),
])
def test_a_model_file_whose_leaves_point_past_their_arrays_is_refused(tiny_config, tmp_path, one_thread, damage, what):
    """The scoring kernels index without bounds checks: a damaged file is a CheckpointError, not
    a read past an array."""
    from slidepy.checkpoint import save_checkpoint
    from slidepy.errors import CheckpointError

    arrays, meta = one_epoch_state(tiny_config, 0.2)
    arrays = {name: a.copy() for name, a in arrays.items()}
    save_checkpoint(tmp_path / "good.npz", arrays, meta)
    assert Model.load(tmp_path / "good.npz")[0].leaves.features[-1] == meta["reranker"]["n_features"]  # the bias id
    damage(arrays, meta)
    save_checkpoint(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=f"bad.npz.*{what}"):
        Model.load(tmp_path / "bad.npz")


def test_a_large_training_set_shortlists_a_sample_of_its_rows(tiny_config, monkeypatch, one_thread):
    """Past SHORTLIST_SAMPLES training samples only a random SHORTLIST_SAMPLES of them get a
    shortlist (negatives); every sample still gives its positives, and the draw is the seed's."""
    import slidepy.model as model_module

    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(load_config(tiny_config), progress=False)
    trainer.fit()
    seen = []
    monkeypatch.setattr(reranker, "SHORTLIST_SAMPLES", 100)
    fit = model_module.fit_leaves
    monkeypatch.setattr(model_module, "fit_leaves", lambda train, short, step, **kw:
                        seen.append((short.copy(), kw["rows"].copy(), kw["cost"])) or fit(train, short, step, **kw))
    model = trainer.model
    model.config = load_config({**tiny_config, "model": {**tiny_config["model"], "reranker": {"weight": 0.1}}})
    model.fit_reranker(trainer.train_data)
    model.fit_reranker(trainer.train_data)
    short, rows, cost = seen[0]
    assert cost == reranker.COST and len(seen) == 2  # a set weight: one fit a call, at the default C
    # against the network's top confusion_depth, for 100 distinct samples of the 1,200
    n_labels = trainer.model.engine.n_labels
    assert short.shape == (100, reranker.confusion_depth(50, n_labels)) and np.all(short >= 0)
    assert rows.shape == (100,) and np.all(np.diff(rows) > 0) and 0 <= rows[0] and rows[-1] < 1200
    np.testing.assert_array_equal(short, seen[1][0])
    np.testing.assert_array_equal(rows, seen[1][1])
    # where exact scoring of them all would cost too much, fewer of them, still exact
    width = model.engine.sizes[-1][0]
    monkeypatch.setattr(reranker, "SHORTLIST_SAMPLES", 65_536)
    monkeypatch.setattr(reranker, "MIN_EXACT_SHORTLISTS", 200)
    monkeypatch.setattr(reranker, "EXACT_SHORTLIST_MACS", 300 * 150 * width)
    model.fit_reranker(trainer.train_data)
    assert seen[2][0].shape[0] == seen[2][1].shape[0] == 300


@pytest.mark.parametrize("shortlist,n_labels,depth", [
    (50, 22_875, 100),  # many labels: CONFUSION_DEPTH x shortlist
    (50, 983, 100),  # Delicious: an eighth is 122, past it
    (50, 159, 19),  # Bibtex: an eighth of the labels
    (50, 5, 1), (1, 1_000, 2)])  # at least one; a short shortlist
def test_the_leaves_train_against_at_most_an_eighth_of_the_labels(shortlist, n_labels, depth):
    assert reranker.confusion_depth(shortlist, n_labels) == depth


@pytest.mark.parametrize("shape,plan", [
    ((1_000, 100, 64, True), (1_000, False)),  # a small set: every sample, exact
    ((44_606, 22_875, 512, True), (44_606, False)),  # DebianDeps: 5.2e11 multiply-adds, all exact
    ((100_000, 50_000, 512, True), (39_062, False)),  # 50,000 labels: as many as 1e12 allows, exact
    ((1_000_000, 670_091, 128, True), (65_536, True)),  # 670K labels: fewer than 16,384 fit; the index
    ((1_000_000, 670_091, 128, False), (16_384, False)),  # without one, 16,384 exact
])
def test_the_shortlist_plan_scores_as_many_samples_exactly_as_the_budget_allows(shape, plan):
    assert reranker.shortlist_plan(*shape) == plan


def test_auto_chooses_the_share_on_samples_the_network_never_saw(sliced_config, tmp_path, monkeypatch, one_thread):
    """weight "auto": the run holds a slice of the training set out of every batch, chooses the
    leaves' share on it (recorded with each share's score), and a model file predicts with that
    share; `evaluate` on it gives the run's P@1."""
    trainer = Trainer(load_config(sliced_config), progress=False)
    held = trainer.held_out
    assert held.shape == (120,)
    trained_on = []
    step = trainer.train_step

    def recorded_step():
        done = step()
        trained_on.append(done.rows)
        return done

    monkeypatch.setattr(trainer, "train_step", recorded_step)
    final = trainer.fit()
    trained_on = np.concatenate(trained_on)
    assert trained_on.shape[0] > 1080 and not np.isin(held, trained_on).any()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    fitted = next(r for r in records if r["event"] == "reranker")
    assert start["held_out"] == 120
    scores = {(float(cost), float(share), int(depth)): v for cost, table in fitted["reranker_share_scores"].items()
              for depth, row in table.items() for share, v in row.items()}
    n_labels = trainer.model.engine.n_labels
    tried = {cost for cost, _, _ in scores}  # the default's C, then each next one while they win
    assert tried == set(reranker.COSTS[:len(tried)])
    assert set(scores) == {(cost, share, min(d * 20, n_labels)) for cost in tried for share in SHARES
                           for d in reranker.DEPTHS}
    assert fitted["reranker_held_out"] == 120
    chosen = fitted["reranker_cost"], fitted["reranker_share"], fitted["reranker_depth"]
    # the best at its C, or the default where that wins by too little
    best_at = max((t for t in scores if t[0] == chosen[0]), key=scores.get)
    assert chosen in (best_at, (reranker.COST, WEIGHT, 20))
    leaves = trainer.model.leaves
    assert (leaves.cost, leaves.share, leaves.depth) == chosen
    checkpoint = max((tmp_path / "run" / "checkpoints").glob("step-*.npz"))
    loaded, _ = Model.load(checkpoint)
    assert (loaded.leaves.cost, loaded.leaves.share, loaded.leaves.depth) == chosen
    np.testing.assert_array_equal(loaded.leaves.weights, leaves.weights)
    write_dataset(trainer.test_data, tmp_path / "test.txt")
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "test.txt"),
                                       "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["P@1"] == pytest.approx(final["P@1"])


def test_a_run_compiles_the_leaves_on_a_few_samples_before_it_times_their_fit(sliced_config, tmp_path,
                                                                           monkeypatch, one_thread):
    """Before the fit it times, a run fits the leaves on the first COMPILE_SAMPLES samples, a
    quarter of them held out where the run holds a slice out, and throws them away
    (Model.compile_reranker): their kernels compile there, and the record keeps the two apart.
    The few samples take their shortlists the way the run's own fit will: here the plan for the
    run's training set says through the index, where that for 64 samples would say exact."""
    import slidepy.model as model_module

    calls, shortlisted = [], []
    fit, plan = Model.fit_reranker, model_module.shortlist_plan

    def spied(self, train, held_out=None, indexed=None):
        calls.append((train.n_samples, None if held_out is None else held_out.tolist()))
        return fit(self, train, held_out, indexed)

    monkeypatch.setattr(Model, "fit_reranker", spied)
    monkeypatch.setattr(model_module, "shortlist_plan",
                        lambda n, *args: (n, True) if n > model_module.COMPILE_SAMPLES else plan(n, *args))
    trainer = Trainer(load_config(sliced_config), progress=False)
    predict = trainer.model.engine.predict
    depth = reranker.confusion_depth(20, trainer.model.engine.n_labels)

    def recorded(data, rows=None, **kwargs):
        if kwargs.get("votes") is False and kwargs.get("k") == depth:  # the leaves' shortlists
            shortlisted.append((rows.shape[0], kwargs["use_lsh"]))
        return predict(data, rows, **kwargs)

    monkeypatch.setattr(trainer.model.engine, "predict", recorded)
    trainer.fit()
    n, trained = model_module.COMPILE_SAMPLES, trainer.train_data.n_samples - trainer.held_out.shape[0]
    assert calls == [(n, list(range(n - n // 4, n))), (trainer.train_data.n_samples, trainer.held_out.tolist())]
    assert plan(n - n // 4, trainer.model.engine.n_labels, 32, True) == (n - n // 4, False)  # 48 samples' own plan
    assert shortlisted == [(n - n // 4, True), (trained, True)]
    fitted = next(json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                  if '"reranker"' in line)
    assert fitted["reranker_compile_seconds"] >= 0 and fitted["reranker_seconds"] > 0
    # the throwaway fit leaves the model's leaves and "auto"'s scores as they were
    leaves, scores = trainer.model.leaves, trainer.model.share_scores
    assert trainer.model.compile_reranker(trainer.train_data, trainer.held_out) >= 0
    assert trainer.model.leaves is leaves and trainer.model.share_scores is scores


_COMPILES_IN_THE_FIT = """
import json, sys
import numba
from slidepy import Trainer, load_config, reranker
from slidepy.model import COMPILE_SAMPLES, Model

reranker.MIN_VALIDATION, reranker.VALIDATION_SHARE, reranker.MAX_VALIDATION_SHARE = 50, 0.1, 0.1
compiled, fit = [], Model.fit_reranker

class Listener(numba.core.event.Listener):
    def on_start(self, event):
        compiled.append(event.data["dispatcher"].py_func.__module__ + "." + event.data["dispatcher"].py_func.__name__)
    def on_end(self, event):
        pass

def spied(self, train, held_out=None, indexed=None):  # the timed fit: the one on the whole training set
    if train.n_samples <= COMPILE_SAMPLES:
        return fit(self, train, held_out, indexed)
    with numba.core.event.install_listener("numba:compile", Listener()):
        return fit(self, train, held_out, indexed)

Model.fit_reranker = spied
Trainer(load_config(json.loads(sys.argv[1])), progress=False).fit()
print(json.dumps(compiled))
"""


@pytest.mark.slow
def test_the_timed_fit_compiles_nothing_in_a_fresh_process(sliced_config, tmp_path):
    """In a process of its own, with a numba cache of its own (nothing compiled yet), the fit a
    run times compiles none of slidepy's kernels: compile_reranker compiled them all first."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _COMPILES_IN_THE_FIT, json.dumps(sliced_config)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = json.loads(done.stdout.strip().splitlines()[-1])
    assert [name for name in compiled if name.startswith("slidepy.")] == []


@pytest.mark.parametrize("ranking_share", [0.0, 1.01])
def test_auto_tries_the_other_cs_only_where_the_leaves_carry_the_ranking(sliced_config, monkeypatch, one_thread,
                                                                          ranking_share):
    """"auto" chooses the share at reranker.COST first; where that share is RANKING_SHARE or more
    it fits the leaves at every C of COSTS and chooses among them all, else it fits them once."""
    import slidepy.model as model_module

    monkeypatch.setattr(model_module, "RANKING_SHARE", ranking_share)
    costs = []  # the Cs of the fits on the training set (not compile_reranker's on a few samples)
    fit = model_module.fit_leaves

    def counted(train, *args, **kwargs):
        if train.n_samples > model_module.COMPILE_SAMPLES:
            costs.append(kwargs["cost"])
        return fit(train, *args, **kwargs)

    monkeypatch.setattr(model_module, "fit_leaves", counted)
    trainer = Trainer(load_config(sliced_config), progress=False)
    trainer.fit()
    chosen = trainer.model.leaves.cost
    if ranking_share == 0.0:  # a climb: C after C while each wins, so the last C tried won or ended the list
        assert len(costs) >= 2 and tuple(costs) == reranker.COSTS[:len(costs)]
        assert chosen == costs[-1] or (chosen == costs[-2] if len(costs) > 2 else chosen == reranker.COST)
        assert len(costs) == len(reranker.COSTS) or chosen != costs[-1]
    else:
        assert costs == [reranker.COST] and chosen == reranker.COST
    assert {cost for cost, _, _ in trainer.model.share_scores} == set(costs)


def test_a_run_resumed_under_another_slice_rule_holds_nothing_out(sliced_config, monkeypatch, one_thread):
    """A checkpoint records how many samples its run held out; resumed where the rule now draws
    another count, the run goes on without a slice (with a warning) and the leaves take the
    default share; resumed under the same rule it keeps its slice."""
    from slidepy.errors import TrainingInterrupted


    first = Trainer(load_config(sliced_config), progress=False, callbacks=[interrupt_at_step(5)])
    with pytest.raises(TrainingInterrupted):
        first.fit()
    same = Trainer(load_config(sliced_config), progress=False)
    assert same.resume() and same.held_out.shape == (120,) and not same.warnings
    same.run.unlock()  # the run dir is this test's to resume again
    monkeypatch.setattr(reranker, "VALIDATION_SHARE", 0.05)  # a later version's rule: 60 of the 1,200
    moved = Trainer(load_config(sliced_config), progress=False)
    assert moved.held_out.shape == (60,)
    with pytest.warns(UserWarning, match="held out 120 training samples and this version of slidepy would hold out 60"):
        assert moved.resume()
    assert moved.held_out is None and moved.schedule.n_train == moved.train_data.n_samples
    moved.fit()
    assert (moved.model.leaves.share, moved.model.leaves.depth) == (WEIGHT, 20)


def test_the_batch_size_warning_counts_the_samples_steps_draw_from(sliced_config, one_thread):
    """With 120 of 1,200 samples held out, a batch of 1,100 is larger than what the steps draw from."""
    sliced_config["training"].update(epochs=1, batch_size=1100)
    trainer = Trainer(load_config(sliced_config), progress=False)
    with pytest.warns(UserWarning, match=r"\(1200 samples in .*, 120 held out for the leaves' share\): every step "
                                         r"uses all 1080 samples"):
        trainer.fit()


def test_auto_on_a_small_set_holds_nothing_out_and_takes_the_default_share(tiny_config, one_thread):
    tiny_config["model"]["reranker"] = {"weight": "auto"}
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(load_config(tiny_config), progress=False)
    assert trainer.held_out is None and trainer.schedule.n_train == trainer.train_data.n_samples
    trainer.fit()
    assert (trainer.model.leaves.share, trainer.model.leaves.depth, trainer.model.leaves.cost) == (WEIGHT, 50,
                                                                                                  reranker.COST)
    assert trainer.model.share_scores is None


def test_a_model_file_from_before_the_share_and_depth_were_saved_takes_its_configs(tiny_config, tmp_path, one_thread):
    """And one from before their C was saved, reranker.COST (the only C then)."""
    from slidepy.checkpoint import save_checkpoint

    arrays, meta = one_epoch_state(tiny_config, 0.3)
    assert meta["reranker"].pop("share") == 0.3 and meta["reranker"].pop("depth") == 50
    assert meta["reranker"].pop("cost") == reranker.COST
    meta["config"]["model"]["reranker"]["shortlist"] = 30  # the file's own config says how deep
    save_checkpoint(tmp_path / "old.npz", arrays, meta)
    leaves = Model.load(tmp_path / "old.npz")[0].leaves
    assert (leaves.share, leaves.depth, leaves.cost) == (0.3, 30, reranker.COST)
