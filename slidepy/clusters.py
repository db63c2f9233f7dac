"""Data-dependent LSH: k-means clusters of a layer's weight rows as buckets (inverted-file search).

Why not sign bits. After the simple-LSH transform (lsh.py) a trained output layer's rows all point
along the slack axis: on DebianDeps after 6 epochs the slack is 90% of a median transformed row's
norm, 82% of a ReLU query's norm is its mean component, and SRP with K=9 put 77% of the 22,875
rows into one bucket of each table, where a capacity of 64 kept almost none of them. Retrieval
recall@10 fell from 0.84 to 0.47 within 6 epochs. Sign bits cannot separate cosines that all sit
near zero; more bits or tables only multiply the cost.

What this does instead. The rows [w, b] are clustered with k-means (Euclidean); a cluster's
centroid is the mean of its members, so for a query [h, 1] the centroid's inner product is exactly
the *mean logit* of its members. A query scores every centroid (C dot products, as cheap as C
active neurons) and takes the members of its best clusters, best first, until its budget is
full: the neurons in the clusters with the highest mean logit. Within a cluster, members are
stored by descending projection on their centroid, so a cut-off cluster gives its strongest rows.

Keeping it fresh. A rebuild re-assigns every row to the nearest centroid and re-centres (one
Lloyd iteration, warm-started from the last centroids). In full that is one BLAS product
N x C x D: 0.6 s at DebianNextWord's 50,000 x 1,792 x 513 on 2 cores, and 4x that at 10^5 labels.
The shortcut compares a row only with the NEIGHBOURS centroids nearest its current one (N x 32 x D,
~0.08 s there), which is right only while rows drift little between rebuilds. Early and mid
training they drift far: on DebianNextWord 60-88% of the rows changed cluster at each rebuild of
the first epoch's middle, and the shortcut agreed with the full assignment on only 34-75% of
them; from the last quarter of the epoch on it agreed on 95-99.9%. Always taking the shortcut
cost 0.6 points of P@1 after an epoch (0.151 against 0.157); on DebianDeps it left recall@10 at
0.30 / 0.54 after 175 / 350 steps against 1.0 / 1.0. So a warm rebuild of a layer large enough
takes the shortcut, checks it on VERIFY_ROWS random rows against their full assignment, and keeps
it only when at least VERIFY_AGREEMENT of them agree; otherwise it assigns every row in full,
unless that would cost more than FULL_ASSIGN_MACS (a 670K-row layer), where the shortcut stays.
After a failed check the next SHORTCUT_BACKOFF rebuilds go straight to the full assignment.
Between rebuilds `refresh_centroids` recomputes each centroid from its current members' weights
(O(N D), no re-assignment), so the centroid scores track the weights even when memberships are a
few hundred steps old.

Layout (flat arrays, see STYLE.md): centroids are stored transposed, `centroids_t` (D + 1, L*C)
float32 with the bias coordinate last, so that a query, sparse (layer 0) or dense, adds
`value * centroids_t[input_id]` row by row: contiguous, vectorised, the same code for both.
`cluster_indptr` (L*C + 1,) int64 and `cluster_members` (L*N,) int32 are the clusters' member
lists in CSR. L independent clusterings (tables) are allowed; their clusters are simply pooled.

Shape letters: N neurons (rows), D row length (layer input dim), C clusters per table, L tables.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .constants import INTERNAL

# Rows per block of the assignment product, (block x C) float32 scores, and of the members'
# projections, (block x D) gathered centroids: a few tens of MB each.
ASSIGN_BLOCK_ROWS = 8192
# Clusters ranked per round of a query's probe (probe_clusters); a budget is usually filled in one.
PROBE_ROUND = 64
# A warm rebuild's shortcut moves a row only among the NEIGHBOURS centroids nearest its current
# one, and is kept when at least VERIFY_AGREEMENT of VERIFY_ROWS random rows get their nearest
# centroid from it (2,048 rows measure a share near 0.95 to +-0.005). Layers of at most
# 4 x VERIFY_ROWS rows are assigned in full: there the check would cost a quarter of it.
NEIGHBOURS = 32
VERIFY_ROWS = 2048
VERIFY_AGREEMENT = 0.95
# Above this many multiply-adds (N x C x (D + 1): ~2 s on 2 cores, 10^5 labels in the recipe) a
# full assignment is not affordable at every rebuild, and the shortcut is kept whatever the check
# says: at 670K rows and 6,656 clusters a full one is a minute.
FULL_ASSIGN_MACS = 1 << 37
# After a shortcut that failed its check, the next SHORTCUT_BACKOFF warm rebuilds assign in full
# without trying it: where rows move far between rebuilds the check keeps failing (DebianNextWord:
# 29-84% agreement over its first 1,500 steps, with 32 to 128 neighbours alike), and each attempt
# (neighbour lists, restricted assignment, check) cost 0.15-0.19 s on top of the 0.4 s full one.
SHORTCUT_BACKOFF = 3


# ---------------------------------------------------------------------------------------------
# Per-sample query (serial leaf, called from the kernels; allocates nothing).
# ---------------------------------------------------------------------------------------------


@njit(fastmath=True, cache=True, **INTERNAL)
def score_centroids(centroids_t, in_ids, in_vals, n_in, scores):
    """scores[c] = centroids_t[D, c] + sum_j in_vals[j] * centroids_t[in_ids[j], c]: the inner
    product of the query [input, 1] with every centroid [w, b]."""
    n_c = centroids_t.shape[1]
    bias_row = centroids_t[centroids_t.shape[0] - 1]
    for c in range(n_c):
        scores[c] = bias_row[c]
    for j in range(n_in):
        v = in_vals[j]
        if v == 0.0:  # ReLU zeros and dead inputs add nothing
            continue
        row = centroids_t[in_ids[j]]
        for c in range(n_c):
            scores[c] += v * row[c]


def score_centroids_batch(centroids_t: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """score_centroids for a whole batch of dense queries hidden (B, D) float32 in one BLAS
    product: (B, L*C) float32 scores [h, 1] . [w, b] (union.py's steps, where each query would
    otherwise stream the whole centroid matrix by itself)."""
    scores = hidden @ centroids_t[:-1]
    scores += centroids_t[-1]
    return scores


@njit(cache=True)
def probe_clusters(centroids_t, cluster_indptr, cluster_members, in_ids, in_vals, n_in, scores, order,
                   stamp_row, mark, ids, n, cap):
    """Append the members of the best-scoring clusters to ids[n:cap], best cluster first (ties to
    the lower cluster id), skipping ids already stamped; returns the new length.

    scores (L*C,) float32 and order (>= PROBE_ROUND,) int32 are working memory. The clusters are
    ranked a round of PROBE_ROUND at a time: one pass keeps the round's best in a short sorted
    list (a cluster enters only if it beats the list's last), which costs about one comparison per
    cluster, where an argmax per probe cost a pass per cluster taken (4x the centroid scoring
    itself at 2,048 clusters and a 1,024 budget)."""
    score_centroids(centroids_t, in_ids, in_vals, n_in, scores)
    return take_best_clusters(scores, scores.shape[0], order, cluster_indptr, cluster_members, stamp_row, mark, ids, n,
                              cap)


@njit(cache=True, **INTERNAL)
def take_best_clusters(scores, n_c, order, cluster_indptr, cluster_members, stamp_row, mark, ids, n, cap):
    """probe_clusters' ranking half, from the centroid scores scores[:n_c] (overwritten: taken
    clusters become -inf): also what a query whose scores came from a batch product
    (union.py) runs."""
    width = min(n_c, order.shape[0], PROBE_ROUND)
    while n < cap:
        m = 0
        for c in range(n_c):
            v = scores[c]
            if v == -np.inf or (m == width and v <= scores[order[m - 1]]):
                continue
            if cluster_indptr[c + 1] == cluster_indptr[c]:  # an empty cluster: nothing to take
                scores[c] = -np.inf
                continue
            j = m if m < width else width - 1  # a full list drops its last
            while j > 0 and scores[order[j - 1]] < v:
                order[j] = order[j - 1]
                j -= 1
            order[j] = c
            if m < width:
                m += 1
        if m == 0:
            break
        for j in range(m):
            c = order[j]
            scores[c] = -np.inf  # taken: later rounds skip it
            for p in range(cluster_indptr[c], cluster_indptr[c + 1]):
                v = cluster_members[p]
                if stamp_row[v] != mark:
                    stamp_row[v] = mark
                    ids[n] = v
                    n += 1
                    if n >= cap:
                        return n
    return n


# ---------------------------------------------------------------------------------------------
# Building (tier 1 in Python, BLAS for the assignment; numba for the O(N D) passes).
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def sum_by_cluster(rows, bias, assign, sums, counts):
    """sums[c] += [rows[i], bias[i]] and counts[c] += 1 for c = assign[i] (serial, O(N D))."""
    d = rows.shape[1]
    for i in range(rows.shape[0]):
        c = assign[i]
        counts[c] += 1
        s = sums[c]
        r = rows[i]
        for j in range(d):
            s[j] += r[j]
        s[d] += bias[i]


@njit(parallel=True, cache=True)
def mean_by_cluster(rows, bias, cluster_indptr, cluster_members, means):
    """means[c] = mean of [rows[i], bias[i]] over cluster c's members (memberships as they are).
    Parallel over clusters, each writing its own contiguous row; an empty cluster's row is left
    as it was."""
    d = rows.shape[1]
    for c in prange(cluster_indptr.shape[0] - 1):
        lo = cluster_indptr[c]
        hi = cluster_indptr[c + 1]
        if hi <= lo:
            continue
        out = means[c]
        out[:] = 0.0
        for p in range(lo, hi):
            i = cluster_members[p]
            r = rows[i]
            for j in range(d):
                out[j] += r[j]
            out[d] += bias[i]
        inv = np.float32(1.0 / (hi - lo))
        for j in range(d + 1):
            out[j] *= inv


def refresh_centroids(rows, bias, cluster_indptr, cluster_members, centroids_t):
    """Re-centre every cluster on its members' current rows, in place in centroids_t (D + 1, L*C);
    memberships are unchanged, an empty cluster keeps its centroid. O(N D)."""
    means = np.ascontiguousarray(centroids_t.T)
    mean_by_cluster(rows, bias, cluster_indptr, cluster_members, means)
    centroids_t[...] = means.T


@njit(fastmath=True, cache=True)
def augmented_dot(r, b, cen):
    """[r, b] . cen for a row r (D,), its bias b and a centroid cen (D + 1,): fastmath here only
    (STYLE.md), where reordering the sum is what lets it vectorise."""
    d = r.shape[0]
    dot = b * cen[d]
    for j in range(d):
        dot += r[j] * cen[j]
    return dot


@njit(parallel=True, cache=True)
def assign_near(rows, bias, centroids, half_sq, neighbours, assign_in, assign_out):
    """Re-assign each row among neighbours[assign_in[i]] (the centroids nearest its current one,
    itself first): assign_out[i] = argmax_c (x.c - |c|^2 / 2) over those, ties to the earlier.
    Parallel over rows; each writes only its own output."""
    for i in prange(rows.shape[0]):
        r = rows[i]
        near = neighbours[assign_in[i]]
        best = near[0]
        best_score = augmented_dot(r, bias[i], centroids[best]) - half_sq[best]
        for m in range(1, near.shape[0]):
            c = near[m]
            score = augmented_dot(r, bias[i], centroids[c]) - half_sq[c]
            if score > best_score:
                best_score = score
                best = c
        assign_out[i] = best


def nearest_centroids(centroids: np.ndarray, m: int) -> np.ndarray:
    """(C, m) int64: for each centroid, the m centroids nearest it (itself first)."""
    sq = np.einsum("cd,cd->c", centroids, centroids)
    dist = sq[:, None] + sq[None, :] - 2.0 * (centroids @ centroids.T)
    np.fill_diagonal(dist, -np.inf)
    m = min(m, centroids.shape[0])
    near = np.argpartition(dist, m - 1, axis=1)[:, :m]
    order = np.take_along_axis(dist, near, axis=1).argsort(axis=1)
    return np.ascontiguousarray(np.take_along_axis(near, order, axis=1))


def augmented(rows: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[rows, bias] as one (n, D + 1) float32 array."""
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.float32)
    out[:, :-1] = rows
    out[:, -1] = bias
    return out


def assign_rows(rows: np.ndarray, bias: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid (Euclidean) of every row [w, b].

    rows (N, D), bias (N,), centroids (C, D + 1) float32 -> assign (N,) int32.
    argmin |x - c|^2 = argmax (x.c - |c|^2 / 2): one BLAS product per block of rows, with the
    -|c|^2 / 2 term inside it as one more coordinate ([x, 1] . [c, -|c|^2 / 2]), which saved a
    pass over the (block, C) scores (0.46 -> 0.37 s at 50,000 x 1,792 x 513 on 2 cores).
    """
    d = rows.shape[1]
    extended = np.empty((centroids.shape[0], d + 2), np.float32)
    extended[:, :d + 1] = centroids
    extended[:, d + 1] = -0.5 * np.einsum("cd,cd->c", centroids, centroids)
    n = rows.shape[0]
    assign = np.empty(n, np.int32)
    block = np.empty((min(n, ASSIGN_BLOCK_ROWS), d + 2), np.float32)
    block[:, d + 1] = 1.0
    for start in range(0, n, ASSIGN_BLOCK_ROWS):
        m = min(ASSIGN_BLOCK_ROWS, n - start)
        block[:m, :d] = rows[start:start + m]
        block[:m, d] = bias[start:start + m]
        assign[start:start + m] = np.argmax(block[:m] @ extended.T, axis=1)
    return assign


def centre(rows: np.ndarray, bias: np.ndarray, assign: np.ndarray, centroids: np.ndarray,
           rng: np.random.Generator | None = None) -> None:
    """Move each centroid (C, D + 1) to the mean of its rows. With an rng, an empty cluster is
    re-seeded on a random row (an empty cluster only costs a wasted probe, but a Lloyd iteration
    can put it to use); without, it keeps its place."""
    sums = np.zeros(centroids.shape, np.float64)
    counts = np.zeros(centroids.shape[0], np.int64)
    sum_by_cluster(rows, bias, assign, sums, counts)
    filled = counts > 0
    centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    empty = np.flatnonzero(~filled)
    if rng is not None and empty.shape[0]:
        picks = rng.choice(rows.shape[0], size=min(empty.shape[0], rows.shape[0]), replace=False)
        centroids[empty[:picks.shape[0]]] = augmented(rows[picks], bias[picks])


def member_lists(assign: np.ndarray, proj: np.ndarray, n_clusters: int):
    """CSR member lists: cluster c holds members[indptr[c]:indptr[c+1]], by descending proj."""
    order = np.lexsort((-proj, assign)).astype(np.int32)
    counts = np.bincount(assign, minlength=n_clusters)
    indptr = np.zeros(n_clusters + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, order


def initial_centroids(rows: np.ndarray, bias: np.ndarray, n_clusters: int, rng: np.random.Generator):
    """C distinct rows [w, b] drawn uniformly (k-means++ costs C passes; the Lloyd iterations and
    the rebuilds during training do the rest)."""
    picks = np.sort(rng.choice(rows.shape[0], size=n_clusters, replace=False))
    return augmented(rows[picks], bias[picks])


def auto_clusters(n_neurons: int, budget: int) -> int:
    """Clusters per table when the config says `auto`.

    A query scores every centroid, so C centroids cost what C active neurons cost; C = 2 x budget
    keeps the query within the cost of the forward and backward passes it serves, and gives
    clusters of N / (2 budget) rows, so a budget is filled from ~2x as many clusters as it could
    hold whole: fine enough that the best clusters, not the biggest, fill it. At least 8 rows a
    cluster on average, at least 2 clusters.
    """
    return int(max(2, min(2 * budget, n_neurons // 8)))


def shortcut_agreement(rows: np.ndarray, bias: np.ndarray, centroids: np.ndarray, assign: np.ndarray,
                       rng: np.random.Generator) -> float:
    """Share of VERIFY_ROWS random rows (all, if fewer) whose `assign` is their nearest centroid."""
    n = rows.shape[0]
    pick = np.sort(rng.choice(n, size=min(n, VERIFY_ROWS), replace=False))
    return float(np.mean(assign_rows(rows[pick], bias[pick], centroids) == assign[pick]))


def assign_warm(rows: np.ndarray, bias: np.ndarray, centroids: np.ndarray, previous: np.ndarray,
                rng: np.random.Generator, try_shortcut: bool = True) -> tuple[np.ndarray, bool]:
    """A warm rebuild's assignment (N,) int32 and whether the shortcut was kept: among each row's
    NEIGHBOURS nearest centroids (from `previous`), if VERIFY_AGREEMENT of a random sample agree
    with the full assignment or a full one costs more than FULL_ASSIGN_MACS; else the full
    assignment (see the module doc). try_shortcut=False: the full assignment without trying the
    shortcut first (unless a full one costs more than FULL_ASSIGN_MACS)."""
    too_costly = rows.shape[0] * centroids.shape[0] * centroids.shape[1] > FULL_ASSIGN_MACS
    if rows.shape[0] <= 4 * VERIFY_ROWS or centroids.shape[0] <= NEIGHBOURS or not (try_shortcut or too_costly):
        return assign_rows(rows, bias, centroids), False
    half_sq = (0.5 * np.einsum("cd,cd->c", centroids, centroids)).astype(np.float32)
    assign = np.empty(rows.shape[0], np.int32)
    assign_near(rows, bias, centroids, half_sq, nearest_centroids(centroids, NEIGHBOURS),
                previous.astype(np.int32), assign)
    if too_costly:
        return assign, True
    if shortcut_agreement(rows, bias, centroids, assign, rng) >= VERIFY_AGREEMENT:
        return assign, True
    return assign_rows(rows, bias, centroids), False


def cluster_rows(rows: np.ndarray, bias: np.ndarray, centroids: np.ndarray, iters: int,
                 rng: np.random.Generator, previous: np.ndarray | None = None, try_shortcut: bool = True):
    """Lloyd iterations from `centroids` (C, D + 1), updated in place: `iters` full ones (at least
    one) from scratch, or, given the `previous` assignment (N,), one warm iteration (assign_warm,
    with try_shortcut). Returns the assignment (N,) int32, its CSR member lists (indptr, members),
    with the centroids centred on exactly those members (a centroid's score is its members' mean
    logit), and whether a warm shortcut was kept."""
    kept = False
    if previous is None:
        for _ in range(max(0, iters - 1)):
            assign = assign_rows(rows, bias, centroids)
            centre(rows, bias, assign, centroids, rng)
        assign = assign_rows(rows, bias, centroids)
    else:
        assign, kept = assign_warm(rows, bias, centroids, previous, rng, try_shortcut)
    indptr, members = centre_on_members(rows, bias, assign, centroids)
    return assign, indptr, members, kept


def centre_on_members(rows: np.ndarray, bias: np.ndarray, assign: np.ndarray, centroids: np.ndarray):
    """Centre each centroid (C, D + 1, in place) on the rows `assign` gives it; returns the CSR
    member lists (indptr, members), each cluster's members by descending projection on it."""
    centre(rows, bias, assign, centroids)
    proj = np.empty(rows.shape[0], np.float32)
    # in blocks: the gathered centroids of all rows at once would be another (N, D) array
    # (1.4 GB at 670K x 512) for one dot product a row
    for start in range(0, rows.shape[0], ASSIGN_BLOCK_ROWS):
        part = slice(start, start + ASSIGN_BLOCK_ROWS)
        mine = centroids[assign[part]]
        proj[part] = np.einsum("nd,nd->n", rows[part], mine[:, :-1]) + bias[part] * mine[:, -1]
    return member_lists(assign, proj, centroids.shape[0])
