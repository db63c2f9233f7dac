"""Active-set selection: which neurons of a layer a sample computes. Serial, allocation-free leaves,
but for `draw_negative_pool`, which the engine calls once per step.

The kernels call `select_active` once per (sample, layer); everything a sample's active set is
made of happens here:
  * MODE_ALL: every neuron, in id order (position == id);
  * MODE_RANDOM: the true labels (output layer, training), then uniform draws up to the budget;
  * MODE_LSH: the true labels (output layer, training), then the candidates of the layer's LSH
    index (`fill_lsh`: a hash index's probed buckets, tables.select_candidates, or a cluster
    index's best clusters, clusters.probe_clusters) up to the budget less the `random_share`
    kept in training for uniform negatives, then those uniform negatives;
  * in training the output layer's uniform draws take the step's shared negatives first
    (`fill_from_pool`; `draw_negative_pool` draws the pool), then the sample's own (`fill_random`);
  * a top-up with uniform draws to the layer's `min_active`;
  * the bookkeeping of the sampled-softmax correction: `uniform_from` (where the sample's uniform
    draws start) and `correction_weight` (what each of them stands for in the loss).

An active set is a prefix `ids[:n]` of a per-thread-chunk row of `LayerScratch.act_ids`. Every
selector appends to it; duplicates are kept out with the per-chunk `stamp` row: `stamp[id] == mark`
means "already in this sample's set", and a fresh `mark` per (sample, layer) makes clearing
unnecessary.

`kinds` (constants.kinds_marker) says which index kinds a network queries; the code of the others
is pruned before numba types it (see constants.kinds_marker), so a quick start compiles SRP only.

Shape letters: N neurons of the layer, A capacity of the active set, T thread chunks,
L tables, H hashes, V length of the transformed query (D + 1).
"""

import numpy as np
from numba import njit

from .clusters import probe_clusters, take_best_clusters
from .constants import (
    INDEX_CLUSTERS,
    INTERNAL,
    KIND_KMEANS,
    KIND_TABLES,
    MODE_ALL,
    MODE_LSH,
    MODE_RANDOM,
    SET_BIAS_DIM,
    SET_KIND,
    SET_POLICY,
    SET_RANGE_POW,
    SET_THRESHOLD,
    SPEC_BUDGET,
    SPEC_CORRECTION,
    SPEC_MIN_ACTIVE,
    SPEC_OUT_DIM,
    SPEC_RANDOM_PERMILLE,
)
from .hashing import hash_sparse
from .rng import derive_seed, randint, seed_state
from .tables import select_candidates

_MARK_LIMIT = np.int32(2**31 - 2)


# ---------------------------------------------------------------------------------------------
# The per-layer entry point.
# ---------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def select_active(l, mode, is_output, training, spec, scr, lsh, kinds, t, in_ids, in_vals, n_in, labels, n_labels,
                  rng, pool, scores_in, score_row):
    """Fill scr.act_ids[t] with the sample's active neurons of layer l; returns how many.

    mode: MODE_* of the layer for this pass (training or inference); scr: the layer's LayerScratch;
    lsh: its lsh.LshLayer (an empty one unless the layer selects by LSH); in_ids/in_vals[:n_in]:
    the layer's sparse input; labels[:n_labels]: the sample's distinct true labels (forced into the
    output layer's set in training); rng: the per-chunk state (row t); pool: the batch's shared
    negatives (draw_negative_pool; empty when every sample draws its own), which the output layer's
    uniform draws in training take first. scores_in[score_row] (when score_row >= 0): a cluster
    index's centroid scores of this input, computed for the whole batch by one product (union.py);
    with score_row < 0 the query scores the centroids itself. Sets scr.uniform_from[t] to where
    the uniform draws start (n_neurons for MODE_ALL).
    """
    ids = scr.act_ids[t]
    n_neurons = spec[l, SPEC_OUT_DIM]
    if mode == MODE_ALL:
        scr.uniform_from[t] = n_neurons
        return fill_all(ids, n_neurons)
    budget = spec[l, SPEC_BUDGET]
    mark = next_mark(scr.stamp, scr.mark, t)
    stamp_row = scr.stamp[t]
    n = np.int64(0)
    if is_output and training:  # the true labels are always computed in training
        n = add_forced(ids, n, stamp_row, mark, labels, n_labels)
    # Everything from here on that fill_uniform adds is a uniform sample of the neurons not yet
    # chosen; the loss may weight it as such (see correction_weight).
    n_pool = pool.shape[0] if is_output and training else 0
    if mode == MODE_RANDOM:
        scr.uniform_from[t] = n
        n = fill_uniform(ids, n, max(budget, n), n_neurons, stamp_row, mark, rng, t, pool, n_pool)
    elif mode == MODE_LSH:
        # In training, part of the budget after the labels stays for uniform negatives (see
        # config.Lsh.random_share); at inference the index alone chooses.
        share = spec[l, SPEC_RANDOM_PERMILLE] if training else 0
        room = max(budget - n, 0)
        lsh_cap = n + room - (room * share) // 1000
        n = fill_lsh(lsh, scr, t, in_ids, in_vals, n_in, ids, n, lsh_cap, stamp_row, mark, kinds, kinds[KIND_KMEANS],
                     kinds[KIND_TABLES], scores_in, score_row)
        scr.uniform_from[t] = n
        if share > 0:
            n = fill_uniform(ids, n, max(budget, n), n_neurons, stamp_row, mark, rng, t, pool, n_pool)
    return top_up(spec, l, ids, n, n_neurons, stamp_row, mark, rng, t)


@njit(cache=True)
def correction_weight(spec, l, uniform_from, n_act):
    """The sampled-softmax correction of layer l for a set of n_act neurons whose uniform draws
    start at uniform_from: (start, log_weight) for the loss, or (-1, 0.0) when the layer does not
    correct or the set holds no uniform draw. The n_act - uniform_from draws are uniform over the
    N - uniform_from neurons not chosen before them, so each stands for
    (N - uniform_from) / (n_act - uniform_from) neurons (Jean et al. 2015)."""
    if spec[l, SPEC_CORRECTION] == 0 or uniform_from >= n_act:
        return np.int64(-1), 0.0
    return np.int64(uniform_from), np.log((spec[l, SPEC_OUT_DIM] - uniform_from) / (n_act - uniform_from))


# ---------------------------------------------------------------------------------------------
# LSH fill: the index-specific leaves live in tables.py / hashing.py / clusters.py.
# ---------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def fill_lsh(lsh, scr, t, in_ids, in_vals, n_in, ids, n, cap, stamp_row, mark, kinds, clusters, tables, scores_in,
             score_row):
    """Append the candidates of the layer's LSH index to ids[n:cap]; returns the new length.

    lsh: lsh.LshLayer; scr: the layer's LayerScratch (codes, hash and query scratch, row t).
    A cluster index (settings[SET_KIND] == INDEX_CLUSTERS) scores the input against every centroid
    and takes the members of the best clusters. A hash index hashes the transformed input with the
    functions that hashed the weight rows and appends the candidates of the probed buckets under the
    layer's policy (vanilla union, top-k by tables hit, or hit-count threshold).
    clusters, tables: kinds[KIND_KMEANS] and kinds[KIND_TABLES], passed apart because numba prunes a
    branch on an argument that is None (not on a tuple item): the code of an unused kind is not
    compiled. scores_in, score_row: precomputed centroid scores, as in select_active.
    """
    if clusters is not None:
        if lsh.settings[SET_KIND] == INDEX_CLUSTERS:  # cluster scores and ranks live in the hash-work rows
            if score_row >= 0:
                scores = scr.hash_vals[t]
                given = scores_in[score_row]
                n_c = given.shape[0]
                for c in range(n_c):
                    scores[c] = given[c]
                return take_best_clusters(scores, n_c, scr.hash_idx[t], lsh.cluster_indptr, lsh.cluster_members,
                                          stamp_row, mark, ids, n, cap)
            return probe_clusters(lsh.centroids_t, lsh.cluster_indptr, lsh.cluster_members, in_ids, in_vals, n_in,
                                  scr.hash_vals[t], scr.hash_idx[t], stamp_row, mark, ids, n, cap)
    if tables is not None:
        # The query is [input, 1, 0] (lsh.py explains the transform): copy, then add the constant.
        q_ids = scr.query_ids[t]
        q_vals = scr.query_vals[t]
        n_q = min(n_in, q_ids.shape[0] - 1)  # only an input with repeated ids could be longer than D
        for j in range(n_q):
            q_ids[j] = in_ids[j]
            q_vals[j] = in_vals[j]
        q_ids[n_q] = lsh.settings[SET_BIAS_DIM]
        q_vals[n_q] = 1.0
        codes = scr.codes[t]
        hash_sparse(lsh.params, q_ids, q_vals, n_q + 1, lsh.settings[SET_RANGE_POW], codes, scr.hash_vals[t],
                    scr.hash_idx[t], kinds)
        return select_candidates(lsh.settings[SET_POLICY], lsh.buckets, lsh.counts, codes, stamp_row, mark,
                                 scr.hits[t], ids, n, cap, lsh.settings[SET_THRESHOLD], scr.query_buf[t])
    return n  # an index kind the marker leaves out: the engine never lets this happen


# ---------------------------------------------------------------------------------------------
# Small fills shared by the modes.
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def next_mark(stamp, mark, t):
    """A fresh stamp value for chunk t: `mark[t] + 1`, wiping the stamp row on int32 wrap-around."""
    m = mark[t] + 1
    if m >= _MARK_LIMIT:
        stamp[t, :] = 0
        m = 1
    mark[t] = m
    return m


@njit(cache=True)
def unique_prefix(ids, n, out):
    """Copy ids[:n] into out without repeats (first occurrence order); returns the count.

    Quadratic, for the short label lists of one sample, where it beats any hashing.
    """
    k = 0
    for i in range(n):
        v = ids[i]
        seen = False
        for j in range(k):
            if out[j] == v:
                seen = True
                break
        if not seen:
            out[k] = v
            k += 1
    return k


@njit(cache=True)
def fill_all(ids, n_neurons):
    """Every neuron active, in id order (so position == id); returns n_neurons."""
    for a in range(n_neurons):
        ids[a] = a
    return n_neurons


@njit(cache=True)
def append_new(ids, n, stamp_row, mark, v):
    """Append v to the set ids[:n] unless it is already there (stamp_row[v] == mark); returns the
    new length."""
    if stamp_row[v] != mark:
        stamp_row[v] = mark
        ids[n] = v
        n += 1
    return n


@njit(cache=True)
def add_forced(ids, n, stamp_row, mark, forced, n_forced):
    """Append forced ids (the true labels) not yet in the set; returns the new length."""
    for j in range(n_forced):
        n = append_new(ids, n, stamp_row, mark, np.int64(forced[j]))  # one signature: randint's int64
    return n


@njit(cache=True)
def fill_random(ids, n, target, n_neurons, stamp_row, mark, rng, t):
    """Append uniformly drawn distinct neurons until the set holds `target` (target < n_neurons).

    Rejection sampling: the builder turns a budget >= N into MODE_ALL, so the expected number
    of draws stays O(target * log) even near the top of the range.
    """
    while n < target:
        n = append_new(ids, n, stamp_row, mark, randint(rng, t, n_neurons))
    return n


@njit(cache=True)
def fill_from_pool(ids, n, target, pool, n_pool, stamp_row, mark):
    """Append the ids of pool[:n_pool] not yet in the set, in pool order, until the set holds
    `target` or the pool is spent; returns the new length.

    The pool is a uniformly random sequence of distinct neurons, so the ids it adds are a uniform
    sample of the neurons not already in the set: dropping the ones the set holds leaves a uniform
    random order of the rest. The sampled-softmax correction therefore holds unchanged.
    """
    for j in range(n_pool):
        if n >= target:
            break
        n = append_new(ids, n, stamp_row, mark, np.int64(pool[j]))
    return n


@njit(cache=True, **INTERNAL)
def fill_uniform(ids, n, target, n_neurons, stamp_row, mark, rng, t, pool, n_pool):
    """Uniform negatives up to `target`: the shared pool[:n_pool] first (fill_from_pool), then the
    sample's own draws (fill_random) if the pool ran out. Both are uniform over the neurons not yet
    chosen, so their concatenation is too."""
    n = fill_from_pool(ids, n, target, pool, n_pool, stamp_row, mark)
    return fill_random(ids, n, target, n_neurons, stamp_row, mark, rng, t)


@njit(cache=True)
def draw_negative_pool(seed, step, n_neurons, out):
    """Fill out (P,) int32, P <= n_neurons, with distinct neurons drawn uniformly at random in
    draw order: the negatives a step's samples share (Engine.negative_pool). The stream is
    derive_seed(seed, step, -1): the batch position -1 (2**64 - 1) is no sample's.

    Why share: with per-sample draws, 128 samples x 224 uniform negatives touch 22K of a
    50K-neuron output layer every step, so the row-sparse optimizer walks half the layer and the
    kernel reads rows no other sample wants. A shared pool touches a few hundred rows, which stay in
    cache for the whole batch; each sample's negatives are still a uniform sample (fill_from_pool).
    """
    t = np.int64(0)  # not the literal 0: the rng leaves would compile a second signature for it
    state = np.zeros(1, np.uint64)
    seed_state(state, t, derive_seed(seed, step, np.int64(-1)))
    seen = np.zeros(n_neurons, np.uint8)
    k = 0
    while k < out.shape[0]:
        v = randint(state, t, n_neurons)
        if seen[v] == 0:
            seen[v] = 1
            out[k] = v
            k += 1


@njit(cache=True, **INTERNAL)
def top_up(spec, l, ids, n, n_neurons, stamp_row, mark, rng, t):
    """Add uniform neurons until the set holds the layer's min_active; returns the new length."""
    floor = spec[l, SPEC_MIN_ACTIVE]
    if n < floor:
        n = fill_random(ids, n, floor, n_neurons, stamp_row, mark, rng, t)
    return n
