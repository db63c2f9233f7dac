"""Tests for slidepy/tables.py: building (FIFO, reservoir), union queries, candidate policies,
and end-to-end LSH retrieval of planted near neighbours."""

import numba
import numpy as np
import pytest

import naive
from slidepy import constants as const
from slidepy import hashing as hs
from slidepy import tables as tb


def _random_codes(rng, n_items, n_tables, n_buckets):
    return rng.integers(0, n_buckets, (n_items, n_tables)).astype(np.int32)


def _build(codes, order, policy, seed, n_tables, range_pow, cap):
    buckets, counts = tb.make_tables(n_tables, range_pow, cap)
    tb.build_tables(codes, order, policy, seed, buckets, counts)
    return buckets, counts


def test_make_tables_and_bytes():
    buckets, counts = tb.make_tables(3, 4, 8)
    assert buckets.shape == (3, 16, 8) and buckets.dtype == np.int32 and np.all(buckets == -1)
    assert counts.shape == (3, 16) and counts.dtype == np.int32 and np.all(counts == 0)
    assert tb.table_bytes(3, 4, 8) == buckets.nbytes + counts.nbytes
    assert tb.table_bytes(50, 18, 128) == 50 * 2**18 * 129 * 4
    with pytest.raises(ValueError):
        tb.make_tables(3, 4, 6)  # capacity not a power of two


@pytest.mark.parametrize("policy", [const.INSERT_FIFO, const.INSERT_RESERVOIR])
def test_build_matches_naive(policy):
    rng = np.random.default_rng(policy)
    n_items, n_tables, range_pow, cap = 300, 5, 4, 8  # ~19 items per bucket: many overflow
    codes = _random_codes(rng, n_items, n_tables, 2**range_pow)
    order = rng.permutation(n_items).astype(np.int32)
    buckets, counts = _build(codes, order, policy, 77, n_tables, range_pow, cap)
    want_b, want_c = naive.naive_build_tables(codes, order, policy, 77, n_tables, 2**range_pow, cap)
    np.testing.assert_array_equal(buckets, want_b)
    np.testing.assert_array_equal(counts, want_c)
    # occupancy: exactly min(count, C) ids, all in slots [0, occupancy), no repeats
    for t in range(n_tables):
        for r in range(2**range_pow):
            occ = min(counts[t, r], cap)
            row = buckets[t, r]
            assert np.all(row[:occ] >= 0) and np.all(row[occ:] == -1)
            assert len(set(row[:occ].tolist())) == occ
            assert np.all(codes[row[:occ], t] == r)
            assert counts[t, r] == np.sum(codes[:, t] == r)


@pytest.mark.parametrize("n_rows", [0, 1, tb.TRANSPOSE_BLOCK_ROWS - 1, tb.TRANSPOSE_BLOCK_ROWS,
                                    3 * tb.TRANSPOSE_BLOCK_ROWS + 17])
def test_table_major_is_the_transpose(n_rows):
    codes = _random_codes(np.random.default_rng(n_rows), n_rows, 7, 64)
    out = np.full((7, n_rows), -5, np.int32)
    tb.table_major(codes, out)
    np.testing.assert_array_equal(out, codes.T)


def test_fifo_keeps_the_last_c_inserted():
    rng = np.random.default_rng(1)
    n_items, n_tables, range_pow, cap = 200, 3, 3, 4
    codes = _random_codes(rng, n_items, n_tables, 2**range_pow)
    order = rng.permutation(n_items).astype(np.int32)
    buckets, counts = _build(codes, order, const.INSERT_FIFO, 0, n_tables, range_pow, cap)
    for t in range(n_tables):
        for r in range(2**range_pow):
            inserted = [int(i) for i in order if codes[i, t] == r]
            kept = sorted(x for x in buckets[t, r].tolist() if x >= 0)
            assert kept == sorted(inserted[-cap:])


def test_reservoir_keeps_each_item_with_probability_c_over_n():
    """64 items into one bucket of capacity 8, 512 tables x 6 seeds = 3072 reservoirs: every item
    is kept ~ 3072 * 8/64 = 384 times. Chi-square over the 64 items with the 63-dof critical
    value at p = 0.001 (103.4); conservative, since sampling without replacement makes the
    counts less variable than independent cells."""
    n, cap, n_tables = 64, 8, 512
    codes = np.zeros((n, n_tables), np.int32)
    order = np.arange(n, dtype=np.int32)  # insertion position == id: tests position fairness
    kept = np.zeros(n, np.int64)
    for seed in range(6):
        buckets, counts = _build(codes, order, const.INSERT_RESERVOIR, seed, n_tables, 1, cap)
        assert np.all(counts[:, 0] == n) and np.all(counts[:, 1] == 0)
        assert np.all((buckets[:, 0] >= 0).sum(axis=1) == cap)  # exactly C kept
        for t in range(n_tables):
            assert len(set(buckets[t, 0].tolist())) == cap
        kept += np.bincount(buckets[:, 0].ravel(), minlength=n)
    expected = 6 * n_tables * cap / n
    chi2 = float(((kept - expected) ** 2 / expected).sum())
    assert chi2 < 103.4, chi2


def test_build_deterministic_across_runs_and_threads():
    rng = np.random.default_rng(2)
    codes = _random_codes(rng, 5000, 16, 2**6)
    order = rng.permutation(5000).astype(np.int32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in [1, numba.config.NUMBA_NUM_THREADS, 1]:
            numba.set_num_threads(threads)
            results.append(_build(codes, order, const.INSERT_RESERVOIR, 9, 16, 6, 32))
    finally:
        numba.set_num_threads(before)
    for b, c in results[1:]:
        np.testing.assert_array_equal(b, results[0][0])
        np.testing.assert_array_equal(c, results[0][1])
    # rebuilding into used tables clears them first
    buckets, counts = results[0]
    tb.build_tables(codes[:10], np.arange(10, dtype=np.int32), const.INSERT_FIFO, 0, buckets, counts)
    assert counts.sum() == 10 * 16 and (buckets >= 0).sum() == 10 * 16


def _tables_for_queries(seed=3, n_items=400, n_tables=6, range_pow=3, cap=16):
    rng = np.random.default_rng(seed)
    codes = _random_codes(rng, n_items, n_tables, 2**range_pow)
    order = rng.permutation(n_items).astype(np.int32)
    buckets, counts = _build(codes, order, const.INSERT_RESERVOIR, seed, n_tables, range_pow, cap)
    queries = _random_codes(rng, 40, n_tables, 2**range_pow)
    return rng, n_items, buckets, counts, queries


def test_query_union_equals_set_union():
    rng, n_items, buckets, counts, queries = _tables_for_queries()
    stamp = np.zeros(n_items, np.int32)
    hits = np.full(n_items, 12345, np.int32)  # garbage: must not need a reset
    out = np.full(n_items, -1, np.int32)
    for q, codes in enumerate(queries):
        stamp_value = q + 1
        n_forced = q % 3
        forced = rng.choice(n_items, n_forced, replace=False).astype(np.int32)
        out[:n_forced] = forced
        stamp[forced] = stamp_value
        n = naive.query_union(buckets, counts, codes, stamp, stamp_value, hits, out, n_forced, n_items)
        got = out[n_forced:n].tolist()
        assert len(got) == len(set(got))  # no duplicates
        want_set = set()
        for t in range(buckets.shape[0]):
            bucket = buckets[t, codes[t], : min(counts[t, codes[t]], buckets.shape[2])]
            want_set |= set(bucket.tolist())
        assert set(got) == want_set - set(forced.tolist())
        want_order, want_hits = naive.naive_query_union(buckets, counts, codes, skip=forced)
        assert got == want_order  # probe order
        assert all(hits[i] == want_hits[i] for i in got)
        assert all(stamp[i] == stamp_value for i in got)
        # capped: the first max_out - n_forced ids of the same order
        cap_n = n_forced + len(want_order) // 2
        stamp_value = 10_000 + q
        stamp[forced] = stamp_value
        n = naive.query_union(buckets, counts, codes, stamp, stamp_value, hits, out, n_forced, cap_n)
        assert n == cap_n and out[n_forced:n].tolist() == want_order[: cap_n - n_forced]


@pytest.mark.parametrize("policy", [const.POLICY_VANILLA, const.POLICY_TOPK, const.POLICY_THRESHOLD])
def test_select_candidates_matches_naive(policy):
    rng, n_items, buckets, counts, queries = _tables_for_queries(seed=4)
    n_tables, cap = buckets.shape[0], buckets.shape[2]
    stamp = np.zeros(n_items, np.int32)
    hits = np.zeros(n_items, np.int32)
    scratch = np.empty(tb.query_scratch_size(n_tables, cap), np.int32)
    out = np.full(200, -1, np.int32)
    stamp_value = 0
    for q, codes in enumerate(queries):
        for max_out in [0, 3, 20, 60, 200]:
            for min_hits in [1, 2, 3]:
                stamp_value += 1
                n_forced = min(q % 4, max_out)
                forced = rng.choice(n_items, n_forced, replace=False).astype(np.int32)
                out[:n_forced] = forced
                stamp[forced] = stamp_value
                n = tb.select_candidates(policy, buckets, counts, codes, stamp, stamp_value, hits,
                                         out, n_forced, max_out, min_hits, scratch)
                want = naive.naive_select_candidates(policy, buckets, counts, codes,
                                                     forced.tolist(), max_out, min_hits)
                assert out[:n].tolist() == want, (policy, q, max_out, min_hits)
                # stamp == stamp_value exactly for the returned ids among the union
                union, _ = naive.naive_query_union(buckets, counts, codes, skip=forced)
                assert all((stamp[i] == stamp_value) == (i in want) for i in union)


def test_topk_prefers_ids_hit_by_more_tables():
    # item 5 is in every table's bucket 0, item 6 in two tables, the rest in one each.
    buckets, counts = tb.make_tables(4, 1, 4)
    for t in range(4):
        buckets[t, 0, :2] = [10 + t, 5]
        counts[t, 0] = 2
    buckets[0, 0, 2] = 6
    buckets[3, 0, 2] = 6
    counts[0, 0] = counts[3, 0] = 3
    codes = np.zeros(4, np.int32)
    stamp = np.zeros(20, np.int32)
    hits = np.zeros(20, np.int32)
    out = np.full(8, -1, np.int32)
    scratch = np.empty(tb.query_scratch_size(4, 4), np.int32)
    n = tb.select_candidates(const.POLICY_TOPK, buckets, counts, codes, stamp, 1, hits, out, 0, 3, 1, scratch)
    assert out[:n].tolist() == [10, 5, 6]  # 5 (4 hits), 6 (2), then 10 wins the tie by probe order
    n = tb.select_candidates(const.POLICY_THRESHOLD, buckets, counts, codes, stamp, 2, hits, out, 0, 8, 2, scratch)
    assert out[:n].tolist() == [5, 6]


def test_select_candidates_in_a_batch_matches_naive():
    """One stamp row reused across queries (a fresh stamp value each), as the engine does."""
    _, n_items, buckets, counts, queries = _tables_for_queries(seed=5)
    one = naive.select_batch(const.POLICY_TOPK, buckets, counts, queries, n_items, 25)
    for q, codes in enumerate(queries):
        want = naive.naive_select_candidates(const.POLICY_TOPK, buckets, counts, codes, [], 25, 1)
        assert one[0][q, : one[1][q]].tolist() == want
        assert np.all(one[0][q, one[1][q]:] == -1)


def test_wrappers_reject_bad_input():
    buckets, counts = tb.make_tables(2, 3, 4)
    codes = np.zeros((5, 2), np.int32)
    order = np.arange(5, dtype=np.int32)
    with pytest.raises(ValueError):
        tb.build_tables(codes + 8, order, const.INSERT_FIFO, 0, buckets, counts)  # code >= R
    with pytest.raises(ValueError):
        tb.build_tables(codes[:, :1].copy(), order, const.INSERT_FIFO, 0, buckets, counts)
    with pytest.raises(ValueError):
        tb.build_tables(codes, order.astype(np.int64), const.INSERT_FIFO, 0, buckets, counts)
    with pytest.raises(ValueError):
        tb.build_tables(codes, order + 1, const.INSERT_FIFO, 0, buckets, counts)  # id 5 out of range
    with pytest.raises(ValueError):
        tb.build_tables(codes, order, 7, 0, buckets, counts)


# ---------------------------------------------------------------------------------------------
# Retrieval of planted near neighbours, end to end (hashing + tables)
# ---------------------------------------------------------------------------------------------


def _recall(codes, qcodes, planted, range_pow, cap):
    """Build FIFO tables from codes (N, L), query with qcodes (Q, L) (vanilla, no cap) and
    return (fraction of queries whose planted id is retrieved, mean fraction retrieved)."""
    n_items, n_tables = codes.shape
    order = np.random.default_rng(0).permutation(n_items).astype(np.int32)
    buckets, counts = tb.make_tables(n_tables, range_pow, cap)
    tb.build_tables(codes, order, const.INSERT_FIFO, 0, buckets, counts)
    ids, n = naive.select_batch(const.POLICY_VANILLA, buckets, counts, qcodes, n_items, n_items)
    found = np.array([planted[q] in ids[q, : n[q]] for q in range(len(qcodes))])
    return found.mean(), n.mean() / n_items


def test_srp_retrieval_recall_of_planted_neighbours():
    """4000 random unit vectors in 64-D; each query has cosine 0.9 to one of them (which is
    then its brute-force nearest neighbour). suggest_k_l(target recall 0.99 at cosine 0.9,
    5% retrieved) gives K = 9, L = 17: a model recall of 0.99 (Gaussian-projection formula).
    We assert >= 0.95, four standard errors of a 300-query estimate below the model, with
    buckets big enough (C = 64 for ~8 items per bucket) that FIFO drops almost nothing."""
    rng = np.random.default_rng(11)
    n_items, dim, n_queries = 4000, 64, 300
    base = rng.standard_normal((n_items, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    planted = rng.choice(n_items, n_queries, replace=False)
    queries = _near(base[planted], rng, 0.9)
    assert np.all(np.argmax(queries @ base.T, axis=1) == planted)  # planted == brute-force top-1
    k, l = hs.suggest_k_l(n_items, 0.05, 0.99, hs.FAMILY_SRP, near_similarity=0.9)
    assert (k, l) == (9, 17)
    params = hs.make_hash_params(hs.FAMILY_SRP, dim, k, l, density=1.0, seed=1)
    recall, frac = _recall(hs.hash_rows(params, base, k), hs.hash_rows(params, queries, k),
                           planted, k, 64)
    assert recall >= 0.95, recall
    assert frac < 0.1, frac  # about 5% expected


def _near(x, rng, cosine):
    """Unit vectors at exactly `cosine` to the unit rows of x."""
    z = rng.standard_normal(x.shape)
    z -= (z * x).sum(1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return np.ascontiguousarray((cosine * x + np.sqrt(1 - cosine**2) * z).astype(np.float32))


def _distinct(rng, dim, m, exclude=()):
    """m distinct ids drawn uniformly from [0, dim) minus `exclude` (fast for m << dim)."""
    while True:
        x = rng.integers(0, dim, 4 * m + 8)
        x = x[~np.isin(x, exclude)]
        _, first = np.unique(x, return_index=True)
        if first.size >= m:
            return x[np.sort(first)][:m]


def _csr(rows):
    indptr = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])]).astype(np.int64)
    indices = np.concatenate([r[0] for r in rows]).astype(np.int32)
    values = np.concatenate([r[1] for r in rows]).astype(np.float32)
    return indptr, indices, values


def test_dwta_retrieval_recall_on_sparse_inputs():
    """4000 sparse non-negative vectors (32 non-zeros of 20000 dims); each query keeps 80% of
    a planted vector's entries and replaces the rest with fresh ones. With K = 4, L = 24 and
    b = 8 a matching bin collides with probability about 0.8 (its max is among the kept
    entries and not beaten by the new ones), so a table matches with about 0.8**4 = 0.41 and
    the model recall is 1 - 0.59**24 > 0.99999; we assert >= 0.97 (300 queries) and that
    under 2% of the items are retrieved (random pairs: 24 / 8**4 = 0.6%)."""
    rng = np.random.default_rng(12)
    n_items, dim, nnz, n_queries = 4000, 20_000, 32, 300
    base = [(_distinct(rng, dim, nnz), rng.random(nnz) + 0.01) for _ in range(n_items)]
    planted = rng.choice(n_items, n_queries, replace=False)
    queries = []
    for q in planted:
        ids, vals = base[q]
        keep = rng.permutation(nnz)[: nnz - nnz // 5]
        fresh = _distinct(rng, dim, nnz // 5, exclude=ids)
        queries.append((np.concatenate([ids[keep], fresh]),
                        np.concatenate([vals[keep], rng.random(nnz // 5) + 0.01])))
    params = hs.make_hash_params(hs.FAMILY_DWTA, dim, 4, 24, bin_size=8, seed=2)
    codes = naive.hash_batch(params, *_csr(base), 12)
    qcodes = naive.hash_batch(params, *_csr(queries), 12)
    recall, frac = _recall(codes, qcodes, planted, 12, 32)
    assert recall >= 0.97, recall
    assert frac < 0.02, frac
