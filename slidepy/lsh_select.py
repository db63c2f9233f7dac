"""The per-sample LSH selector, called from the kernels' serial worker (no allocation).

A cluster index (lsh.family kmeans, clusters.py) scores the input against every centroid and
takes the members of the best clusters. A hash index hashes the layer's input (the sparse features for layer 0, the previous layer's active
activations otherwise) with the same functions that hashed the weight rows, then append the
candidates of the probed buckets to the active set after any forced ids (true labels), under
the layer's policy (vanilla union, top-k by tables hit, or hit-count threshold).
"""

from numba import njit

from .clusters import probe_clusters
from .hashing import hash_sparse
from .lsh import INDEX_CLUSTERS, SET_BIAS_DIM, SET_KIND, SET_POLICY, SET_RANGE_POW, SET_THRESHOLD
from .tables import select_candidates


@njit(cache=True)
def select_lsh(lsh, scr, t, in_ids, in_vals, n_in, ids, n, budget, stamp_row, mark):
    """Append LSH candidates to ids[n:budget]; returns the new length.

    lsh: LshLayer; scr: LayerScratch of the layer (codes, hash and query scratch row t).
    """
    if lsh.settings[SET_KIND] == INDEX_CLUSTERS:  # the cluster scores live in the hash-work row
        return probe_clusters(lsh.centroids_t, lsh.cluster_indptr, lsh.cluster_members, in_ids, in_vals, n_in,
                              scr.hash_vals[t], stamp_row, mark, ids, n, budget)
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
                scr.hash_idx[t])
    return select_candidates(lsh.settings[SET_POLICY], lsh.buckets, lsh.counts, codes, stamp_row, mark,
                             scr.hits[t], ids, n, budget, lsh.settings[SET_THRESHOLD], scr.query_buf[t])
