"""Per-label linear leaves over the input rows that re-rank the network's shortlist at prediction,
as the tree classifiers' leaves rank the labels their matcher picked (PECOS XR-Linear, Omikuji).

Why. The network scores every label through one hidden layer of D units: a rank-D view of the
feature -> label association. The trees' per-label linear models fit it feature by feature, and
on a label's own rare features they win. Trained on the network's own hard negatives, a linear
leaf per label corrects the network where it is unsure, at the cost of a sparse dot product for
each of a sample's K shortlisted labels.

What. For each label l, an L2-loss linear SVM (Hsieh et al. 2008's dual coordinate descent with
shrinking and a random order each pass, as liblinear and PECOS train their leaves) on the unit-L2
input rows plus a bias feature of 1, over the training samples that have l (positives), whose
network top CONFUSION_DEPTH x K labels (confusion_depth) hold it (negatives the network confuses
with l: the matcher-aware negatives of XR-Transformer), and samples drawn at random
(random_negatives_per_label: so that every leaf's scores are on one footing). The shortlists come
from the network's own exact scoring of (at most SHORTLIST_SAMPLES of) the training samples, fewer
where that would cost more than EXACT_SHORTLIST_MACS (shortlist_plan). Weights under
PRUNE_THRESHOLD are dropped (PECOS' 0.1): the leaves keep a few percent of the pairs seen.

At prediction a shortlisted label's leaf score s becomes exp(-max(1 - s, 0)^3) (PECOS' l3-hinge
post-processor, 1 at the margin and beyond) and its score is (1 - weight) x log(network score) +
weight x log of that: a geometric blend, so below weight 1 a leaf can demote a label the network is
unsure of but not lift one it ruled out (at 1 the leaves alone rank the shortlist). Measured on
DebianDeps' recipe network (5,000 test samples, P@1 / P@3 / P@5; network with its votes 0.7576 /
0.5227 / 0.4056): weight 0.05 0.7628 / 0.5283 / 0.4092, 0.1 0.7674 / 0.5300 / 0.4120, 0.15 0.7712 /
0.5309 / 0.4108, 0.3 0.7690 / 0.5232 / 0.4001; the leaves alone 0.5600. On a generated bag of item
ids (bench/measured-2026-12-07/transfer-items-tags/, network 0.5316 / 0.2494 / 0.1612): 0.1 0.5414 /
0.2495 / 0.1594. So 0.1 then, where P@5 held on both (WEIGHT is 0.2 since the leaves converge: see
there). Leaves trained against the samples of the label's k-means cluster instead of the shortlists
(PECOS' own negatives) added 0.2-0.3 P@1 on DebianDeps: the network's confusions are the negatives
that matter (bench/measured-2026-12-07/reranker/). (Those figures predate the random negatives, with
which the best weight came apart by data; model.reranker.weight "auto" chooses it, and how deep into
the network's ranking the leaves reach, on a held-out slice: validation_rows, choose_blend, and the
comments at SHARES, DEPTHS and COSTS.)

Tiers: `fit_leaves` (Python: the shortlists' (label, sample) pairs, blocks of labels) ->
`fit_leaves_block` (parallel over thread chunks of labels, each with its own (F + 1,) weights and
copy of a label's rows: `gather_rows`) -> `fit_leaf` (one label's coordinate descent) and
`keep_weights` (its pruning), then `sort_kept` (parallel over labels: the kept weights by
feature); `score_leaves` -> `score_leaves_rows` (parallel over thread chunks of samples, each with
its own (F + 1,) scratch row) -> `score_leaf_row` (one sample's shortlist); `training_pairs` (a
counting sort by label: `bucket_codes`) -> `sort_label_pairs` and `gather_label_pairs` (parallel
over labels, each its own bucket).

Shapes: B samples, F input features, N labels, K labels shortlisted per sample (the leaves
train against CONFUSION_DEPTH x model.reranker.shortlist, re-rank Leaves.depth), P (label,
sample) pairs a block of labels trains on, E leaf weights kept.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .constants import INTERNAL
from .metrics import score_topk_per_sample
from .neighbours import unit_scales
from .rng import generator

# The leaves' share of the blended log-score where none is chosen: on small sets, which hold nothing
# out, and where no other share wins the slice by EVIDENCE. 0.2 since the leaves converge
# (MAX_PASSES): on the slices of the recipe's runs, 0.2 scored above 0.1 on DebianDeps (mean P@k
# +0.20 points), a quarter of it (+0.42) and Delicious (+0.08), below on DebianNextWord (-0.04),
# and 15 s and 30 s runs on DebianDeps chose 0.2 by the evidence rule. The same networks on their
# test splits, P@1 / P@5 at 0.2 against 0.1: DebianDeps +0.35 / +0.21 points, its quarter +0.47 /
# +0.29, Delicious +0.09 / -0.08, Bibtex +0.28 / -0.05, DebianNextWord +0.11 / +0.05
# (bench/measured-2026-12-07/converged-leaves/).
WEIGHT = 0.2
# model.reranker.weight "auto" chooses the share on a slice of training samples that the network
# never trains on (validation_rows): the one of SHARES whose re-ranking scores best there (the
# mean of P@1, P@3 and P@5). The best share follows how well the leaves rank beside the network, and that
# differs by data: 0.1-0.2 on Delicious, Bibtex and DebianDeps, 0.5 on a bag of item ids and on
# a many-tags shape, where the leaves alone outrank the network (bench/measured-2026-12-07/
# random-negatives/). No rule of the data's shape separated them; a held-out slice does. The
# slice costs the network that many samples, so it is small: VALIDATION_SHARE of the training
# set, at most VALIDATION_SAMPLES. Where the share matters it moves P@k by points (a bag of item
# ids: 2 P@1 points from 0.1 to 0.5), which a thousand samples resolve; where it does not, a
# choice among near equals costs little. Smaller sets hold out MIN_VALIDATION, as long as that
# is at most MAX_VALIDATION_SHARE of them; still smaller ones hold nothing out and take WEIGHT.
# MIN_VALIDATION resolves the gains that matter: on a generated shape of few, long documents (14,000
# samples, 30,000 labels, 11.5 a sample) the leaves alone beat the default blend by 7 points of mean
# P@k on 512 held-out samples, 15 standard errors of the paired differences, and the run scored
# 0.991 / 0.940 / 0.844 against 0.976 / 0.858 / 0.730 with nothing held out. A smaller gain keeps
# WEIGHT under the evidence rule, however small the slice. The slice's cost: on Delicious (12,920
# samples, where the share stayed the default) 512 held out cost 0.26 P@1 points on the mean of three seeds,
# 1,024 cost 0.56 (bench/measured-2026-12-07/small-sets/).
# Share 1 leaves the network the matcher's part alone (which labels the leaves rank), as in the
# trees: on the generated many-tags and few-long-documents shapes the slice ranked it best, at
# the deepest depth (tags P@3 / P@5 0.945 / 0.870 at (0.9, 200) before it and depth 8 were on
# offer, 0.952 / 0.882 at (1, 400) after; bench/measured-2026-12-07/small-sets/).
SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
# A share other than WEIGHT is taken only where it beats WEIGHT on the slice by this many standard
# errors of the samples' paired differences. The slice is a random part of the training set; a
# test split drawn apart (other documents, a later time) can favour the leaves less. On
# DebianNextWord (overlapping 3-word windows of the same texts) the best share on 2,048 held-out
# samples was 0.3 by 0.15 points of mean P@k, and it cost the test split half a point of P@1 (0.1570
# against 0.1616 at 0.1, the same network); the items and tags shapes' 0.5 won by 1.2 and 2 points.
EVIDENCE = 2.0
# How deep "auto" lets the leaves reach: they re-rank the network's top d x model.reranker.shortlist
# labels for d of DEPTHS (d = 1, model.reranker.shortlist itself, is the default). At a small
# share a label past the network's 50th has too low a network score to climb, so the depth
# changes nothing; where
# the leaves rank as well as the network (a large share) they bring such labels back. On the
# generated bag of item ids (3.2 labels a sample) the network's top 50 held 32% of the test labels
# and its top 200 41%; re-ranking the top 200 at 0.9 gave P@1 / P@5 0.598 / 0.195 against the top
# 50's best, 0.572 / 0.175 at 0.7 (bench/measured-2026-12-07/depth/); on the many-tags shape the
# top 400 beat the top 200 by 0.5 points of mean P@k on the slice (small-sets/). The cost is the
# leaves' scores for d times as many labels at prediction.
DEPTHS = (1, 2, 4, 8)
# The leaves learn against the network's top CONFUSION_DEPTH x model.reranker.shortlist labels of
# each shortlisted training sample: more of its confusions, at one scoring pass. Against the top
# 100 instead of 50: items P@1 0.598 -> 0.603 (top 200 at 0.9), tags P@5 0.857 -> 0.864 (512 random
# negatives a label, 0.9), DebianDeps, Bibtex and Delicious level within 0.3 points at their
# shares, for 30-40% more fitting (bench/measured-2026-12-07/depth/).
CONFUSION_DEPTH = 2
# At most CONFUSION_SHARE of the labels, though (confusion_depth). Where CONFUSION_DEPTH x shortlist
# is a large part of a small label set, the "confusions" are most labels: the background that the
# random negatives already give every leaf, at a pair each. On Bibtex (159 labels) the top 100 put
# 549,000 (label, sample) pairs before the leaves, about 3,500 of the 4,880 samples a label; the top
# 20 (an eighth) 242,000, and the leaves took 0.22 s instead of 0.37 s at the same P@k (three seeds
# each, 4 epochs, share 0.2: P@1 0.6501-0.6549 against 0.6501-0.6557, P@5 0.2964-0.3001 against
# 0.2988-0.2994; bench/measured-2026-12-07/small-labels/). From 800 labels on it changes nothing.
CONFUSION_SHARE = 0.125
VALIDATION_SAMPLES = 2048
VALIDATION_SHARE = 0.025
MIN_VALIDATION = 512
MAX_VALIDATION_SHARE = 0.05
VALIDATION_STREAM = 0x525256  # "RRV": the random stream that draws the slice (rng.py)
COST = 1.0  # the SVM's C (liblinear's and PECOS' default) on unit rows
# "auto" chooses the SVM's C too, among COSTS, where the share it chose at COST is RANKING_SHARE or
# more: there the leaves carry the ranking and their fit shows. It climbs: it fits the leaves at the
# next C and takes that C's best triple (C, share, depth) where it beats the choice so far by
# EVIDENCE standard errors on the slice (choose_blend), and stops at the first C that does not.
# Below that share the network's ranking dominates and C moved nothing: DebianDeps' and Delicious'
# best at C = 4 passed their best at 1 by 0.02 and -0.3 points of mean P@k on the slice. On
# generated shapes of few positives a label and tf-idf rows the slice's best rose with C (few, long
# documents: 0.9293, 0.9421, 0.9462 at 1, 4, 16; the mid shape 0.7389, 0.7596, 0.7661, and 0.7673
# at 64), and so did the test split (mid, one network, with its votes: P@1 / P@3 / P@5 0.9598 /
# 0.7335 / 0.5323, 0.9710 / 0.7589 / 0.5482, 0.9738 / 0.7671 / 0.5529); on a bag of item ids and a
# many-tags shape C = 4 did not win (+0.19 and 0.00 points), at a cost of one fit (items 3 s, tags
# 32 s). Each step up costs a fit (wiki 15 s). C = 2 won nothing that 4 did not
# (bench/measured-2026-12-07/leaf-cost/).
COSTS = (COST, 4.0, 16.0)
RANKING_SHARE = 0.5
PRUNE_THRESHOLD = 0.1  # |weight| kept (PECOS' default); the bias is always kept
TOLERANCE = 0.1  # coordinate descent stops when no projected gradient is larger (liblinear's eps)
# Passes over a label's samples at most. Each pass takes them in a new random order (fit_leaf), as
# liblinear does: in one fixed order the descent crept, and 9% of DebianDeps' labels (69% of the
# fitting work) stopped at this cap unconverged; on a generated many-tags shape the converged
# leaves (share 1, top 400) scored P@3 / P@5 0.959 / 0.894 against 0.953 / 0.884, on a bag of item
# ids P@1 0.622 against 0.589, and they fitted in a fifth less time (2026-12-07, same networks).
MAX_PASSES = 20
BLOCK_SLOTS = 1 << 23  # about the weight slots a block of labels fits at once (its buffers: 8 bytes each)
# A label whose rows hold at most GATHER_SLOTS non-zeros is fitted over its own copy of them
# (fit_leaves_block); a frequent label with more trains over the training set's rows in place, so
# that a thread's copy stays at 16 MB however common a label is (a label in half of a million
# 100-non-zero rows would need 400 MB a thread).
GATHER_SLOTS = 1 << 21
BIAS_VALUE = 1.0  # the constant feature, as PECOS' bias=1.0
# Shortlists (the leaves' negatives) of at most SHORTLIST_SAMPLES training samples, drawn at
# random; every sample still gives its positives. A leaf needs negatives in proportion to its
# positives, not to the training set: on DebianNextWord's one pass (500,000 samples) 65,536 samples'
# shortlists gave 0.1647 / 0.0858 / 0.0605 in 6.3 s of fitting, all of them 0.1648 / 0.0861 / 0.0602
# in 43 s. They come from exact scoring of as many of those as EXACT_SHORTLIST_MACS multiply-adds
# (B x N x D) allow, about 12 s on 2 cores: the LSH index's shortlists miss some of the labels the
# network confuses, the negatives that matter. On DebianDeps (44,606 x 22,875 x 512) exact took
# 7.8 s and its leaves added 0.7 P@1 / 0.6 P@5 at WEIGHT, the index's 2 s and 0.3 / 0.5; on a
# generated bag of item ids (50,000 labels) re-ranked over the top 200, exact shortlists of 16,384
# samples (4.8 s) gave P@1 / P@5 0.575 / 0.187, of 32,768 0.581 / 0.191, of 65,536 (19.7 s) 0.589
# / 0.190, the index's of 65,536 (3.6 s) 0.557 / 0.184 (bench/measured-2026-12-07/depth/). So
# fewer samples scored exactly beat more through the index, down to MIN_EXACT_SHORTLISTS; only
# past that (about 120,000 labels at 512 hidden units, 480,000 at 128) does the index give them.
EXACT_SHORTLIST_MACS = 1e12
SHORTLIST_SAMPLES = 65_536
MIN_EXACT_SHORTLISTS = 16_384
SHORTLIST_STREAM = 0x52524B  # "RRK": the random stream that draws them (rng.py)
# Besides its positives and the network's confusions, each leaf trains against this many training
# samples drawn at random. The confusions alone leave a leaf blind to the rest of the input space:
# a rare label that the network seldom shortlists sees few negatives and scores high everywhere,
# so the leaves' scores do not compare across labels (alone they ranked DebianDeps' test samples
# at P@1 0.60, a generated bag of item ids at 0.20). Random samples give every leaf the same
# picture of the background: at about 125 a label DebianDeps' leaves alone reached 0.74, the
# item ids' 0.55 at 84 and 0.57 at 262, past the network's own 0.53; the blends gained 0.5-2 P@1
# (bench/measured-2026-12-07/random-negatives/). The cost is linear in them. Where labels have
# many positives, a leaf needs more of the background to weigh them against: at least
# NEGATIVES_PER_POSITIVE times the mean positives a label. On a generated many-tags shape (38
# positives a label) P@5 rose from 0.835 at 128 a label to 0.857 at 512 and 0.863 at 1,024 (share
# 0.9; PECOS 0.890); Bibtex (73 a label, 1,169 drawn) and Delicious (250, 4,006) held level within
# 0.35 points at their share, 0.1 (bench/measured-2026-12-07/depth/).
# The multiple is capped at RANDOM_SHARE of the training samples (RANDOM_NEGATIVES stays): a leaf's
# background is then a sample of thousands, and more of it changed no ranking while its cost grew
# with it. Where the cap bites, a label's mean positives pass RANDOM_SHARE / NEGATIVES_PER_POSITIVE of
# the samples (N < 256 x the labels a sample): few labels, many a sample. Delicious (250 positives a
# label, 4,006 drawn of 12,920 samples -> 807), its recipe's network, test P@1 / P@3 / P@5: 0.6945 /
# 0.6352 / 0.5899 -> 0.6920 / 0.6359 / 0.5898 for 3.9 -> 2.4 s of the leaves' stage (1,024 a
# label: 0.6948 / 0.6367 / 0.5896, 256: 0.6958 / 0.6356 / 0.5896); Bibtex's config (1,169 -> 305),
# seeds 0 / 1: 0.6449 / 0.2981 -> 0.6449 / 0.2979 and 0.6501 / 0.2960 -> 0.6497 / 0.2949 (P@1 / P@5)
# for 0.35-0.40 -> 0.23 s (bench/measured-2026-12-08/background-share/). The many-tags shape (559 a
# label by RANDOM_PAIRS, of 50,000 samples) is under it.
RANDOM_NEGATIVES = 128
NEGATIVES_PER_POSITIVE = 16
RANDOM_SHARE = 1 / 16
RANDOM_PAIRS = 1 << 24  # at most this many random (label, sample) pairs in all: fewer a label past 2^24 / wanted labels
RANDOM_STREAM = 0x52524E  # "RRN": the random stream that draws them


class Leaves(NamedTuple):
    """Per-label sparse linear weights, CSR by label; feature id F is the bias."""

    indptr: np.ndarray  # (N + 1,) int64
    features: np.ndarray  # (E,) int32, feature ids within each label ascending, F last (the bias)
    weights: np.ndarray  # (E,) float32
    n_features: int  # F
    step: int  # the training step of the network whose shortlists trained them
    depth: int  # they re-rank the network's top `depth` labels (fit_leaves: its shortlists' K; Model.fit_reranker
    # sets model.reranker.shortlist, or the depth "auto" chose)
    share: float = WEIGHT  # their share of the blended log-score: model.reranker.weight, or the one "auto" chose
    cost: float = COST  # the SVM's C they were fitted at (fit_leaves): COST, or the one of COSTS "auto" chose


# -- fitting --------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def fit_leaf(rows, positive, x_indptr, x_indices, x_values, scales, w, alpha, diag, active, moved, cost, tolerance,
             max_passes, seed):
    """One label's L2-loss SVM by dual coordinate descent over its training `rows`; `positive`
    (rows,) bool; w (F + 1,) float32 zero on entry, the bias last. Each step solves for one
    sample's dual variable alpha in closed form, clipped at 0, and moves w by the change:
    y (alpha_new - alpha_old) x.

    Each pass visits the samples in a new random order (a Fisher-Yates shuffle of `active`,
    scratch (rows,) int64, by xorshift64 from `seed`: a run repeats exactly): in one fixed order
    the descent creeps (MAX_PASSES). With liblinear's shrinking: a sample at alpha = 0 whose
    gradient passes the largest projected gradient of the pass before is set aside (it is well
    outside the margin, as most of a leaf's negatives are; swapped past the active part), so later
    passes go over fewer samples. When the rest meet `tolerance`, every sample is taken back for a
    pass that must meet it too. moved (rows,) bool: whether each sample's alpha ever changed, so that
    w is non-zero only on those samples' features."""
    n = rows.shape[0]
    bias = w.shape[0] - 1
    half_inv_c = 0.5 / cost
    for i in range(n):
        # a unit row's squared norm is 1 (0 for a row without a non-zero), however its repeated
        # feature ids split the values: the sum over its entries' squares would not be
        unit = 1.0 if scales[rows[i]] > 0.0 else 0.0
        diag[i] = unit + BIAS_VALUE * BIAS_VALUE + half_inv_c
        alpha[i] = 0.0
        active[i] = i
        moved[i] = False
    n_active = n
    ceiling = np.inf  # the largest projected gradient of the pass before: a shrunk sample's gradient passes it
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    for _ in range(max_passes):
        largest = 0.0
        highest = -np.inf
        s_at = 0
        for a in range(n_active - 1, 0, -1):  # a new order each pass (xorshift64), as liblinear's
            state ^= state << np.uint64(13)
            state ^= state >> np.uint64(7)
            state ^= state << np.uint64(17)
            b = np.int64(state % np.uint64(a + 1))
            active[a], active[b] = active[b], active[a]
        while s_at < n_active:
            i = active[s_at]
            r = rows[i]
            y = 1.0 if positive[i] else -1.0
            dot = 0.0
            for p in range(x_indptr[r], x_indptr[r + 1]):
                dot += w[x_indices[p]] * x_values[p]
            g = y * (dot * scales[r] + w[bias] * BIAS_VALUE) - 1.0 + half_inv_c * alpha[i]
            if alpha[i] == 0.0:
                if g > ceiling:  # set aside: swap to the end of the active part and look at what came in
                    n_active -= 1
                    active[s_at], active[n_active] = active[n_active], active[s_at]
                    continue
                pg = min(g, 0.0)
            else:
                pg = g
            largest = max(largest, abs(pg))
            highest = max(highest, pg)
            if pg != 0.0:
                old = alpha[i]
                alpha[i] = max(old - g / diag[i], 0.0)
                if alpha[i] == old:  # clipped at 0 where it was: w stays
                    s_at += 1
                    continue
                moved[i] = True
                step = (alpha[i] - old) * y
                scaled = step * scales[r]
                for p in range(x_indptr[r], x_indptr[r + 1]):
                    w[x_indices[p]] += scaled * x_values[p]
                w[bias] += step * BIAS_VALUE
            s_at += 1
        if largest < tolerance:
            if n_active == n:
                break
            n_active = n  # the active samples meet it: take every sample back for a pass that must
            ceiling = np.inf
            continue
        ceiling = highest if highest > 0.0 else np.inf


@njit(cache=True)  # not INTERNAL: tests call it
def gather_rows(rows, x_indptr, x_indices, x_values, scales, local_indptr, local_indices, local_values,
                local_scales):
    """Copy `rows` of the input CSR, in order, into the local CSR (local_indptr (R + 1,), indices and
    values, local_scales (R,)): one label's training rows, contiguous for its passes."""
    at = 0
    local_indptr[0] = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        for p in range(x_indptr[r], x_indptr[r + 1]):
            local_indices[at] = x_indices[p]
            local_values[at] = x_values[p]
            at += 1
        local_indptr[i + 1] = at
        local_scales[i] = scales[r]


@njit(cache=True, **INTERNAL)
def keep_weights(rows, moved, x_indptr, x_indices, w, seen, label, threshold, out_features, out_weights, at):
    """Write the weights of w above `threshold` from out_features / out_weights[at] on, resetting w
    to zero for the next label as they are read; returns where the bias goes. Only the features of
    the samples whose alpha moved (fit_leaf's `moved`) can be non-zero: most negatives never move.
    seen (F,) marks the features read for `label` already."""
    for i in range(rows.shape[0]):
        if not moved[i]:
            continue
        r = rows[i]
        for p in range(x_indptr[r], x_indptr[r + 1]):
            f = x_indices[p]
            if seen[f] == label:
                continue
            seen[f] = label
            if abs(w[f]) > threshold:
                out_features[at] = f
                out_weights[at] = w[f]
                at += 1
            w[f] = 0.0
    return at


@njit(parallel=True, cache=True)
def fit_leaves_block(n_block, pair_indptr, pair_rows, pair_positive, pair_spans, x_indptr, x_indices, x_values,
                     scales, n_features, out_indptr, out_features, out_weights, out_counts, n_chunks, cost, threshold,
                     tolerance, max_passes, first_label, gather_slots):
    """Fit the leaves of a block of n_block labels (local index j): label j trains on
    pair_rows[pair_indptr[j]:pair_indptr[j + 1]] (ascending samples; pair_positive marks its
    positives; pair_spans[j] their non-zeros) and writes its kept weights from out_indptr[j] (room
    for every distinct feature of its rows, plus the bias), their count into out_counts[j]. Thread
    chunk c takes labels c, c + n_chunks, ...: a label's cost is its pairs, and neighbouring labels'
    are alike.

    Each label's rows are first copied into the chunk's own contiguous CSR (gather_rows; where they
    hold at most gather_slots non-zeros): the descent passes over them up to max_passes times, and a copy near
    the core serves those passes where the training set's rows, scattered through memory, would
    not. Only the features of the samples whose alpha moved are then read back for the pruning
    (keep_weights). Both together took the leaves of a generated 400,000-sample set (13,000 labels, 24 million
    pairs) from 52-58 s to 37-38 s at C = 1, the same leaves to the bit."""
    most = 0
    widest = 0
    for j in range(n_block):
        most = max(most, pair_indptr[j + 1] - pair_indptr[j])
        if pair_spans[j] <= gather_slots:
            widest = max(widest, pair_spans[j])
    for c in prange(n_chunks):
        w = np.zeros(n_features + 1, np.float32)
        seen = np.full(n_features, -1, np.int64)
        alpha = np.zeros(most, np.float64)
        diag = np.zeros(most, np.float64)
        active = np.zeros(most, np.int64)
        moved = np.zeros(most, np.bool_)
        local_rows = np.arange(most)
        local_indptr = np.zeros(most + 1, np.int64)
        local_indices = np.zeros(widest, x_indices.dtype)
        local_values = np.zeros(widest, x_values.dtype)
        local_scales = np.zeros(most, scales.dtype)
        for j in range(c, n_block, n_chunks):
            lo, hi = pair_indptr[j], pair_indptr[j + 1]
            if pair_spans[j] <= gather_slots:  # the label's rows, copied: row i of the copy is its pair i
                gather_rows(pair_rows[lo:hi], x_indptr, x_indices, x_values, scales, local_indptr, local_indices,
                            local_values, local_scales)
                rows, indptr, indices, values, row_scales = (local_rows[:hi - lo], local_indptr, local_indices,
                                                             local_values, local_scales)
            else:  # in place
                rows, indptr, indices, values, row_scales = pair_rows[lo:hi], x_indptr, x_indices, x_values, scales
            fit_leaf(rows, pair_positive[lo:hi], indptr, indices, values, row_scales, w, alpha, diag, active, moved,
                     cost, tolerance, max_passes, first_label + j)
            at = keep_weights(rows, moved, indptr, indices, w, seen, j, threshold, out_features, out_weights,
                              out_indptr[j])
            out_features[at] = n_features
            out_weights[at] = w[n_features]
            w[n_features] = 0.0
            out_counts[j] = at + 1 - out_indptr[j]


def confusion_depth(shortlist: int, n_labels: int) -> int:
    """How many of each training sample's top network labels the leaves train against (as
    negatives where the sample lacks them): CONFUSION_DEPTH x `shortlist`, at most CONFUSION_SHARE
    of the `n_labels` (at least 1)."""
    return max(1, min(CONFUSION_DEPTH * shortlist, int(n_labels * CONFUSION_SHARE)))


def shortlist_plan(n_samples: int, n_labels: int, width: int, indexed: bool) -> tuple[int, bool]:
    """(how many training samples get a shortlist, whether through the LSH index) for a network
    of N labels over a last hidden layer of `width` units: as many as exact scoring fits in
    EXACT_SHORTLIST_MACS, at most SHORTLIST_SAMPLES; where that is under MIN_EXACT_SHORTLISTS (and
    the network has an index: `indexed`), SHORTLIST_SAMPLES through the index."""
    most = min(n_samples, SHORTLIST_SAMPLES)
    exact = int(EXACT_SHORTLIST_MACS // max(1, n_labels * width))
    if indexed and exact < min(most, MIN_EXACT_SHORTLISTS):
        return most, True
    return min(most, max(exact, MIN_EXACT_SHORTLISTS)), False


def random_negatives(n_labels: int, rows: np.ndarray, per_label: int, draw: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, samples) int64: `per_label` samples of `rows` for each of the N labels, drawn
    uniformly with replacement (a draw that has the label becomes one of its positives)."""
    labels = np.repeat(np.arange(n_labels, dtype=np.int64), per_label)
    return labels, np.asarray(rows, np.int64)[draw.integers(0, len(rows), labels.shape[0])]


def random_negatives_per_label(n_labels: int, n_rows: int, n_positives: int = 0) -> int:
    """RANDOM_NEGATIVES a label, or NEGATIVES_PER_POSITIVE times the mean of the `n_positives`
    (label, sample) pairs a label where that is more, up to RANDOM_SHARE of the `n_rows`; fewer
    where N x that passes RANDOM_PAIRS, and never more than the samples there are."""
    scaled = min(round(NEGATIVES_PER_POSITIVE * n_positives / max(1, n_labels)), int(RANDOM_SHARE * n_rows))
    wanted = max(RANDOM_NEGATIVES, scaled)
    return int(min(wanted, RANDOM_PAIRS // max(1, n_labels), n_rows))


def training_pairs(shortlists: np.ndarray, y_indptr: np.ndarray, y_indices: np.ndarray, n_labels: int,
                   negatives: tuple[np.ndarray, np.ndarray] | None = None, rows: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr (N + 1,) int64, rows (P,) int64, positive (P,) bool): for each label, the samples
    (of B, labels CSR y_indptr/y_indices) that have it, hold it in their shortlist (R, K) (-1
    pads; the shortlists of samples `rows`, default the first R) or are among its `negatives`
    (labels, samples), ascending, each once. Each candidate pair is coded 2 x sample + (0 if the
    sample has the label, else 1) in its label's bucket (a counting sort by label); sorting each
    bucket then puts a sample's codes side by side, the positive one first (sort_label_pairs)."""
    b = y_indptr.shape[0] - 1
    listed = shortlists >= 0
    owners = np.arange(shortlists.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    extra_labels, extra_rows = negatives if negatives is not None else (np.zeros(0, np.int64),) * 2
    labels = np.concatenate([y_indices.astype(np.int64), shortlists[listed].astype(np.int64),
                             np.asarray(extra_labels, np.int64)])
    codes = np.concatenate([2 * np.repeat(np.arange(b, dtype=np.int64), np.diff(y_indptr)),
                            2 * owners[np.nonzero(listed)[0]] + 1, 2 * np.asarray(extra_rows, np.int64) + 1])
    starts = np.zeros(n_labels + 1, np.int64)
    starts[1:] = np.cumsum(np.bincount(labels, minlength=n_labels))
    buckets = np.empty(codes.shape[0], np.int64)
    bucket_codes(labels, codes, starts, buckets)
    kept = np.zeros(n_labels, np.int64)
    sort_label_pairs(starts, buckets, kept)
    indptr = np.zeros(n_labels + 1, np.int64)
    indptr[1:] = np.cumsum(kept)
    pair_rows = np.empty(indptr[-1], np.int64)
    positive = np.empty(indptr[-1], np.bool_)
    gather_label_pairs(starts, buckets, indptr, pair_rows, positive)
    return indptr, pair_rows, positive


@njit(cache=True)
def bucket_codes(labels, codes, starts, buckets):
    """Scatter codes (P,) into their labels' buckets (starts: (N + 1,) each bucket's first slot),
    in input order within a bucket."""
    cursor = starts[:-1].copy()
    for i in range(labels.shape[0]):
        label = labels[i]
        buckets[cursor[label]] = codes[i]
        cursor[label] += 1


@njit(parallel=True, cache=True)
def sort_label_pairs(starts, buckets, kept):
    """Sort each label's bucket in place and move its distinct samples' first (smallest) codes to
    the bucket's front; kept[label] = how many. Labels are independent, so prange over them."""
    for label in prange(starts.shape[0] - 1):
        lo, hi = starts[label], starts[label + 1]
        if hi == lo:
            continue
        buckets[lo:hi] = np.sort(buckets[lo:hi])
        at = lo
        for i in range(lo + 1, hi):  # codes 2s and 2s + 1 are one sample: the first of a run stays
            if buckets[i] >> 1 != buckets[at] >> 1:
                at += 1
                buckets[at] = buckets[i]
        kept[label] = at + 1 - lo


@njit(parallel=True, cache=True)
def gather_label_pairs(starts, buckets, indptr, pair_rows, positive):
    """Copy each label's kept codes (sort_label_pairs) out as samples and positive flags."""
    for label in prange(indptr.shape[0] - 1):
        lo = starts[label]
        for j in range(indptr[label + 1] - indptr[label]):
            code = buckets[lo + j]
            pair_rows[indptr[label] + j] = code >> 1
            positive[indptr[label] + j] = (code & 1) == 0


def fit_leaves(train, shortlists: np.ndarray, step: int, *, rows: np.ndarray | None = None,
               n_labels: int | None = None, negatives: tuple[np.ndarray, np.ndarray] | None = None,
               cost: float = COST, threshold: float = PRUNE_THRESHOLD, tolerance: float = TOLERANCE,
               max_passes: int = MAX_PASSES, threads: int | None = None, pairs: tuple | None = None) -> Leaves:
    """Leaves for the N labels (n_labels, default `train`'s (a Dataset)), each trained on its
    positives, the samples whose shortlist of network picks holds it and its random `negatives`
    (labels, samples; random_negatives); the shortlists (R, K) int32 (-1 pads) are those of
    `train`'s samples `rows` (default all: R = B). `step` records which network's shortlists
    they learnt from; the leaves re-rank as deep as the shortlists are long (K). `pairs`:
    training_pairs' output for these arguments, where a caller fits several Cs on them (built
    here otherwise)."""
    b, n_features = train.n_samples, train.n_features
    owners = b if rows is None else len(rows)
    if shortlists.ndim != 2 or shortlists.shape[0] != owners:
        raise ValueError(f"shortlists must be (R={owners}, K), got {shortlists.shape}")
    if rows is not None and len(rows) and not (np.min(rows) >= 0 and np.max(rows) < b):
        raise ValueError(f"shortlist rows must be samples of the {b} in train")
    if not cost > 0:
        raise ValueError(f"cost must be > 0, got {cost}")
    n_labels = int(max(n_labels or 0, train.n_labels, shortlists.max(initial=-1) + 1))
    if pairs is None:
        pairs = training_pairs(shortlists, train.y_indptr, train.y_indices, n_labels, negatives, rows)
    pair_indptr, pair_rows, positive = pairs
    if pair_indptr.shape[0] != n_labels + 1:
        raise ValueError(f"pairs are for {pair_indptr.shape[0] - 1} labels, the leaves for {n_labels}")
    scales = unit_scales(train)  # 1 / each row's norm (0 for an empty row, which has nothing to scale)
    row_nnz = np.diff(train.x_indptr)
    spans = np.zeros(n_labels, np.int64)  # each label's rows' non-zeros: its distinct features are at most these
    has_pairs = np.diff(pair_indptr) > 0
    if pair_rows.shape[0]:
        spans[has_pairs] = np.add.reduceat(row_nnz[pair_rows], pair_indptr[:-1][has_pairs])
    room = np.minimum(spans, n_features) + 1  # a label's distinct features are at most F; and the bias
    n_chunks = 4 * (threads or numba.get_num_threads())  # finer than the threads: labels' costs differ
    counts = np.zeros(n_labels, np.int64)
    kept_features, kept_weights = [], []
    ends = np.cumsum(room)
    start = 0
    while start < n_labels:  # blocks of labels whose room fits about BLOCK_SLOTS slots (at least one label)
        end = min(max(start + 1, int(np.searchsorted(ends, ends[start] + BLOCK_SLOTS, side="right"))), n_labels)
        out_indptr = np.zeros(end - start + 1, np.int64)
        out_indptr[1:] = np.cumsum(room[start:end])
        out_features = np.empty(out_indptr[-1], np.int32)
        out_weights = np.empty(out_indptr[-1], np.float32)
        lo, hi = pair_indptr[start], pair_indptr[end]
        fit_leaves_block(np.int64(end - start), pair_indptr[start:end + 1] - lo, pair_rows[lo:hi],
                         positive[lo:hi], spans[start:end], train.x_indptr, train.x_indices, train.x_values, scales,
                         np.int64(n_features), out_indptr, out_features, out_weights, counts[start:end],
                         np.int64(n_chunks), np.float64(cost), np.float64(threshold), np.float64(tolerance),
                         np.int64(max_passes), np.int64(start), np.int64(GATHER_SLOTS))
        block_indptr = np.zeros(end - start + 1, np.int64)
        block_indptr[1:] = np.cumsum(counts[start:end])
        features = np.empty(block_indptr[-1], np.int32)
        weights = np.empty(block_indptr[-1], np.float32)
        sort_kept(out_indptr, out_features, out_weights, counts[start:end], block_indptr, features, weights)
        kept_features.append(features)
        kept_weights.append(weights)
        start = end
    indptr = np.zeros(n_labels + 1, np.int64)
    indptr[1:] = np.cumsum(counts)
    return Leaves(indptr, np.concatenate(kept_features) if kept_features else np.zeros(0, np.int32),
                  np.concatenate(kept_weights) if kept_weights else np.zeros(0, np.float32), int(n_features), int(step),
                  int(shortlists.shape[1]), cost=float(cost))


@njit(parallel=True, cache=True)
def sort_kept(out_indptr, out_features, out_weights, counts, indptr, features, weights):
    """Each label j's counts[j] kept (feature, weight) pairs from out_indptr[j] of fit_leaves_block's
    output, into features / weights from indptr[j], the features ascending (the bias, id F, last).
    A label's features are distinct, so the order is one. In parallel over labels: a label's
    argsort allocates its order, once a label, outside the descent."""
    for j in prange(counts.shape[0]):
        lo = out_indptr[j]
        order = np.argsort(out_features[lo:lo + counts[j]])
        at = indptr[j]
        for i in range(counts[j]):
            features[at + i] = out_features[lo + order[i]]
            weights[at + i] = out_weights[lo + order[i]]


# -- the share --------------------------------------------------------------------------------------


def validation_size(n_samples: int) -> int:
    """How many of `n_samples` training samples the slice holds (0: none): VALIDATION_SHARE of
    them, within [MIN_VALIDATION, VALIDATION_SAMPLES], where that is at most MAX_VALIDATION_SHARE."""
    n = min(VALIDATION_SAMPLES, max(MIN_VALIDATION, int(n_samples * VALIDATION_SHARE)))
    return n if n <= n_samples * MAX_VALIDATION_SHARE else 0


def validation_rows(train, seed: int) -> np.ndarray | None:
    """The training samples (ascending int64) of `train` (a Dataset) kept out of the network's
    training for "auto" to choose the leaves' share on, or None where the training set is too small
    to spare them. Only samples whose input row occurs once in the training set are drawn: a copy
    left in training would let the leaves, which memorise rows better than the network, look
    better on the slice than on a test split drawn apart (DebianNextWord: 43% of a random slice's
    rows recur among the other training rows, 23% of the test split's). A pure function of the
    data and the seed, so a resumed run holds out the same ones."""
    n = validation_size(train.n_samples)
    if n == 0:
        return None
    pool = np.flatnonzero(single_rows(train))
    if pool.shape[0] < n:
        return None
    return np.sort(generator(seed, VALIDATION_STREAM).choice(pool, n, replace=False)).astype(np.int64)


def training_rows(n_samples: int, held_out: np.ndarray | None) -> np.ndarray | None:
    """The samples (ascending int64) of a training set of `n_samples` that the network trains on:
    all but those `held_out` (validation_rows); None where nothing is held out (all of them)."""
    return None if held_out is None else np.setdiff1d(np.arange(n_samples, dtype=np.int64), held_out)


def single_rows(data) -> np.ndarray:
    """(B,) bool: the samples of `data` whose input row (its feature ids and values, in any order)
    no other sample has. Rows are told apart by a 64-bit sum of their (id, value) pairs' mixed
    hashes, equal for equal rows; two different rows share it with odds of about 2^-64 a pair."""
    ids = data.x_indices.astype(np.uint64)
    values = np.ascontiguousarray(data.x_values, np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as a hash should
        pair = _mix64(ids * np.uint64(0x9E3779B97F4A7C15) ^ _mix64(values + np.uint64(1)))
        row = np.zeros(data.n_samples, np.uint64)  # an empty row sums to 0
        filled = np.diff(data.x_indptr) > 0
        if filled.any():  # each row's pairs are one run of the CSR arrays
            row[filled] = np.add.reduceat(pair, data.x_indptr[:-1][filled])
    _, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def choose_blend(ids: np.ndarray, log_scores: np.ndarray, leaf_scores: dict, y_indptr: np.ndarray,
                 y_indices: np.ndarray, depths: tuple, shares=SHARES, default: float = WEIGHT
                 ) -> tuple[tuple[float, float, int], dict]:
    """((cost, share, depth), {(cost, share, depth): mean of P@1, P@3, P@5}) for held-out samples'
    network rankings ids (B, K >= every depth), their labels (CSR) and `leaf_scores` {cost: (B, K)}
    (the leaves fitted at each C, the default's first), each triple scoring the re-ranking
    (rerank) of each sample's top `depth`, followed by the rest in the network's order. At the
    first cost, the best (share, depth) (the shallowest, then the smallest share, on a tie) where
    it beats (`default`, depths[0]) by EVIDENCE standard errors of the samples' paired
    differences, else that default; then, cost by cost, the best triple at the next cost where
    it beats the choice so far by EVIDENCE standard errors in turn."""
    k = min(5, ids.shape[1])
    triples = [(float(cost), float(share), int(depth)) for cost in leaf_scores for depth in depths for share in shares]
    per_sample = np.stack([sample_precision(rerank_top(ids, log_scores, leaf_scores[cost], share, depth, k)[0],
                                            y_indptr, y_indices) for cost, share, depth in triples])
    means = per_sample.mean(axis=1)
    table = {triple: float(m) for triple, m in zip(triples, means)}

    def beats(a: int, b: int) -> bool:  # triple a over triple b by EVIDENCE standard errors
        gain = per_sample[a] - per_sample[b]
        return gain.shape[0] > 1 and gain.mean() > EVIDENCE * gain.std(ddof=1) / np.sqrt(gain.shape[0])

    block = len(depths) * len(shares)  # the triples at each cost
    chosen = int(np.argmax(means[:block]))
    base = (triples[0][0], float(default), int(depths[0]))
    if base in table and not beats(chosen, triples.index(base)):
        chosen = triples.index(base)
    for start in range(block, len(triples), block):
        other = start + int(np.argmax(means[start:start + block]))
        if beats(other, chosen):
            chosen = other
    return triples[chosen], table


def sample_precision(top: np.ndarray, y_indptr: np.ndarray, y_indices: np.ndarray) -> np.ndarray:
    """(B,) each sample's mean of P@1, P@3 and P@5 for its top ids (B, W; -1 pads, W < 5 counting
    the missing ranks as misses), by metrics.score_topk_per_sample."""
    return score_topk_per_sample(top, y_indptr, y_indices, (1, 3, 5))[0].mean(axis=1)


# -- scoring --------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def score_leaf_row(x_indices, x_values, scale, ids, indptr, features, weights, dense, out):
    """One sample's leaf scores for its shortlisted `ids` into out (-1: none, scored -inf; a label
    past the leaves' 0, as a leaf that saw no sample scores), its unit row scattered into `dense`
    (F + 1,) zeros for the duration (the bias at F)."""
    bias = dense.shape[0] - 1
    for p in range(x_indices.shape[0]):
        dense[x_indices[p]] += x_values[p] * scale  # a repeated id adds up, as in the fit
    dense[bias] = BIAS_VALUE
    for j in range(ids.shape[0]):
        label = ids[j]
        if label < 0:
            out[j] = -np.inf
            continue
        if label + 1 >= indptr.shape[0]:  # a label no leaf was fitted for: an unseen label's score
            out[j] = 0.0
            continue
        s = 0.0
        for p in range(indptr[label], indptr[label + 1]):
            s += weights[p] * dense[features[p]]
        out[j] = s
    for p in range(x_indices.shape[0]):
        dense[x_indices[p]] = 0.0


@njit(parallel=True, cache=True)
def score_leaves_rows(x_indptr, x_indices, x_values, rows, scales, ids, indptr, features, weights, n_features,
                      n_chunks, out):
    """Leaf scores (B, K) of samples `rows` for their shortlists ids (B, K). Thread chunk c takes
    samples c, c + n_chunks, ... with one (F + 1,) scratch row, which each sample leaves zeroed."""
    for c in prange(n_chunks):
        dense = np.zeros(n_features + 1, np.float32)
        for i in range(c, rows.shape[0], n_chunks):
            r = rows[i]
            lo, hi = x_indptr[r], x_indptr[r + 1]
            score_leaf_row(x_indices[lo:hi], x_values[lo:hi], scales[i], ids[i], indptr, features, weights, dense,
                           out[i])


def score_leaves(leaves: Leaves, data, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(B, K) float32 leaf scores of `data`'s samples `rows` for their shortlisted label ids (B, K)
    int32 (-1 pads: -inf). Features beyond the leaves' F take no part (no leaf has seen them)."""
    rows = np.asarray(rows, np.int64)
    if ids.shape[0] != rows.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} rows for {rows.shape[0]} samples")
    scales = unit_scales(data, rows)
    out = np.empty(ids.shape, np.float32)
    x_indices = data.x_indices
    if data.n_features > leaves.n_features:  # unseen features: leave them out of the dot products
        x_indices = np.where(x_indices < leaves.n_features, x_indices, leaves.n_features).astype(np.int32)
    score_leaves_rows(data.x_indptr, x_indices, data.x_values, rows, scales, np.ascontiguousarray(ids, np.int32),
                      leaves.indptr, leaves.features, leaves.weights, np.int64(leaves.n_features),
                      np.int64(max(1, min(rows.shape[0], 4 * numba.get_num_threads()))), out)
    return out


def rerank(ids: np.ndarray, log_scores: np.ndarray, leaf_scores: np.ndarray, weight: float,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k (ids, blended log-scores) of shortlists ids (B, K), each label scored
    (1 - weight) log_score + weight log(exp(-max(1 - leaf, 0)^3)); ties keep the shortlist's order."""
    hinge = np.maximum(1.0 - leaf_scores.astype(np.float64), 0.0)
    blended = (1.0 - weight) * log_scores.astype(np.float64) - weight * hinge ** 3
    blended[ids < 0] = -np.inf
    order = np.argsort(-blended, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(blended, order, 1).astype(np.float32)


def rerank_top(ids: np.ndarray, log_scores: np.ndarray, leaf_scores: np.ndarray, weight: float, depth: int,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k (ids, scores) of network rankings ids (B, K) as predictions rank them: the first
    `depth` re-ranked (rerank; leaf_scores (B, >= depth) scores them), then the rest in the
    network's order, each below every re-ranked label (its log-score shifted to start one under
    the lowest of them), so that the first k' of k are the top k'."""
    head_ids, head = rerank(ids[:, :depth], log_scores[:, :depth], leaf_scores[:, :depth], weight, depth)
    tail = log_scores[:, depth:] - log_scores[:, depth:depth + 1] + head.min(axis=1, keepdims=True) - 1.0
    tail[ids[:, depth:] < 0] = -np.inf
    return (np.concatenate([head_ids, ids[:, depth:]], axis=1)[:, :k],
            np.concatenate([head, tail.astype(np.float32)], axis=1)[:, :k])
