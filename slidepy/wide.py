"""The wide term: a hashed sparse linear score of the raw input features, added to the output logits.

Why. The network scores label n as w_n . h(x): every (input feature, label) association goes
through the D-dimensional last hidden layer that all labels share. On long-tailed extreme
classification (most labels with a handful of samples) that bottleneck loses to linear rankers
over the raw features (Omikuji, PECOS), which can tie one rare word straight to one rare label.
The wide term (Cheng et al. 2016, "Wide & Deep") gives each label that direct path back:

    logit(n) = w_n . h(x) + b_n + sum_j x_j * V[slot(f_j, n)]

over the sample's non-zero features (f_j, x_j). V is one flat float32 table of M = 2^bits slots
shared by all (feature, label) pairs through a multiplicative hash (the hashing trick; Weinberger
et al. 2009), laid out in rows of 2^ROW_BITS slots, one row per feature (see ROW_BITS); a
collision merely shares one weight between two pairs.

Cost. Per sample and active output neuron, nnz table reads in training (and as many updates for
the neurons whose gradient is not negligible), nothing that grows with the hidden width. In exact
inference the network scores every label, and the wide term re-ranks the network's top C
candidates only (`rerank_rows`), so scoring all N labels stays one BLAS product.

Update. Adagrad per slot (Duchi et al. 2011) on each sample's own gradient, applied in its backward
pass, Hogwild like the rest of training: rarely seen pairs keep large steps. Its accumulator is a
second (M,) table, starting at ACCUM_START. With one thread chunk the updates run in a fixed
order, so deterministic runs stay bit-identical.

When it pays (measured; README "How it works"): on many labels with few samples each, early in
training. It over-fits over many passes, and on small label sets (Bibtex, Delicious) it hurts.

Shape letters: M table slots, B samples, C candidates, K top-k.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .constants import INTERNAL
from .scoring import push_topk

# Every accumulator starts here (Adagrad's initial accumulator, as TensorFlow's 0.1): without it
# the first step of a slot is lr whatever its gradient, so the tiny gradients of the many confident
# negatives would move their slots as far as the labels move theirs, and with M slots shared by all
# pairs that noise buries the labels' weights (measured on DebianDeps: every slot moved, mean
# |weight| 0.31, test P@1 below the network's alone).
ACCUM_START = 0.1
# Per-sample logit gradients smaller than this are skipped: their steps would be below
# lr * MIN_GRAD / sqrt(ACCUM_START), and skipping them saves most of the table writes.
MIN_GRAD = 1e-3

# Multipliers of the slot hash (odd 64-bit constants: golden ratio, splitmix64's, Murmur3's).
_FEATURE_MULT = np.uint64(0x9E3779B97F4A7C15)
_LABEL_MULT = np.uint64(0xC2B2AE3D27D4EB4F)
_MIX_MULT = np.uint64(0xBF58476D1CE4E5B9)
# Slots come in rows of 2^ROW_BITS (8 KiB), one row per feature (features hash to rows): a sample's
# look-ups, nnz features x the active labels, then fall in nnz rows that stay in cache and in the
# TLB, where slots spread over the whole table would miss on nearly every look-up (measured on
# DebianDeps: training 1.7x slower with spread slots). Two pairs of different features still
# share a slot with probability 1 / M; two labels of one feature with 1 / 2^ROW_BITS.
ROW_BITS = 11


class WideParams(NamedTuple):
    """The wide term's trainable state; both (0,) when the network has none."""

    weights: np.ndarray  # (M,) float32, M a power of two
    accum: np.ndarray  # (M,) float32 Adagrad: each slot's sum of squared gradients


def make_wide(bits: int) -> WideParams:
    """Zeroed weights and accumulators at ACCUM_START, 2^bits slots each, or empty tables for
    bits == 0 (no wide term)."""
    size = 0 if bits == 0 else 1 << int(bits)
    return WideParams(np.zeros(size, np.float32), np.full(size, ACCUM_START, np.float32))


def wide_bits(n_pairs: float) -> int:
    """Table size (log2) for a data set whose samples hold `n_pairs` (feature, label) pairs in all
    (sum over training samples of non-zeros x labels): about two slots per pair, so that the
    positive pairs, which carry the signal, rarely share a slot, clipped to 2^20 .. 2^25 slots
    (4 .. 128 MiB per table)."""
    return int(np.clip(np.ceil(np.log2(max(2.0 * n_pairs, 1.0))), 20, 25))


@njit(cache=True)
def table_layout(size):
    """(row_bits, col_bits) of a table of size = 2^(row_bits + col_bits) >= 2 slots: 2^row_bits
    rows of 2^col_bits slots, col_bits = min(log2(size), ROW_BITS)."""
    bits = 0
    while (np.int64(1) << bits) < size:
        bits += 1
    col_bits = min(bits, ROW_BITS)
    return bits - col_bits, col_bits


@njit(cache=True, **INTERNAL)
def row_start(feature, row_bits, col_bits):
    """First slot of the row of `feature`: the top row_bits bits of feature * a multiplier."""
    if row_bits == 0:
        return np.uint64(0)
    return ((np.uint64(feature) * _FEATURE_MULT) >> np.uint64(64 - row_bits)) << np.uint64(col_bits)


@njit(cache=True)
def slot(feature, label, row_bits, col_bits):
    """Table slot of (feature, label): its feature's row start plus a column from the top col_bits
    bits of a product that mixes both (multiplicative hashing)."""
    mixed = ((np.uint64(feature) * _MIX_MULT) ^ (np.uint64(label) * _LABEL_MULT)) * _FEATURE_MULT
    return row_start(feature, row_bits, col_bits) + (mixed >> np.uint64(64 - col_bits))


@njit(fastmath=True, cache=True, **INTERNAL)
def wide_logit(weights, row_bits, col_bits, x_ids, x_vals, nx, label):
    """sum_j x_vals[j] * weights[slot(x_ids[j], label)] for j < nx."""
    s = np.float32(0.0)
    for j in range(nx):
        s += x_vals[j] * weights[slot(x_ids[j], label, row_bits, col_bits)]
    return s


@njit(cache=True)
def add_wide_logits(weights, x_ids, x_vals, nx, ids, n_act, logits):
    """logits[a] += wide_logit(ids[a]) for a < n_act: the wide term of each active neuron,
    feature by feature, so that the look-ups walk one row at a time."""
    row_bits, col_bits = table_layout(weights.shape[0])
    for j in range(nx):
        f = x_ids[j]
        v = x_vals[j]
        for a in range(n_act):
            logits[a] += v * weights[slot(f, ids[a], row_bits, col_bits)]


@njit(cache=True)
def adagrad_wide(wide, x_ids, x_vals, nx, ids, n_act, grads, grad_scale, lr):
    """One sample's Adagrad step on the slots of its active neurons: for each a with a per-sample
    gradient d = grads[a] / grad_scale of at least MIN_GRAD in size, and each feature j,
    g = d * x_vals[j]; accum += g^2; weights -= lr * g / sqrt(accum).
    Hogwild: threads update the shared tables unsynchronised, on purpose (see kernels.py)."""
    weights = wide.weights
    accum = wide.accum
    row_bits, col_bits = table_layout(weights.shape[0])
    inv_scale = np.float32(1.0 / grad_scale)
    for a in range(n_act):
        g_out = grads[a] * inv_scale
        if abs(g_out) < MIN_GRAD:
            continue
        for j in range(nx):
            g = g_out * x_vals[j]
            if g == 0.0:
                continue
            s = slot(x_ids[j], ids[a], row_bits, col_bits)
            acc = accum[s] + g * g
            accum[s] = acc
            weights[s] -= lr * g / np.sqrt(acc)


# -- exact inference: re-rank the network's candidates ------------------------------------------


@njit(cache=True, **INTERNAL)
def rerank_row(weights, row_bits, col_bits, x_ids, x_vals, cand_ids, cand_scores, top_ids, top_vals):
    """top_ids/top_vals (K,) = the K best of cand_scores[c] + wide_logit(cand_ids[c]) over the
    candidates (C,) (-1 entries skipped), descending."""
    k = top_ids.shape[0]
    for j in range(k):
        top_ids[j] = -1
        top_vals[j] = -np.inf
    nx = x_ids.shape[0]
    for c in range(cand_ids.shape[0]):
        n = cand_ids[c]
        if n < 0:
            continue
        push_topk(top_ids, top_vals, k, n, cand_scores[c] + wide_logit(weights, row_bits, col_bits, x_ids, x_vals, nx, n))


@njit(parallel=True, cache=True)
def rerank_rows(weights, x_indptr, x_indices, x_values, rows, cand_ids, cand_scores, top_ids, top_vals):
    """rerank_row for every sample of a block: dataset rows `rows` (B,), their network candidates
    cand_ids (B, C) int32 / cand_scores (B, C) float32 (logits, descending), into top_ids (B, K)
    int32 / top_vals (B, K) float32. One sample per thread, each writing its own outputs."""
    row_bits, col_bits = table_layout(weights.shape[0])
    for b in prange(rows.shape[0]):
        i = rows[b]
        x0 = x_indptr[i]
        x1 = x_indptr[i + 1]
        rerank_row(weights, row_bits, col_bits, x_indices[x0:x1], x_values[x0:x1], cand_ids[b], cand_scores[b], top_ids[b],
                   top_vals[b])


def rerank_candidates(n_labels: int, k: int) -> int:
    """C, the network's candidates the wide term re-ranks in exact inference: 20 per requested
    rank and at least 200 (a label the wide term lifts into the top k is rarely below the
    network's 200th), at most every label."""
    return int(min(n_labels, max(200, 20 * k)))
