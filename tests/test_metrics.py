"""slidepy.metrics against the pure-Python references in tests/naive.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from naive import naive_ndcg_at_k, naive_precision_at_k, naive_topk

from slidepy.metrics import (
    evaluate_topk,
    ndcg_at_k,
    precision_at_k,
    score_topk_per_sample,
    topk_from_scores,
)

KS = (1, 2, 3, 5, 8)


def random_case(rng, n_samples, width, n_labels, max_true, p_empty=0.2, p_pad=0.3):
    """Top-k table with -1 padding and repeated ids, and CSR labels with empties and duplicates."""
    top = rng.integers(0, n_labels, size=(n_samples, width)).astype(np.int32)
    n_pad = rng.integers(0, width + 1, size=n_samples)
    for i in range(n_samples):
        if rng.random() < p_pad:
            top[i, width - n_pad[i] :] = -1
    counts = rng.integers(1, max_true + 1, size=n_samples)
    counts[rng.random(n_samples) < p_empty] = 0
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    indices = rng.integers(0, n_labels, size=indptr[-1]).astype(np.int32)
    return top, indptr, indices


def check_against_naive(top, indptr, indices, ks=KS, ignore_empty=False):
    prec = precision_at_k(top, indptr, indices, ks, ignore_empty=ignore_empty)
    ndcg = ndcg_at_k(top, indptr, indices, ks, ignore_empty=ignore_empty)
    both = evaluate_topk(top, indptr, indices, ks, ignore_empty=ignore_empty)
    assert set(prec) == set(ndcg) == set(ks)
    for k in ks:
        want_p = naive_precision_at_k(top, indptr, indices, k, ignore_empty)
        want_n = naive_ndcg_at_k(top, indptr, indices, k, ignore_empty)
        assert prec[k] == pytest.approx(want_p, abs=1e-12), k
        assert ndcg[k] == pytest.approx(want_n, abs=1e-12), k
        assert both[f"P@{k}"] == prec[k]
        assert both[f"nDCG@{k}"] == ndcg[k]
        assert 0.0 <= prec[k] <= 1.0 and 0.0 <= ndcg[k] <= 1.0 + 1e-12


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ignore_empty", [False, True])
def test_random_cases_match_naive(seed, ignore_empty):
    rng = np.random.default_rng(seed)
    # Few labels so that hits, duplicates and repeats are common; width 5 < max k = 8.
    top, indptr, indices = random_case(rng, 300, 5, n_labels=12, max_true=7)
    check_against_naive(top, indptr, indices, ignore_empty=ignore_empty)


def test_long_label_lists_match_naive():
    # More labels per sample than the largest k, with many repeats: exercises the capped count
    # of distinct labels used by IDCG.
    rng = np.random.default_rng(99)
    top, indptr, indices = random_case(rng, 200, 10, n_labels=25, max_true=40, p_empty=0.05)
    check_against_naive(top, indptr, indices, ks=(1, 3, 5, 10, 12))


def test_hand_computed_example():
    # Sample 0: labels {1, 2}; predictions 1 (hit), 5, 2 (hit).
    # Sample 1: labels {7}; predictions 3, 7 (hit), -1.
    # Sample 2: no labels.
    top = np.array([[1, 5, 2], [3, 7, -1], [0, 1, 2]], dtype=np.int32)
    indptr = np.array([0, 2, 3, 3], dtype=np.int64)
    indices = np.array([2, 1, 7], dtype=np.int32)
    res = evaluate_topk(top, indptr, indices, ks=(1, 3))
    assert res["P@1"] == pytest.approx((1 + 0 + 0) / 3)
    assert res["P@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    g = [1 / math.log2(r + 2) for r in range(3)]
    ndcg3_s0 = (g[0] + g[2]) / (g[0] + g[1])
    ndcg3_s1 = g[1] / g[0]
    assert res["nDCG@1"] == pytest.approx(1 / 3)
    assert res["nDCG@3"] == pytest.approx((ndcg3_s0 + ndcg3_s1 + 0) / 3)
    res = evaluate_topk(top, indptr, indices, ks=(1, 3), ignore_empty=True)
    assert res["P@1"] == pytest.approx(1 / 2)
    assert res["nDCG@3"] == pytest.approx((ndcg3_s0 + ndcg3_s1) / 2)
    assert list(res) == ["P@1", "P@3", "nDCG@1", "nDCG@3"]


def test_duplicate_labels_are_a_set():
    top = np.array([[4, 9, 1]], dtype=np.int32)
    once = evaluate_topk(top, np.array([0, 1]), np.array([4], dtype=np.int32), ks=(1, 3))
    dup = evaluate_topk(top, np.array([0, 3]), np.array([4, 4, 4], dtype=np.int32), ks=(1, 3))
    assert once == dup
    assert dup["nDCG@3"] == pytest.approx(1.0)  # IDCG uses one distinct label, not three


def test_repeated_prediction_counts_once():
    top = np.array([[4, 4, 4]], dtype=np.int32)
    res = evaluate_topk(top, np.array([0, 2]), np.array([4, 6], dtype=np.int32), ks=(3,))
    assert res["P@3"] == pytest.approx(1 / 3)


def test_k_larger_than_width_and_labels():
    top = np.array([[2, 3]], dtype=np.int32)
    indptr = np.array([0, 2], dtype=np.int64)
    indices = np.array([3, 2], dtype=np.int32)
    res = evaluate_topk(top, indptr, indices, ks=(1, 2, 5))
    assert res["P@5"] == pytest.approx(2 / 5)  # denominator stays k
    assert res["nDCG@5"] == pytest.approx(1.0)  # IDCG capped at |labels| = 2
    check_against_naive(top, indptr, indices, ks=(1, 2, 5, 10))


def test_perfect_and_all_miss():
    rng = np.random.default_rng(7)
    n_samples = 50
    indptr = np.arange(0, 5 * n_samples + 1, 5, dtype=np.int64)
    indices = np.concatenate([rng.permutation(100)[:5] for _ in range(n_samples)]).astype(np.int32)
    top = indices.reshape(n_samples, 5)
    res = evaluate_topk(top, indptr, indices, ks=(1, 3, 5))
    assert all(v == pytest.approx(1.0) for v in res.values())
    res = evaluate_topk(top + 1000, indptr, indices, ks=(1, 3, 5))
    assert all(v == 0.0 for v in res.values())


def test_empty_batch_and_all_empty():
    top = np.zeros((0, 5), dtype=np.int32)
    res = evaluate_topk(top, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32))
    assert all(v == 0.0 for v in res.values())
    top = np.zeros((3, 5), dtype=np.int32)
    indptr = np.zeros(4, dtype=np.int64)
    for flag in (False, True):
        res = evaluate_topk(top, indptr, np.zeros(0, dtype=np.int32), ignore_empty=flag)
        assert all(v == 0.0 for v in res.values())


def test_other_integer_dtypes_and_per_sample():
    rng = np.random.default_rng(3)
    top, indptr, indices = random_case(rng, 40, 6, n_labels=9, max_true=4)
    ref = evaluate_topk(top, indptr, indices)
    wide = evaluate_topk(top.astype(np.int64), indptr.astype(np.int32), indices.astype(np.int64))
    assert wide == ref
    prec, ndcg = score_topk_per_sample(top, indptr, indices, ks=(1, 3, 5))
    assert prec.shape == ndcg.shape == (40, 3) and prec.dtype == np.float64
    assert prec[np.diff(indptr) == 0].sum() == 0.0 and ndcg[np.diff(indptr) == 0].sum() == 0.0
    assert prec.mean(axis=0)[1] == pytest.approx(ref["P@3"])


def test_single_int_k():
    top = np.array([[1, 2]], dtype=np.int32)
    assert precision_at_k(top, np.array([0, 1]), np.array([2], dtype=np.int32), ks=2) == {2: 0.5}


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(3, np.int32), [0, 0, 0, 0], []), "top_ids must be 2-D"),
        ((np.zeros((3, 2), np.float32), [0, 0, 0, 0], []), "top_ids must hold integers"),
        ((np.zeros((3, 2), np.int32), [0, 0, 0], []), "y_indptr has 3 entries"),
        ((np.zeros((3, 2), np.int32), [1, 1, 1, 1], [0]), "must start at 0"),
        ((np.zeros((3, 2), np.int32), [0, 2, 1, 2], [0, 0]), "non-decreasing"),
        ((np.zeros((3, 2), np.int32), [0, 1, 1, 1], [0, 0]), "y_indices has 2 entries"),
        ((np.full((1, 1), 2**40, np.int64), [0, 0], []), "outside the int32 range"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        evaluate_topk(*args)


@pytest.mark.parametrize("ks", [(), (0,), (1, -2), (1.5,), (True,)])
def test_bad_ks(ks):
    with pytest.raises(ValueError):
        precision_at_k(np.zeros((1, 2), np.int32), [0, 0], [], ks=ks)


# ----------------------------------------------------------------------------- topk_from_scores


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 7, 20, 25])
def test_topk_matches_naive_with_ties(seed, k):
    rng = np.random.default_rng(seed)
    # Few distinct values: ties everywhere, including at the k-th position.
    scores = rng.integers(-3, 4, size=(30, 20)).astype(np.float32)
    scores[0] = 0.0
    scores[1, 5] = np.inf
    scores[2, :] = -np.inf
    ids, vals = topk_from_scores(scores, k)
    want_ids, want_vals = naive_topk(scores, k)
    assert ids.dtype == np.int32 and vals.dtype == np.float32
    assert ids.shape == vals.shape == (30, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals)


def test_topk_continuous_scores_and_float64():
    rng = np.random.default_rng(11)
    scores = rng.standard_normal((50, 300))
    ids, vals = topk_from_scores(scores, 10)
    want_ids, want_vals = naive_topk(scores, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals)
    assert vals.dtype == np.float64


def test_topk_edge_shapes_and_errors():
    ids, vals = topk_from_scores(np.zeros((0, 5), np.float32), 3)
    assert ids.shape == (0, 3)
    ids, vals = topk_from_scores(np.zeros((2, 0), np.float32), 2)
    assert (ids == -1).all() and np.isneginf(vals).all()
    with pytest.raises(ValueError, match="NaN"):
        topk_from_scores(np.array([[1.0, np.nan]], np.float32), 1)
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros((2, 3), np.float32), 0)
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros(3, np.float32), 1)
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros((2, 3), np.int32), 1)


def test_topk_feeds_evaluate():
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((20, 40)).astype(np.float32)
    ids, _ = topk_from_scores(scores, 5)
    indptr = np.arange(21, dtype=np.int64)
    indices = ids[:, 0].copy()  # the argmax is the single true label
    res = evaluate_topk(ids, indptr, indices, ks=(1, 5))
    assert res["P@1"] == 1.0 and res["P@5"] == pytest.approx(0.2) and res["nDCG@5"] == 1.0


def test_precision_is_the_float_nearest_hits_over_samples_times_k():
    """P@10 of 1,124 hits in 1,000 samples is 0.1124 exactly as printed, not a mean of rounded
    tenths (0.11239999999999943, as evaluate --json showed)."""
    rng = np.random.default_rng(0)
    n, k = 1000, 10
    hits = np.zeros(n, np.int64)
    hits[rng.choice(n, 1124 // 2, replace=False)] = 2  # 562 samples with 2 hits each
    top = np.tile(np.arange(k, dtype=np.int32), (n, 1))
    y_indices = np.concatenate([np.arange(h, dtype=np.int32) for h in hits] + [np.zeros(0, np.int32)])
    y_indptr = np.concatenate([[0], np.cumsum(hits)]).astype(np.int64)
    assert precision_at_k(top, y_indptr, y_indices, ks=(10,))[10] == 1124 / 10000
    assert evaluate_topk(top, y_indptr, y_indices, ks=(1, 10))["P@10"] == 0.1124
    assert repr(evaluate_topk(top, y_indptr, y_indices, ks=(1, 10))["P@1"]) == "0.562"
