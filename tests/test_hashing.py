"""Tests for slidepy/rng.py and slidepy/hashing.py.

Kernels are compared with the slow references in tests/naive.py (exact equality of codes);
statistical tests use fixed seeds, so they are deterministic, and their tolerances are several
standard errors wide.
"""

import math

import numba
import numpy as np
import pytest
from numba import njit

import naive
from slidepy import hashing as hs
from slidepy import rng as srng
from slidepy.constants import kinds_marker

FAMILIES = [hs.FAMILY_SRP, hs.FAMILY_WTA, hs.FAMILY_DWTA, hs.FAMILY_MINHASH]


# ---------------------------------------------------------------------------------------------
# rng
# ---------------------------------------------------------------------------------------------


def test_splitmix64_known_values_and_reference():
    assert int(srng.splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF  # first splitmix64 output, seed 0
    for x in [1, 2, 12345, 2**63 + 7, 2**64 - 1]:
        assert int(srng.splitmix64(np.uint64(x))) == naive.naive_splitmix64(x)
    assert int(srng.splitmix64(-1)) == naive.naive_splitmix64(2**64 - 1)  # int64 reinterpreted
    assert int(srng.mix_seed(3, 5)) == naive.naive_mix_seed(3, 5)
    assert srng.mix_seed(3, 5) != srng.mix_seed(5, 3)
    c1, c2 = int(srng.C1), int(srng.C2)
    want = naive.naive_splitmix64(7 ^ ((11 * c1) & naive._LSH_M64) ^ ((13 * c2) & naive._LSH_M64))
    assert int(srng.derive_seed(7, 11, 13)) == want


def test_xorshift_stream_matches_reference_and_is_deterministic():
    a = srng.make_state(99, 3)
    b = srng.make_state(99, 3)
    assert a.dtype == np.uint64 and np.all(a != 0)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 3  # per-thread streams differ
    x = int(a[1])
    for _ in range(50):
        x, out = naive.naive_xorshift_next(x)
        assert int(srng.next_u64(a, 1)) == out
    assert int(a[1]) == x and a[0] == b[0]  # only state[1] advanced
    for n in [1, 7, 1000, 2**40]:
        x, want = naive.naive_randint(x, n)
        assert srng.randint(a, 1, n) == want
    st = np.zeros(1, np.uint64)
    srng.seed_state(st, 0, 0)
    assert st[0] != 0


def test_rng_uniformity_chi_square():
    state = srng.make_state(2024)
    n_bins, n_draws = 10, 40_000
    counts = np.zeros(n_bins, np.int64)
    for _ in range(n_draws):
        counts[srng.randint(state, 0, n_bins)] += 1
    expected = n_draws / n_bins
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001
    u = np.array([srng.uniform(state, 0) for _ in range(20_000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005


# ---------------------------------------------------------------------------------------------
# Kernels against the naive references
# ---------------------------------------------------------------------------------------------

# (dim, k, l, bin_size, range_pow): concatenated codes (K*bits <= range_pow) and folded ones,
# WTA slots wrapping (D > H*b) and several permutations (D < H*b).
CONFIGS = [(40, 3, 4, 8, 9), (40, 4, 3, 8, 6), (500, 2, 3, 8, 12), (7, 2, 2, 4, 4), (64, 5, 2, 2, 30)]


def _edge_and_random_inputs(dim, rng):
    yield np.zeros(0, np.int32), np.zeros(0, np.float32)  # empty
    yield np.arange(3, dtype=np.int32), np.zeros(3, np.float32)  # explicit zeros only
    yield np.array([dim - 1], np.int32), np.array([2.5], np.float32)  # one non-zero
    yield np.array([0, dim - 1], np.int32), np.array([-1.0, -3.0], np.float32)  # negatives only
    yield np.arange(dim, dtype=np.int32), -np.abs(rng.standard_normal(dim)).astype(np.float32)
    yield np.arange(dim, dtype=np.int32), np.ones(dim, np.float32)  # all ties
    for trial in range(12):
        n = int(rng.integers(1, dim + 1))
        ids = rng.choice(dim, n, replace=False).astype(np.int32)
        if trial % 2:
            ids.sort()
        vals = rng.standard_normal(n).astype(np.float32)
        if trial % 3 == 0:
            vals = np.abs(vals)
        if trial % 4 == 0:
            vals[rng.random(n) < 0.3] = 0.0
        if trial % 5 == 0:
            vals = np.round(vals).astype(np.float32)  # many exact ties
        yield ids, vals


@pytest.mark.parametrize("family", FAMILIES)
def test_hash_sparse_matches_naive(family):
    naive_fn = {hs.FAMILY_SRP: naive.naive_srp_codes, hs.FAMILY_WTA: naive.naive_wta_codes,
                hs.FAMILY_DWTA: naive.naive_dwta_codes,
                hs.FAMILY_MINHASH: naive.naive_minhash_codes}[family]
    rng = np.random.default_rng(family)
    for dim, k, l, b, range_pow in CONFIGS:
        params = hs.make_hash_params(family, dim, k, l, bin_size=b, density=0.3, seed=dim + k)
        for ids, vals in _edge_and_random_inputs(dim, rng):
            got = naive.hash_vector(params, ids, vals, range_pow)
            want = naive_fn(params, ids, vals, range_pow)
            np.testing.assert_array_equal(got, want, err_msg=f"{dim, k, l, b, range_pow} {ids} {vals}")
            assert got.min() >= 0 and got.max() < 2**range_pow


def test_srp_through_dense_projections_gives_the_csr_codes():
    """Where D * H is small, SRP hashes through proj_dense (a contiguous row per non-zero): the
    same sums in the same order as the CSR scatter, so the same codes, zeros, ties and all; the
    CSR path (proj_dense empty, as for wide inputs) is still checked against the reference."""
    rng = np.random.default_rng(11)
    for dim, k, l, b, range_pow in CONFIGS:
        params = hs.make_hash_params(hs.FAMILY_SRP, dim, k, l, density=0.3, seed=dim)
        assert params.proj_dense.shape == (dim, k * l)  # every CONFIGS shape is under DENSE_SRP_MAX
        np.testing.assert_array_equal(params.proj_dense, hs.srp_dense_projections(params).T)
        csr = params._replace(proj_dense=hs.NO_DENSE_PROJECTIONS.copy())
        for ids, vals in _edge_and_random_inputs(dim, rng):
            dense_codes = naive.hash_vector(params, ids, vals, range_pow)
            np.testing.assert_array_equal(dense_codes, naive.hash_vector(csr, ids, vals, range_pow))
            np.testing.assert_array_equal(dense_codes, naive.naive_srp_codes(csr, ids, vals, range_pow))
    wide = hs.make_hash_params(hs.FAMILY_SRP, hs.DENSE_SRP_MAX // 8 + 1, 2, 4, seed=0)  # D * H over the limit
    assert wide.proj_dense.shape == (0, 0)
    hs.validate_hash_params(wide)


def test_wta_missing_dims_are_zeros():
    """Plain WTA: a sparse vector hashes like its dense version, negatives included."""
    dim = 300
    params = hs.make_hash_params(hs.FAMILY_WTA, dim, 4, 8, bin_size=8, seed=5)
    rng = np.random.default_rng(1)
    for _ in range(10):
        ids = np.sort(rng.choice(dim, 60, replace=False)).astype(np.int32)
        vals = -np.abs(rng.standard_normal(60)).astype(np.float32)  # forces the slow rescan
        dense = np.zeros(dim, np.float32)
        dense[ids] = vals
        got = naive.hash_vector(params, ids, vals, 16)
        np.testing.assert_array_equal(got, naive.hash_vector(params, np.arange(dim, dtype=np.int32), dense, 16))
        np.testing.assert_array_equal(got, naive.naive_wta_codes(params, ids, vals, 16))


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_rows_agree_with_sparse_and_batch(family):
    """hash_rows (ids = arange(D)) == the same vectors given sparse (zeros left out), a batch of
    them, and the naive reference."""
    n_rows, dim, k, l, range_pow = 37, 50, 3, 5, 10
    params = hs.make_hash_params(family, dim, k, l, bin_size=8, seed=11)
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((n_rows, dim)).astype(np.float32)
    if family == hs.FAMILY_MINHASH:
        weights = (rng.random((n_rows, dim)) < 0.2).astype(np.float32)
    else:
        weights[rng.random((n_rows, dim)) < 0.5] = 0.0
    weights[0] = 0.0
    codes = hs.hash_rows(params, weights, range_pow)
    assert codes.shape == (n_rows, l) and codes.dtype == np.int32
    indptr = np.zeros(n_rows + 1, np.int64)
    indices, values = [], []
    for i in range(n_rows):
        nz = np.flatnonzero(weights[i]).astype(np.int32)
        indices.append(nz)
        values.append(weights[i, nz])
        indptr[i + 1] = indptr[i] + nz.size
        np.testing.assert_array_equal(naive.hash_vector(params, nz, weights[i, nz], range_pow), codes[i])
        np.testing.assert_array_equal(
            naive.naive_hash_codes(params, np.arange(dim), weights[i], range_pow), codes[i])
    batch = naive.hash_batch(params, indptr, np.concatenate(indices), np.concatenate(values), range_pow)
    np.testing.assert_array_equal(batch, codes)


def test_drivers_independent_of_thread_count():
    params = hs.make_hash_params(hs.FAMILY_DWTA, 200, 4, 16, seed=2)
    weights = np.random.default_rng(0).standard_normal((501, 200)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = hs.hash_rows(params, weights, 12)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = hs.hash_rows(params, weights, 12)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_codes_always_in_range():
    rng = np.random.default_rng(8)
    for family in FAMILIES:
        for range_pow in [1, 3, 7, 18]:
            params = hs.make_hash_params(family, 90, 6, 7, bin_size=8, seed=range_pow)
            x = rng.standard_normal((40, 90)).astype(np.float32)
            x[rng.random(x.shape) < 0.8] = 0
            codes = hs.hash_rows(params, x, range_pow)
            assert codes.min() >= 0 and codes.max() < 2**range_pow


def test_dwta_very_sparse_inputs_get_valid_codes():
    """1-3 non-zeros out of 100k dims: densification fills every bin, codes stay valid."""
    dim, k, l, range_pow = 100_000, 6, 50, 18
    params = hs.make_hash_params(hs.FAMILY_DWTA, dim, k, l, bin_size=8, seed=4)
    rng = np.random.default_rng(4)
    n_rows = 60
    nnz = rng.integers(1, 4, n_rows)
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    indices = np.concatenate([rng.choice(dim, m, replace=False) for m in nnz]).astype(np.int32)
    values = rng.random(indices.size).astype(np.float32) + 0.1
    codes = naive.hash_batch(params, indptr, indices, values, range_pow)
    assert codes.min() >= 0 and codes.max() < 2**range_pow
    for i in range(0, n_rows, 6):  # naive spot checks (the reference is slow at D = 100k)
        lo, hi = indptr[i], indptr[i + 1]
        np.testing.assert_array_equal(codes[i], naive.naive_dwta_codes(params, indices[lo:hi], values[lo:hi], range_pow))
    # Same input -> same codes; single non-zeros on different dims rarely share a code.
    one = naive.hash_vector(params, np.array([123], np.int32), np.array([1.0], np.float32), range_pow)
    again = naive.hash_vector(params, np.array([123], np.int32), np.array([7.0], np.float32), range_pow)
    other = naive.hash_vector(params, np.array([99_999], np.int32), np.array([1.0], np.float32), range_pow)
    np.testing.assert_array_equal(one, again)  # scale invariant
    assert np.mean(one == other) < 0.5
    np.testing.assert_array_equal(naive.hash_vector(params, np.zeros(0, np.int32), np.zeros(0, np.float32), range_pow),
                                  np.zeros(l, np.int32))  # empty input -> code 0 (documented)


# ---------------------------------------------------------------------------------------------
# Collision statistics
# ---------------------------------------------------------------------------------------------


def _pairs_at_cosine(rng, n_pairs, dim, cosines):
    """Unit x and y with exactly the given cosine: y = c x + sqrt(1 - c^2) z, z orthogonal to x."""
    x = rng.standard_normal((n_pairs, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = rng.standard_normal((n_pairs, dim))
    z -= (z * x).sum(1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c = np.asarray(cosines)[:, None]
    y = c * x + np.sqrt(1 - c**2) * z
    return x.astype(np.float32), y.astype(np.float32)


def _per_table_collision(params, x, y, range_pow):
    both = hs.hash_rows(params, np.ascontiguousarray(np.vstack([x, y])), range_pow)
    return (both[: len(x)] == both[len(x):]).mean(axis=1)  # per pair, over L tables


@pytest.mark.parametrize("density", [1.0, 0.33])
def test_srp_bit_collision_matches_angle(density):
    """Per-bit collision of SimHash vs 1 - theta/pi: K = 1, so each of the L = 512 tables is one
    bit; 30 pairs per cosine level gives 15k bits, standard error < 0.005; tolerance 0.025
    (the +-1 projections are only approximately Gaussian at D = 256)."""
    rng = np.random.default_rng(6)
    levels = np.array([-0.6, 0.0, 0.4, 0.8, 0.95])
    cos = np.repeat(levels, 30)
    x, y = _pairs_at_cosine(rng, cos.size, 256, cos)
    params = hs.make_hash_params(hs.FAMILY_SRP, 256, 1, 512, density=density, seed=1)
    coll = _per_table_collision(params, x, y, 1)
    for c in levels:
        got = coll[cos == c].mean()
        want = 1 - math.acos(c) / math.pi
        assert abs(got - want) < 0.025, (c, got, want)
        assert abs(hs.collision_probability(hs.FAMILY_SRP, c, 1) - want) < 1e-12


@pytest.mark.parametrize("family", [hs.FAMILY_WTA, hs.FAMILY_DWTA])
def test_wta_collision_rises_with_cosine(family):
    """Pairs with random cosine in [0, 1), bucketed into 5 similarity bins: the per-hash
    collision frequency (K = 1, L = 256) rises bin by bin, starts near 1/b for unrelated pairs
    and stays within 0.04 of collision_probability's Gaussian-model estimate."""
    rng = np.random.default_rng(7)
    cos = rng.random(250)
    x, y = _pairs_at_cosine(rng, cos.size, 128, cos)
    params = hs.make_hash_params(family, 128, 1, 256, bin_size=8, seed=2)
    coll = _per_table_collision(params, x, y, 3)
    edges = np.linspace(0, 1, 6)
    means = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (cos >= lo) & (cos < hi)
        means.append(coll[sel].mean())
        model = np.mean([hs.collision_probability(family, c, 1, 8) for c in cos[sel]])
        assert abs(means[-1] - model) < 0.04, (lo, means[-1], model)
    assert np.all(np.diff(means) > 0.03), means
    assert abs(means[0] - 1 / 8) < 0.05  # cosine in [0, 0.2): close to a random pair's 1/b


def test_dwta_sparse_collision_rises_with_overlap():
    """Sparse non-negative pairs (40 non-zeros of 5000 dims) sharing a fraction of their
    entries: DWTA per-hash collision rises with the shared fraction, ~1/b when disjoint."""
    rng = np.random.default_rng(9)
    dim, nnz, n_pairs = 5000, 40, 40
    params = hs.make_hash_params(hs.FAMILY_DWTA, dim, 1, 256, bin_size=8, seed=3)
    means = []
    for share in [0.0, 0.25, 0.5, 0.75, 1.0]:
        rows = np.zeros((2 * n_pairs, dim), np.float32)
        for p in range(n_pairs):
            support = rng.choice(dim, 2 * nnz, replace=False)
            vals = rng.random(2 * nnz).astype(np.float32) + 0.01
            m = int(share * nnz)
            rows[p, support[:nnz]] = vals[:nnz]
            rows[n_pairs + p, support[:m]] = vals[:m]
            rows[n_pairs + p, support[nnz:2 * nnz - m]] = vals[nnz:2 * nnz - m]
        codes = hs.hash_rows(params, rows, 3)
        means.append((codes[:n_pairs] == codes[n_pairs:]).mean())
    assert abs(means[0] - 1 / 8) < 0.03 and means[-1] == 1.0
    assert np.all(np.diff(means) > 0.05), means


def test_minhash_collision_tracks_jaccard():
    """b-bit MinHash (b = 8 -> 3 bits): per-hash collision ~ J + (1 - J)/8 within 0.03."""
    rng = np.random.default_rng(10)
    dim, size, n_pairs = 10_000, 60, 30
    params = hs.make_hash_params(hs.FAMILY_MINHASH, dim, 1, 256, bin_size=8, seed=4)
    for shared in [0, 20, 40, 60]:
        rows = np.zeros((2 * n_pairs, dim), np.float32)
        for p in range(n_pairs):
            ids = rng.choice(dim, 2 * size - shared, replace=False)
            rows[p, ids[:size]] = 1
            rows[n_pairs + p, ids[size - shared:]] = 1
        jac = shared / (2 * size - shared)
        codes = hs.hash_rows(params, rows, 3)
        got = (codes[:n_pairs] == codes[n_pairs:]).mean()
        assert abs(got - hs.collision_probability(hs.FAMILY_MINHASH, jac, 1, 8)) < 0.03, (jac, got)


# ---------------------------------------------------------------------------------------------
# Parameters, types, K/L suggestions, validation
# ---------------------------------------------------------------------------------------------


def test_params_deterministic_and_one_numba_type():
    a = hs.make_hash_params(hs.FAMILY_SRP, 30, 2, 3, seed=5)
    b = hs.make_hash_params(hs.FAMILY_SRP, 30, 2, 3, seed=5)
    c = hs.make_hash_params(hs.FAMILY_SRP, 30, 2, 3, seed=6)
    for f in hs.HashParams._fields:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.proj_sign, c.proj_sign) or not np.array_equal(a.proj_hash, c.proj_hash)
    saved = {"l0_" + f: getattr(a, f) for f in hs.HashParams._fields}  # checkpoint round trip
    back = hs.hash_params_from_arrays(saved, prefix="l0_")
    for f in hs.HashParams._fields:
        np.testing.assert_array_equal(getattr(back, f), getattr(a, f))
    with pytest.raises(ValueError):
        hs.hash_params_from_arrays(saved)
    layers = tuple(hs.make_hash_params(f, 20 + f, 2, 3, seed=f) for f in FAMILIES)
    assert len({str(numba.typeof(p)) for p in layers}) == 1

    @njit
    def hash_layer(layers, i, ids, vals, range_pow, out, sv, si, kinds):
        hs.hash_sparse(layers[i], ids, vals, ids.shape[0], range_pow, out, sv, si, kinds)

    ids = np.array([1, 4, 9], np.int32)
    vals = np.array([0.5, -1.0, 2.0], np.float32)
    every_family = kinds_marker(FAMILIES)  # one compile serves layers of every family
    for i, p in enumerate(layers):
        out = np.empty(3, np.int32)
        hash_layer(layers, i, ids, vals, np.int64(8), out, np.empty(6, np.float32), np.empty(6, np.int32),
                   every_family)
        np.testing.assert_array_equal(out, naive.naive_hash_codes(p, ids, vals, 8))


def test_suggest_k_l_meets_its_targets():
    for family, b in [(hs.FAMILY_SRP, 8), (hs.FAMILY_DWTA, 8), (hs.FAMILY_WTA, 16)]:
        for frac in [0.01, 0.05]:
            k, l = hs.suggest_k_l(100_000, frac, 0.9, family, b, near_similarity=0.9)
            p_near = hs.collision_probability(family, 0.9, k, b)
            assert 1 - (1 - p_near) ** l >= 0.9
            assert l * hs.random_pair_collision(family, b) ** k <= frac
            # one fewer table would miss the recall target: L is minimal for that K
            assert l == 1 or 1 - (1 - p_near) ** (l - 1) < 0.9
    k1, _ = hs.suggest_k_l(10_000, 0.1, 0.9, hs.FAMILY_SRP)
    k2, _ = hs.suggest_k_l(10_000, 0.001, 0.9, hs.FAMILY_SRP)
    assert k2 > k1


def test_wrappers_reject_bad_input():
    params = hs.make_hash_params(hs.FAMILY_SRP, 10, 2, 2, seed=0)
    w = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError):
        hs.hash_rows(params, w.astype(np.float64), 8)
    with pytest.raises(ValueError):
        hs.hash_rows(params, np.zeros((3, 11), np.float32), 8)
    with pytest.raises(ValueError):
        hs.hash_rows(params, w, 0)
    with pytest.raises(ValueError):
        hs.hash_rows(params, w, 8, codes_out=np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError):
        hs.make_hash_params(hs.FAMILY_WTA, 10, 2, 2, bin_size=6, seed=0)
    with pytest.raises(ValueError):
        hs.make_hash_params(7, 10, 2, 2, seed=0)
    bad = params._replace(spec=params.spec.astype(np.int32))
    with pytest.raises(ValueError):
        hs.hash_rows(bad, w, 8)


@pytest.mark.parametrize("n_tail", [0, 2])
def test_srp_blas_rebuild_matches_sparse_kernel(n_tail):
    """The BLAS path used for table rebuilds gives the sparse kernel's codes (ties aside), with the
    last n_tail columns passed beside the rows as a tail (a rebuild's bias and slack)."""
    from slidepy.hashing import hash_rows_srp_blas

    rng = np.random.default_rng(5)
    joined = rng.standard_normal((3000, 48)).astype(np.float32)
    rows, tail = np.ascontiguousarray(joined[:, :48 - n_tail]), np.ascontiguousarray(joined[:, 48 - n_tail:])
    for k, l, range_pow in [(6, 10, 6), (12, 8, 9)]:  # concatenated and folded codes
        params = hs.make_hash_params(hs.FAMILY_SRP, 48, k, l, density=0.33, seed=k)
        exact = hs.hash_rows(params, joined, range_pow)
        fast = hash_rows_srp_blas(params, rows, range_pow, np.zeros_like(exact), tail=tail if n_tail else None,
                                  block_rows=1000)
        assert np.mean(fast == exact) > 0.999


def test_srp_blas_rebuild_rejects_rows_and_tail_that_do_not_make_a_row():
    from slidepy.hashing import hash_rows_srp_blas

    params = hs.make_hash_params(hs.FAMILY_SRP, 10, 4, 3, density=0.5, seed=0)
    rows = np.zeros((5, 8), np.float32)
    with pytest.raises(ValueError, match="together"):
        hash_rows_srp_blas(params, rows, 8, None)  # 8 columns and no tail for 10 dims
    with pytest.raises(ValueError, match="together"):
        hash_rows_srp_blas(params, rows, 8, None, tail=np.zeros((4, 2), np.float32))
    assert hash_rows_srp_blas(params, rows, 8, None, tail=np.zeros((5, 2), np.float32)).shape == (5, 3)


def test_squared_row_norms_match_numpy():
    from slidepy.hashing import squared_row_norms

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, 33)).astype(np.float32)
    rows[7] = 0.0
    bias = rng.standard_normal(500).astype(np.float32)
    out = np.empty(500, np.float32)
    squared_row_norms(rows, bias, out)
    want = (rows.astype(np.float64) ** 2).sum(axis=1) + bias.astype(np.float64) ** 2
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert out[7] == np.float32(np.float64(bias[7]) ** 2)
