"""Exact output scoring (scoring.py): the parallel top-k against the NumPy reference, with ties,
NaN, k larger than the layer, and the blocked BLAS path."""

import numpy as np
import pytest

from slidepy.scoring import block_rows, score_topk, topk_rows

from naive import assert_same_topk, naive_topk


@pytest.mark.parametrize("k", [1, 5, 12])
def test_topk_rows_matches_reference_with_ties(k):
    rng = np.random.default_rng(k)
    logits = rng.integers(-3, 4, size=(40, 9)).astype(np.float32)  # many ties
    bias = rng.integers(-1, 2, size=9).astype(np.float32)
    ids = np.zeros((40, k), np.int32)
    vals = np.zeros((40, k), np.float32)
    topk_rows(logits, bias, ids, vals)
    ref_ids, ref_vals = naive_topk(logits + bias, k)  # k = 12 > 9 labels: -1 / -inf padding
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(vals, ref_vals)


@pytest.mark.parametrize("n_labels", [16, 17, 1000, 1013])
def test_topk_rows_matches_reference_across_skipped_chunks(n_labels):
    # rows long enough for the chunked scan (whole chunks and a ragged tail), with ties across
    # chunk edges, NaN, -inf and a row whose best logits sit in the tail
    rng = np.random.default_rng(n_labels)
    logits = rng.integers(-20, 21, size=(30, n_labels)).astype(np.float32)
    logits[1] = 0.0
    logits[2, ::7] = np.nan
    logits[3, :] = -np.inf
    logits[4, -1] = 100.0
    bias = rng.integers(-1, 2, size=n_labels).astype(np.float32)
    for k in (1, 5, 20):
        ids = np.zeros((30, k), np.int32)
        vals = np.zeros((30, k), np.float32)
        topk_rows(logits, bias, ids, vals)
        ref_ids, ref_vals = naive_topk(np.where(np.isnan(logits), -np.inf, logits + bias), k)
        # -inf logits never enter (as NaN): the reference's -inf picks are empty slots there
        ref_ids = np.where(ref_vals == -np.inf, -1, ref_ids)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(vals, ref_vals)


def test_nan_logits_never_enter_the_top_k():
    logits = np.array([[np.nan, 1.0, 3.0, np.nan, 2.0]], np.float32)
    ids = np.zeros((1, 2), np.int32)
    vals = np.zeros((1, 2), np.float32)
    topk_rows(logits, np.zeros(5, np.float32), ids, vals)
    assert ids.tolist() == [[2, 4]]


def test_score_topk_is_the_exact_top_k_of_the_product():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((33, 16)).astype(np.float32)
    weights = rng.standard_normal((500, 16)).astype(np.float32)
    bias = rng.standard_normal(500).astype(np.float32)
    ids = np.zeros((33, 5), np.int32)
    vals = np.zeros((33, 5), np.float32)
    score_topk(hidden, weights, bias, ids, vals)
    ref_ids, ref_vals = naive_topk(hidden.astype(np.float64) @ weights.T.astype(np.float64) + bias, 5)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(vals, ref_vals, rtol=1e-5, atol=1e-5)


def test_blocks_stay_bounded():
    assert block_rows(1000) == 1024
    assert block_rows(670_091) * 670_091 <= 1 << 24 and block_rows(670_091) >= 8
    assert block_rows(10**9) == 8


def test_score_topk_gives_a_sample_the_same_scores_whatever_is_scored_beside_it():
    """A row's top-k scores are the same whether it is scored alone, in a ragged block or in a
    block of whole tiles (score_topk pads the product's rows to SCORE_ROW_TILE): bit-identical
    where BLAS computes a tile's rows alike wherever the block ends, and within the rounding of
    another summation order where it does not (scoring.SCORE_ROW_TILE's comment), the ids alike
    where no two scores are that close."""
    from slidepy.scoring import SCORE_ROW_TILE

    rng = np.random.default_rng(0)
    n, d, k = 301, 37, 5
    weights = rng.standard_normal((n, d)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    hidden = rng.standard_normal((2 * SCORE_ROW_TILE + 7, d)).astype(np.float32)

    def scores(rows):
        ids = np.full((rows.shape[0], k), -1, np.int32)
        vals = np.full((rows.shape[0], k), -np.inf, np.float32)
        score_topk(np.ascontiguousarray(rows), weights, bias, ids, vals)
        return ids, vals

    full_ids, full_vals = scores(hidden)
    for subset in (hidden[:1], hidden[3:20], hidden[:SCORE_ROW_TILE], hidden[5:5 + SCORE_ROW_TILE + 3]):
        start = int(np.flatnonzero((hidden == subset[0]).all(axis=1))[0])
        ids, vals = scores(subset)
        assert_same_topk(ids, vals, full_ids[start:start + subset.shape[0]], full_vals[start:start + subset.shape[0]])
    want = np.argsort(-(hidden[:1].astype(np.float64) @ weights.T.astype(np.float64) + bias), axis=1)[:, :k]
    np.testing.assert_array_equal(full_ids[:1], want)


def test_top_k_outputs_the_kernels_would_write_past_are_refused():
    """score_topk / blend_topk are called with output blocks; one of K = 0 (the kernels write slot
    K - 1) or of another shape or dtype is refused before any kernel runs."""
    from slidepy.neighbours import NeighbourBank, blend_topk

    hidden, weights, bias = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.zeros(4, np.float32)
    bank = NeighbourBank(np.ones((2, 3), np.float32) / np.sqrt(3), np.array([0, 1, 2]), np.array([0, 1], np.int32),
                         1, 0.5, 0.05)
    bad = [(np.empty((2, 0), np.int32), np.empty((2, 0), np.float32), "k must be an int >= 1, got 0"),
           (np.empty((3, 2), np.int32), np.empty((3, 2), np.float32), "top-k outputs must be \\(2, K\\)"),
           (np.empty((2, 2), np.int64), np.empty((2, 2), np.float32), "int32 ids"),
           (np.empty((2, 2), np.int32), np.empty((2, 3), np.float32), "top-k outputs")]
    for ids, vals, message in bad:
        with pytest.raises(ValueError, match=message):
            score_topk(hidden, weights, bias, ids, vals)
        with pytest.raises(ValueError, match=message):
            blend_topk(hidden, weights, bias, bank, ids, vals)
