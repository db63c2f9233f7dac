"""Exact scoring of the output layer: a BLAS product per block of samples, then a parallel
partial top-k that adds the bias on the fly.

Why not NumPy's argpartition: on DebianDeps (22,875 labels, hidden 128) it took 2.4x as long as
the (64, 128) x (128, 22875) product it followed, single-threaded, plus a negated copy and a
separate bias pass. A k-slot insertion list per row reads each logit once, rarely branches once the
list is warm (only logits above the current k-th enter), and runs one row per thread.

Shape letters: B samples in a block, N output neurons, K top-k.
"""

import numpy as np
from numba import njit, prange

from .constants import INTERNAL

# Logits of one block stay under this many floats (64 MiB), whatever the label count.
BLOCK_FLOATS = 1 << 24


def check_k(k) -> None:
    """Refuse a top-k that is no int >= 1: the top-k kernels index slot k - 1 unchecked (k = 0
    wrote before its buffer and corrupted the heap)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")


def check_topk_out(n_rows: int, top_ids: np.ndarray, top_vals: np.ndarray) -> None:
    """Refuse top-k outputs the kernels would write past: (B, K) int32 ids and float32 values,
    K >= 1 (check_k), one row per scored row."""
    if (top_ids.ndim != 2 or top_ids.shape != top_vals.shape or top_ids.shape[0] != n_rows
            or top_ids.dtype != np.int32 or top_vals.dtype != np.float32):
        raise ValueError(f"top-k outputs must be ({n_rows}, K) int32 ids and float32 values, got "
                         f"{top_ids.shape} {top_ids.dtype} and {top_vals.shape} {top_vals.dtype}")
    check_k(top_ids.shape[1])


@njit(cache=True)
def push_topk(top_ids, top_vals, k, n_id, val):
    """Insert (n_id, val) into the descending top-k lists if it beats the current k-th, a tie
    going to the lower id (so the lists do not depend on the order ids are offered in: an exact
    scan offers them in order, the LSH candidates and the input space's neighbours as they are
    reached); NaN never enters."""
    last = k - 1
    if not (val > top_vals[last] or (val == top_vals[last] and 0 <= n_id < top_ids[last])):
        return
    j = last
    while j > 0 and (top_vals[j - 1] < val or (top_vals[j - 1] == val and top_ids[j - 1] > n_id)):
        top_vals[j] = top_vals[j - 1]
        top_ids[j] = top_ids[j - 1]
        j -= 1
    top_vals[j] = val
    top_ids[j] = n_id


# Logits a row's top-k scan tests at once against the current k-th: once the list is warm almost
# no chunk holds a logit above it, and the test (an OR over the chunk's comparisons) is SIMD, where
# the insertion scan compares and branches one logit at a time. 1,024 x 50,003 logits, k 5, 2
# threads: 56 ms against 300 ms one by one, with identical lists.
TOPK_CHUNK = 16


@njit(cache=True, **INTERNAL)
def topk_row(logits, bias, top_ids, top_vals):
    """The K largest logits[n] + bias[n] of one row, descending, ties to the lower id; top_ids
    (K,) int32 and top_vals (K,) float32 are overwritten (-1 / -inf where N < K).

    A chunk of TOPK_CHUNK logits none of which beats the k-th at its start is skipped: the k-th
    only rises within the chunk, so none of them would have entered."""
    k = top_ids.shape[0]
    for j in range(k):
        top_ids[j] = -1
        top_vals[j] = -np.inf
    n_all = logits.shape[0]
    start = 0
    while start + TOPK_CHUNK <= n_all:
        kth = top_vals[k - 1]
        hit = False
        for j in range(start, start + TOPK_CHUNK):
            hit |= logits[j] + bias[j] > kth
        if hit:
            for j in range(start, start + TOPK_CHUNK):
                # int32 id, as infer_batch passes: one compile of push_topk serves both
                push_topk(top_ids, top_vals, k, np.int32(j), logits[j] + bias[j])
        start += TOPK_CHUNK
    for j in range(start, n_all):
        push_topk(top_ids, top_vals, k, np.int32(j), logits[j] + bias[j])


@njit(parallel=True, cache=True)
def topk_rows(logits, bias, top_ids, top_vals):
    """topk_row for every row of logits (B, N): one row per thread, each writing its own outputs."""
    for i in prange(logits.shape[0]):
        topk_row(logits[i], bias, top_ids[i], top_vals[i])


def block_rows(n_labels: int, most: int = 1024) -> int:
    """Samples per scoring block: as many as keep the block's logits under BLOCK_FLOATS."""
    return int(max(8, min(most, BLOCK_FLOATS // max(1, n_labels))))


# The product's rows come in whole tiles of SCORE_ROW_TILE (zero rows pad the last): BLAS computes
# every row of a full tile with the same code wherever it sits, but a ragged last tile with other
# code, so a sample's scores changed in the last bit with the number of samples scored beside it
# (scikit-learn's check_methods_subset_invariance found it once BLAS ran on one thread). That holds
# where it was found (Intel); on an AMD EPYC VM OpenBLAS 0.3.23 (DYNAMIC_ARCH) picks its kernels by
# the whole block's row count, even on one thread, so there a score moves by the rounding of its
# terms' sum in another order (5e-7 relative seen), which the tests allow; exact agreement would
# take a float64 product.
SCORE_ROW_TILE = 64


def tiled_logits(hidden: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """hidden (B, D) @ weights (N, D).T as (B, N) float32, the rows computed in whole tiles of
    SCORE_ROW_TILE, so that a sample's scores do not depend on the samples beside it."""
    b = hidden.shape[0]
    padded = -(-b // SCORE_ROW_TILE) * SCORE_ROW_TILE
    if padded != b:
        tiles = np.zeros((padded, hidden.shape[1]), np.float32)
        tiles[:b] = hidden
        hidden = tiles
    return (hidden @ weights.T)[:b]


def score_topk(hidden: np.ndarray, weights: np.ndarray, bias: np.ndarray, top_ids: np.ndarray,
               top_vals: np.ndarray) -> None:
    """Exact top-K of hidden (B, D) @ weights (N, D).T + bias for a block, into top_ids (B, K) int32
    and top_vals (B, K) float32."""
    check_topk_out(hidden.shape[0], top_ids, top_vals)
    topk_rows(tiled_logits(hidden, weights), bias, top_ids, top_vals)
