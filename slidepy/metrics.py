"""Ranking metrics for extreme classification: precision@k and nDCG@k.

Shape letters:
    B  samples               N  labels (output neurons)
    W  width of a top-k table (predictions kept per sample)
    S  number of requested cut-offs `ks`

Inputs:
    top_ids    (B, W) int32    predicted label ids per sample, best first; -1 (any negative id)
                               marks an empty slot when a sample has fewer than W candidates
    y_indptr   (B+1,) int64    CSR row pointers of the true labels
    y_indices  (nnz,) int32    true label ids; a sample may have no labels, and a label listed
                               twice counts once (labels are a set)

Definitions (those of the Extreme Classification Repository):
    P@k     = mean over samples of |top-k  intersect  labels| / k
    DCG@k   = sum_{r<k} [top_r in labels] / log2(r + 2)
    IDCG@k  = sum_{r < min(k, |labels|)} 1 / log2(r + 2)
    nDCG@k  = mean over samples of DCG@k / IDCG@k

Conventions:
  * The denominator of P@k is always k, also when a sample has fewer than k labels or fewer
    than k predictions.
  * A sample with no labels scores 0 on both metrics and stays in the mean (the repository's
    convention). Pass `ignore_empty=True` to average over the labelled samples only.
  * If k > W, the missing ranks count as empty slots (misses).
  * A label id predicted twice in one row counts once, at its first rank (top-k is a set).
  * With no samples to average (B = 0, or every sample empty with `ignore_empty`) a metric is 0.0.

Three tiers: the public functions validate and convert -> `score_batch` (a serial loop over samples) ->
`_score_sample` (one row, writes its own output row).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from .constants import INTERNAL

__all__ = [
    "precision_at_k",
    "ndcg_at_k",
    "evaluate_topk",
    "score_topk_per_sample",
    "topk_from_scores",
]


@njit(cache=True, **INTERNAL)
def _score_sample(top_row, labels, ks, k_top, prec_row, ndcg_row):
    """Score one sample for every cut-off in `ks`, writing `prec_row[s]` and `ndcg_row[s]`.

    top_row (W,) int32, labels (n,) int32 (may repeat), ks (S,) int64, k_top = max(ks),
    prec_row / ndcg_row (S,) float64. Label lists are short, so membership is a linear scan.
    """
    # Distinct labels, counted only up to k_top: IDCG@k never needs more.
    n_unique = 0
    for j in range(labels.shape[0]):
        if n_unique >= k_top:
            break
        seen = False
        for q in range(j):
            if labels[q] == labels[j]:
                seen = True
                break
        if not seen:
            n_unique += 1

    width = top_row.shape[0]
    hits = 0
    dcg = 0.0
    idcg = 0.0
    for r in range(k_top):
        gain = 1.0 / np.log2(r + 2.0)
        if r < width:
            pred = top_row[r]
            if pred >= 0:
                repeated = False
                for q in range(r):
                    if top_row[q] == pred:
                        repeated = True
                        break
                if not repeated:
                    for j in range(labels.shape[0]):
                        if labels[j] == pred:
                            hits += 1
                            dcg += gain
                            break
        if r < n_unique:
            idcg += gain
        for s in range(ks.shape[0]):
            if ks[s] == r + 1:
                prec_row[s] = hits / ks[s]
                ndcg_row[s] = dcg / idcg if idcg > 0.0 else 0.0


@njit(cache=True)
def score_batch(top_ids, y_indptr, y_indices, ks, k_top, prec, ndcg):
    """Every sample in turn; sample i writes prec[i] and ndcg[i], both (B, S) float64. Serial: a
    sample costs well under a microsecond, so threads would save milliseconds on the largest test
    sets, and a parallel loop costs about half a second more to compile on every cold start."""
    for i in range(top_ids.shape[0]):
        labels = y_indices[y_indptr[i] : y_indptr[i + 1]]
        _score_sample(top_ids[i], labels, ks, k_top, prec[i], ndcg[i])


def _as_int_array(name: str, arr, ndim: int, dtype) -> np.ndarray:
    """Check `arr` is an integer array of `ndim` dims and return it C-contiguous as `dtype`."""
    arr = np.asarray(arr)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and arr.size:  # an empty list arrives as float64
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype != dtype and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"{name} has values outside the {np.dtype(dtype)} range")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_ks(ks) -> np.ndarray:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    if not isinstance(ks, Iterable):
        raise ValueError(f"ks must be an int or a sequence of ints, got {ks!r}")
    ks = list(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every k must be a positive int, got {k!r}")
    return np.asarray(ks, dtype=np.int64)


def _check_inputs(top_ids, y_indptr, y_indices):
    top_ids = _as_int_array("top_ids", top_ids, 2, np.int32)
    y_indptr = _as_int_array("y_indptr", y_indptr, 1, np.int64)
    y_indices = _as_int_array("y_indices", y_indices, 1, np.int32)
    n_samples = top_ids.shape[0]
    if y_indptr.shape[0] != n_samples + 1:
        raise ValueError(
            f"y_indptr has {y_indptr.shape[0]} entries but top_ids has {n_samples} rows "
            f"(expected {n_samples + 1})"
        )
    if y_indptr[0] != 0:
        raise ValueError(f"y_indptr must start at 0, starts at {y_indptr[0]}")
    if np.any(np.diff(y_indptr) < 0):
        raise ValueError("y_indptr must be non-decreasing")
    if y_indptr[-1] != y_indices.shape[0]:
        raise ValueError(
            f"y_indptr ends at {y_indptr[-1]} but y_indices has {y_indices.shape[0]} entries"
        )
    return top_ids, y_indptr, y_indices


def score_topk_per_sample(top_ids, y_indptr, y_indices, ks=(1, 3, 5)):
    """Per-sample P@k and nDCG@k.

    Returns `(prec, ndcg)`, both (B, S) float64, column s for `ks[s]`. Samples with no labels
    get 0 in both. Raises ValueError on malformed inputs.
    """
    top_ids, y_indptr, y_indices = _check_inputs(top_ids, y_indptr, y_indices)
    ks_arr = _check_ks(ks)
    n_samples = top_ids.shape[0]
    prec = np.zeros((n_samples, ks_arr.shape[0]), dtype=np.float64)
    ndcg = np.zeros((n_samples, ks_arr.shape[0]), dtype=np.float64)
    if n_samples:
        score_batch(top_ids, y_indptr, y_indices, ks_arr, int(ks_arr.max()), prec, ndcg)
    return prec, ndcg


def _means(per_sample: np.ndarray, ks: np.ndarray, y_indptr, ignore_empty: bool, hits: bool = False) -> dict:
    """Each column's mean over the samples (those with labels, with `ignore_empty`). `hits`: the
    columns are precisions hits / k, and the mean is taken as total hits / (samples x k), the
    float nearest the exact figure (a mean of the rounded 1/k steps printed 0.11239999999999943)."""
    if ignore_empty:
        indptr = np.asarray(y_indptr, dtype=np.int64)
        per_sample = per_sample[np.diff(indptr) > 0]
    n = per_sample.shape[0]
    if n == 0:
        return {int(k): 0.0 for k in ks}
    if hits:
        counts = np.rint(per_sample * ks.astype(np.float64)).sum(axis=0)  # whole numbers, exact in float64
        return {int(k): float(counts[s] / (n * int(k))) for s, k in enumerate(ks)}
    means = per_sample.mean(axis=0)
    return {int(k): float(means[s]) for s, k in enumerate(ks)}


def precision_at_k(top_ids, y_indptr, y_indices, ks=(1, 3, 5), ignore_empty=False) -> dict:
    """Mean precision@k for each k in `ks`: `{k: float}`.

    top_ids (B, W) int, y_indptr (B+1,) int, y_indices (nnz,) int; see the module docstring for
    the definition and conventions. Samples without labels score 0 and count in the mean unless
    `ignore_empty=True`.
    """
    prec, _ = score_topk_per_sample(top_ids, y_indptr, y_indices, ks)
    return _means(prec, _check_ks(ks), y_indptr, ignore_empty, hits=True)


def ndcg_at_k(top_ids, y_indptr, y_indices, ks=(1, 3, 5), ignore_empty=False) -> dict:
    """Mean nDCG@k for each k in `ks`: `{k: float}`. Same inputs and conventions as
    `precision_at_k`."""
    _, ndcg = score_topk_per_sample(top_ids, y_indptr, y_indices, ks)
    return _means(ndcg, _check_ks(ks), y_indptr, ignore_empty)


def evaluate_topk(top_ids, y_indptr, y_indices, ks=(1, 3, 5), ignore_empty=False) -> dict:
    """Both metrics in one pass: `{"P@1": .., "P@3": .., ..., "nDCG@1": .., ...}` (floats)."""
    prec, ndcg = score_topk_per_sample(top_ids, y_indptr, y_indices, ks)
    ks_arr = _check_ks(ks)
    out = {}
    for k, v in _means(prec, ks_arr, y_indptr, ignore_empty, hits=True).items():
        out[f"P@{k}"] = v
    for k, v in _means(ndcg, ks_arr, y_indptr, ignore_empty).items():
        out[f"nDCG@{k}"] = v
    return out


def topk_from_scores(scores, k: int):
    """Top-k of dense scores, for tests and small evaluations.

    scores (B, N) float (float32 expected). Returns `(ids (B, k) int32, vals (B, k))` with `vals`
    in the dtype of `scores`, each row in descending score order, ties broken by the lower id.
    If k > N the extra slots hold id -1 and value -inf. NaN scores raise ValueError.
    Memory is O(B * N): evaluate large sets in batches.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (B, N), got shape {scores.shape}")
    if scores.dtype.kind != "f":
        raise ValueError(f"scores must be floating point, got dtype {scores.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_samples, n_labels = scores.shape
    k = int(k)
    kk = min(k, n_labels)
    ids = np.full((n_samples, k), -1, dtype=np.int32)
    vals = np.full((n_samples, k), -np.inf, dtype=scores.dtype)
    if n_samples == 0 or kk == 0:
        return ids, vals

    # Threshold = the kk-th largest score of each row. Keep everything strictly above it, then
    # fill up with the lowest-id entries equal to it, so each row selects exactly kk entries.
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1 : kk]
    above = scores > kth
    equal = scores == kth
    n_fill = kk - above.sum(axis=1, keepdims=True)
    chosen = above | (equal & (np.cumsum(equal, axis=1) <= n_fill))
    # np.nonzero walks rows in order and ids ascending within a row: exactly kk per row.
    sel_ids = np.nonzero(chosen)[1].reshape(n_samples, kk)
    sel_vals = np.take_along_axis(scores, sel_ids, axis=1)
    # Stable sort on -value keeps ascending ids among ties.
    order = np.argsort(-sel_vals, axis=1, kind="stable")
    ids[:, :kk] = np.take_along_axis(sel_ids, order, axis=1)
    vals[:, :kk] = np.take_along_axis(sel_vals, order, axis=1)
    return ids, vals
