"""LSH hash families: one function hashes both a neuron's weight row (to insert it) and an input.

Shape letters: D input dimension, N neurons (rows hashed), B batch size, K hashes per table,
L tables, H = K * L hashes in all, b = bin_size (WTA-type bins), S = H * b WTA slots,
P = number of permutations of the D dims, T threads, R = 2**range_pow buckets per table.

Every family maps a *sparse vector* `(ids int32[:n], vals float32[:n], n)` to L integer bucket
codes in `[0, 2**range_pow)`. A dense row is hashed as `ids = arange(D)`, and zeros given
explicitly hash exactly like zeros left out (tested), so a weight row and a sparse sample that
are equal as vectors get the same codes. Input ids must be distinct and in `[0, D)`; values must
be finite. The family is an integer code (constants.FAMILY_*):

- `FAMILY_SRP` (signed random projections, SimHash): H sparse +-1 projections, each with
  `round(density * D)` non-zeros; piece = 1 if the float32 projection sum is > 0 else 0. The
  projections are stored input-dim-major as CSR (`proj_indptr`, `proj_hash`, `proj_sign`), so
  hashing costs O(nnz(x) * H * density); over few dims (D * H <= DENSE_SRP_MAX) also as a dense
  (D, H) matrix (`proj_dense`), through which a vector adds one contiguous row per non-zero:
  O(nnz(x) * H), in SIMD, with the same sums.
- `FAMILY_WTA` (winner take all): the S = H*b slots are laid along P random permutations of the
  D dims: position g = p*D + j of permutation p goes to slot c = g % S (hash c // b, slot c % b)
  when g < max(S, D), and nowhere otherwise. So every dim lands in at least one slot; when
  D > S (P = 1) the positions wrap and a slot holds several dims (its value is their max). The
  piece of hash h is the argmax slot of its b slot values, ties to the smallest slot. Missing
  dims of a sparse input are zeros, exactly as if the vector were dense: a slot with a missing
  dim has value max(0, present values). (Implementation: per bin the best present value and a
  count of present occurrences; if the bin is full or its best value is > 0 the best slot wins;
  an empty bin gives slot 0; a non-full bin whose best value is <= 0 takes the smallest slot
  with a missing dim or an explicit zero, found by a slow rescan. That last case needs negative
  or explicit-zero input values; it never occurs for non-negative sparse inputs.)
- `FAMILY_DWTA` (densified WTA, Chen & Shrivastava 2018; SLIDE's default for sparse inputs):
  the same slots, but only non-zero values take part (zero values are skipped). A bin with no
  non-zero is filled by densification: with key = dens_key | 1, probe bin
  `(((key * ((h << 32) + attempt) mod 2**64) >> 32) * H) >> 32` (multiply-shift) for
  attempt = 1, 2, ... up to `DENSIFY_ATTEMPTS` until it hits a donor bin that was non-empty
  before densification; if all attempts miss, the donor is the first non-empty bin among
  h+1, h+2, ... (mod H). Bin h's piece is the donor's piece plus an offset
  `(splitmix64(key ^ OFFSET_SALT ^ donor << 32 ^ h) >> 40) mod b`, so that inputs whose
  donors differ do not copy the same few slots everywhere (without it, two different single
  non-zeros with the same slot would collide in every table; rotation densification, Shrivastava
  & Li 2014, adds its offset for the same reason). Donor and offset depend only on which bins
  are non-empty, so similar vectors still collide. An input with no non-zero value gives code 0
  in every table.
- `FAMILY_MINHASH` for binary sparse inputs (the set of ids with non-zero value): hash h is
  min over ids of `(a_h * id + b_h) >> 33` (multiply-add-shift, 2-universal for 32-bit ids;
  a_h odd). Its piece is the low log2(b) bits of the minimum (b-bit minwise hashing). An input
  with no non-zero value gives code 0 in every table.

Table codes: table t uses hashes t*K .. t*K + K-1. With `bits` bits per piece (1 for SRP,
log2(b) otherwise), if K * bits <= range_pow the code is the concatenation
`code = (((p0 << bits) | p1) << bits | ...)`; otherwise the pieces are folded by
`acc = splitmix64(acc ^ piece)` from `acc = FOLD_SEED` and the code is the top range_pow bits.

Three tiers: `make_hash_params` (Python, draws parameters) -> `hash_rows` (Python, validates)
-> `hash_rows_parallel` (njit parallel driver; per-chunk scratch allocated before the prange;
the chunk count T is an argument because numba cannot cache a function that calls
`numba.get_num_threads()`) -> `hash_sparse` (njit serial worker, no allocation). The per-sample
LSH query (selection.py) calls `hash_sparse` directly with per-thread scratch `(T, H)` float32
and int32. `hash_sparse` takes a `kinds` marker (constants.kinds_marker): only the families
whose slot is not None are compiled into it, so a caller that hashes SRP never compiles WTA.

Cost per vector: SRP O(nnz * H * density) scatter-adds (O(nnz * H) vector adds where dense);
WTA/DWTA O(nnz * P) updates plus O(H) (densification is O(1) per empty bin: at most
DENSIFY_ATTEMPTS probes, then a precomputed next-non-empty pointer); MinHash O(nnz * H).
Measured on a loaded 2-core box, one thread, 128-d dense rows: DWTA K=6 L=50 ~20 us, WTA ~23 us,
SRP K=9 L=50 density 0.33 ~45 us.
"""

import math
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .constants import (
    FAMILY_DWTA,
    FAMILY_MINHASH,
    FAMILY_NAMES,
    FAMILY_SRP,
    FAMILY_WTA,
    INTERNAL,
    KIND_DWTA,
    KIND_MINHASH,
    KIND_SRP,
    KIND_WTA,
    MAX_CODE_BITS,
    kinds_marker,
)
from .rng import generator, splitmix64

# Layout of HashParams.spec (int64).
SPEC_FAMILY = 0
SPEC_DIM = 1  # D
SPEC_K = 2
SPEC_L = 3
SPEC_BIN_SIZE = 4  # b (stored for SRP too, unused there)
SPEC_BITS = 5  # bits per piece: 1 for SRP, log2(b) otherwise
SPEC_N_HASHES = 6  # H = K * L
SPEC_N_PERMS = 7  # P (WTA/DWTA), 0 otherwise
SPEC_LEN = 8

DENSIFY_ATTEMPTS = 32
FOLD_SEED = np.uint64(0x6A09E667F3BCC909)
_U32 = np.uint64(32)
_U33 = np.uint64(33)
_U40 = np.uint64(40)
_OFFSET_SALT = np.uint64(0x5851F42D4C957F2D)
_MINHASH_EMPTY = np.int32(2147483647)


class HashParams(NamedTuple):
    """Parameters of one layer's hash functions; every field exists for every family.

    Fields a family does not use are empty arrays of the same dtype and ndim, so the params of
    all layers have one numba type and a tuple of them can be indexed inside njit code.

    spec        (SPEC_LEN,) int64   family, D, K, L, b, bits, H, P (see SPEC_* indices)
    proj_indptr (D+1,) int64        SRP: CSR row pointer over input dims; else (0,)
    proj_hash   (nnz,) int32        SRP: projection (hash) index of each non-zero
    proj_sign   (nnz,) float32      SRP: +1 or -1
    dim_map     (D, P) int32        WTA/DWTA: slot c = hash*b + slot of (dim, permutation), or -1;
                                    else (0, 0)
    mh_a        (H,) uint64         MinHash multipliers (odd); else (0,)
    mh_b        (H,) uint64         MinHash offsets; else (0,)
    dens_key    (1,) uint64         DWTA densification key (drawn for every family)
    proj_dense  (D, H) float32      SRP over few dims (D * H <= DENSE_SRP_MAX): the same projections
                                    as a dense matrix, input-dim-major; else (0, 0). Derived from
                                    the CSR (with_dense_projections), never drawn.
    """

    spec: np.ndarray
    proj_indptr: np.ndarray
    proj_hash: np.ndarray
    proj_sign: np.ndarray
    dim_map: np.ndarray
    mh_a: np.ndarray
    mh_b: np.ndarray
    dens_key: np.ndarray
    proj_dense: np.ndarray


# --------------------------------------------------------------------------------------------
# Parameter generation (Python)
# --------------------------------------------------------------------------------------------


def _is_pow2(x):
    return x >= 1 and (x & (x - 1)) == 0


def make_hash_params(family, dim, k, l, *, bin_size=8, density=0.33, seed):
    """Draw the parameters of H = k * l hash functions of `family` over `dim` input dims.

    bin_size: WTA/DWTA bin size b and MinHash piece width (log2(b) bits); a power of two >= 2.
    density: SRP fraction of input dims each projection reads (at least one dim).
    seed: any int; the same arguments and seed give identical params.
    """
    family, dim, k, l, bin_size = int(family), int(dim), int(k), int(l), int(bin_size)
    if family not in FAMILY_NAMES:
        raise ValueError(f"make_hash_params: unknown family code {family}")
    if dim < 1 or k < 1 or l < 1:
        raise ValueError(f"make_hash_params: need dim, k, l >= 1, got {dim}, {k}, {l}")
    if family != FAMILY_SRP and (bin_size < 2 or not _is_pow2(bin_size)):
        raise ValueError(f"make_hash_params: bin_size must be a power of two >= 2, got {bin_size}")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"make_hash_params: density must be in (0, 1], got {density}")
    n_hashes = k * l
    bits = 1 if family == FAMILY_SRP else int(bin_size).bit_length() - 1
    rng = generator(seed, family, dim)  # the stream SeedSequence([seed, family, dim]) gives
    empty_i64 = np.zeros(0, np.int64)
    empty_i32 = np.zeros(0, np.int32)
    empty_f32 = np.zeros(0, np.float32)
    empty_u64 = np.zeros(0, np.uint64)
    proj_indptr, proj_hash, proj_sign = empty_i64, empty_i32, empty_f32
    dim_map = np.zeros((0, 0), np.int32)
    mh_a, mh_b = empty_u64, empty_u64
    n_perms = 0

    if family == FAMILY_SRP:
        m = max(1, int(round(density * dim)))
        dims = np.empty(n_hashes * m, np.int64)
        for h in range(n_hashes):
            dims[h * m:(h + 1) * m] = rng.choice(dim, size=m, replace=False)
        hashes = np.repeat(np.arange(n_hashes, dtype=np.int64), m)
        signs = np.where(rng.random(n_hashes * m) < 0.5, -1.0, 1.0).astype(np.float32)
        order = np.lexsort((hashes, dims))  # by dim, then hash
        proj_hash = hashes[order].astype(np.int32)
        proj_sign = signs[order]
        proj_indptr = np.zeros(dim + 1, np.int64)
        np.cumsum(np.bincount(dims, minlength=dim), out=proj_indptr[1:])
    elif family in (FAMILY_WTA, FAMILY_DWTA):
        n_slots = n_hashes * bin_size
        n_perms = max(1, -(-n_slots // dim))
        top = max(n_slots, dim)
        dim_map = np.full((dim, n_perms), -1, np.int32)
        for p in range(n_perms):
            perm = rng.permutation(dim)
            g = p * dim + np.arange(dim, dtype=np.int64)
            ok = g < top
            dim_map[perm[ok], p] = (g[ok] % n_slots).astype(np.int32)
    else:  # MinHash
        mh_a = rng.integers(0, 2**64, size=n_hashes, dtype=np.uint64) | np.uint64(1)
        mh_b = rng.integers(0, 2**64, size=n_hashes, dtype=np.uint64)
    dens_key = rng.integers(0, 2**64, size=1, dtype=np.uint64)
    spec = np.array([family, dim, k, l, bin_size, bits, n_hashes, n_perms], dtype=np.int64)
    return with_dense_projections(HashParams(
        spec=spec,
        proj_indptr=np.ascontiguousarray(proj_indptr),
        proj_hash=np.ascontiguousarray(proj_hash),
        proj_sign=np.ascontiguousarray(proj_sign),
        dim_map=np.ascontiguousarray(dim_map),
        mh_a=np.ascontiguousarray(mh_a),
        mh_b=np.ascontiguousarray(mh_b),
        dens_key=dens_key,
        proj_dense=NO_DENSE_PROJECTIONS.copy(),
    ))


# SRP hashes a vector through the dense (D, H) projections when they hold at most this many floats
# (1 MB, within a core's L2): each non-zero input adds a contiguous row of H floats, which SIMD
# does 8 or 16 at a time, where the CSR scatters H * density adds one by one. The sums are the
# same, added in the same order (the zeros add nothing), so the codes are identical.
DENSE_SRP_MAX = 1 << 18
NO_DENSE_PROJECTIONS = np.zeros((0, 0), np.float32)


def with_dense_projections(params):
    """params with proj_dense filled from the SRP CSR where D * H <= DENSE_SRP_MAX, else (0, 0)."""
    family, dim, n_hashes = int(params.spec[SPEC_FAMILY]), int(params.spec[SPEC_DIM]), int(params.spec[SPEC_N_HASHES])
    if family != FAMILY_SRP or not 0 < dim * n_hashes <= DENSE_SRP_MAX:
        return params._replace(proj_dense=NO_DENSE_PROJECTIONS.copy())
    return params._replace(proj_dense=np.ascontiguousarray(srp_dense_projections(params).T))


_FIELD_TYPES = {
    "spec": (np.int64, 1), "proj_indptr": (np.int64, 1), "proj_hash": (np.int32, 1),
    "proj_sign": (np.float32, 1), "dim_map": (np.int32, 2), "mh_a": (np.uint64, 1),
    "mh_b": (np.uint64, 1), "dens_key": (np.uint64, 1), "proj_dense": (np.float32, 2),
}


def validate_hash_params(params):
    """Raise ValueError unless `params` is a well-formed HashParams (dtypes, ndims, shapes)."""
    if not isinstance(params, HashParams):
        raise ValueError(f"expected HashParams, got {type(params).__name__}")
    for name, (dtype, ndim) in _FIELD_TYPES.items():
        a = getattr(params, name)
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
            raise ValueError(f"HashParams.{name}: need {ndim}-d {np.dtype(dtype)} ndarray")
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"HashParams.{name}: must be C-contiguous and writeable "
                             "(use np.array(..., copy=True)) so all layers share one numba type")
    if params.spec.shape[0] != SPEC_LEN:
        raise ValueError(f"HashParams.spec: need length {SPEC_LEN}")
    fam, dim, k, l, _, _, n_hashes, n_perms = (int(v) for v in params.spec)
    if fam not in FAMILY_NAMES or n_hashes != k * l:
        raise ValueError("HashParams.spec: inconsistent family/k/l/H")
    if fam == FAMILY_SRP and params.proj_indptr.shape[0] != dim + 1:
        raise ValueError("HashParams.proj_indptr: need shape (D+1,)")
    if fam in (FAMILY_WTA, FAMILY_DWTA) and params.dim_map.shape != (dim, n_perms):
        raise ValueError("HashParams.dim_map: need shape (D, P)")
    if fam == FAMILY_MINHASH and (params.mh_a.shape[0] != n_hashes or params.mh_b.shape[0] != n_hashes):
        raise ValueError("HashParams.mh_a/mh_b: need shape (H,)")
    if params.dens_key.shape[0] != 1:
        raise ValueError("HashParams.dens_key: need shape (1,)")
    if params.proj_dense.size and (fam != FAMILY_SRP or params.proj_dense.shape != (dim, n_hashes)):
        raise ValueError("HashParams.proj_dense: need shape (D, H) for SRP, or (0, 0)")


def hash_params_from_arrays(arrays, prefix=""):
    """Rebuild HashParams from a mapping of arrays (e.g. an np.load'ed checkpoint) holding the
    fields under `prefix + field`; copies into fresh C-contiguous writeable arrays and validates.
    Save with `{prefix + f: getattr(params, f) for f in HashParams._fields}`. proj_dense is
    derived from the CSR, never read (checkpoints from before it existed load alike)."""
    try:
        fields = {f: np.array(arrays[prefix + f], dtype=_FIELD_TYPES[f][0], copy=True, order="C")
                  for f in HashParams._fields if f != "proj_dense"}
    except KeyError as err:
        raise ValueError(f"hash params: missing array {err}") from None
    params = with_dense_projections(HashParams(**fields, proj_dense=NO_DENSE_PROJECTIONS.copy()))
    validate_hash_params(params)
    return params


def _check_range_pow(range_pow):
    if not 1 <= int(range_pow) <= MAX_CODE_BITS:
        raise ValueError(f"range_pow must be in [1, {MAX_CODE_BITS}], got {range_pow}")


# --------------------------------------------------------------------------------------------
# Serial worker
# --------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def _combine_pieces(spec, pieces, range_pow, codes_out):
    """codes_out[t] from pieces[t*K:(t+1)*K] (low `bits` bits of each): concatenate or fold."""
    k = spec[SPEC_K]
    n_tables = spec[SPEC_L]
    bits = spec[SPEC_BITS]
    mask = np.uint64((1 << bits) - 1)
    fits = k * bits <= range_pow
    shift_top = np.uint64(64 - range_pow)
    ubits = np.uint64(bits)
    for t in range(n_tables):
        if fits:
            acc = np.uint64(0)
            for j in range(k):
                acc = (acc << ubits) | (np.uint64(pieces[t * k + j]) & mask)
            codes_out[t] = np.int32(acc)
        else:
            acc = FOLD_SEED
            for j in range(k):
                acc = splitmix64(acc ^ (np.uint64(pieces[t * k + j]) & mask))
            codes_out[t] = np.int32(acc >> shift_top)


@njit(cache=True, **INTERNAL)
def _hash_srp(params, ids, vals, n, scratch_vals, scratch_idx):
    n_hashes = params.spec[SPEC_N_HASHES]
    indptr = params.proj_indptr
    proj_hash = params.proj_hash
    proj_sign = params.proj_sign
    dense = params.proj_dense
    for h in range(n_hashes):
        scratch_vals[h] = np.float32(0.0)
    for e in range(n):
        v = vals[e]
        if v == 0:  # adding +-0 would not change any sum
            continue
        d = ids[e]
        if dense.shape[0] > 0:  # few dims: a contiguous row of H, vectorised (DENSE_SRP_MAX)
            row = dense[d]
            for h in range(n_hashes):
                scratch_vals[h] += v * row[h]
        else:
            for q in range(indptr[d], indptr[d + 1]):
                scratch_vals[proj_hash[q]] += v * proj_sign[q]
    for h in range(n_hashes):
        scratch_idx[h] = 1 if scratch_vals[h] > 0 else 0


@njit(cache=True, **INTERNAL)
def _slot_occurrences(c, dim, n_slots):
    """How many (dim, permutation) positions map to global slot c."""
    if dim > n_slots:
        return dim // n_slots + (1 if c < dim % n_slots else 0)
    return 1


@njit(cache=True, **INTERNAL)
def _hash_wta(params, ids, vals, n, scratch_vals, scratch_idx):
    """Plain WTA; while scanning, scratch_idx[h] packs (present count << log2 b) | best slot."""
    spec = params.spec
    dim = spec[SPEC_DIM]
    b = spec[SPEC_BIN_SIZE]
    lb = spec[SPEC_BITS]
    smask = b - 1
    n_hashes = spec[SPEC_N_HASHES]
    n_perms = spec[SPEC_N_PERMS]
    n_slots = n_hashes * b
    dim_map = params.dim_map
    for h in range(n_hashes):
        scratch_vals[h] = -np.inf
        scratch_idx[h] = 0
    for e in range(n):
        v = vals[e]
        d = ids[e]
        for p in range(n_perms):
            c = dim_map[d, p]
            if c < 0:
                continue
            h = c >> lb
            s = c & smask
            packed = scratch_idx[h]
            best = packed & smask
            if v > scratch_vals[h] or (v == scratch_vals[h] and s < best):
                scratch_vals[h] = v
                best = s
            scratch_idx[h] = (((packed >> lb) + 1) << lb) | best
    q = dim // n_slots if dim > n_slots else 1
    r = dim % n_slots if dim > n_slots else 0
    for h in range(n_hashes):
        packed = scratch_idx[h]
        cnt = packed >> lb
        best = packed & smask
        full = b * q + min(max(r - h * b, 0), b)
        if cnt == full or scratch_vals[h] > 0:
            scratch_idx[h] = best
        elif cnt == 0:
            scratch_idx[h] = 0
        else:
            # Best present value <= 0 and some dim missing (= 0): the winner is the smallest
            # slot whose value is 0, i.e. with a missing dim or an explicit zero. Rare path.
            winner = b - 1
            for s in range(b):
                c = h * b + s
                n_present = 0
                slot_max = -np.inf
                for e in range(n):
                    for p in range(n_perms):
                        if dim_map[ids[e], p] == c:
                            n_present += 1
                            if vals[e] > slot_max:
                                slot_max = vals[e]
                if n_present < _slot_occurrences(c, dim, n_slots) or slot_max == 0:
                    winner = s
                    break
            scratch_idx[h] = winner


@njit(cache=True, **INTERNAL)
def _densify_probe(key, h, attempt, n_hashes):
    """Bin probed for empty bin h at `attempt`: multiply-shift hash of (h, attempt) into [0, H)."""
    x = (key * ((np.uint64(h) << _U32) + np.uint64(attempt))) >> _U32
    return np.int64((x * np.uint64(n_hashes)) >> _U32)


@njit(cache=True, **INTERNAL)
def _hash_dwta(params, ids, vals, n, scratch_vals, scratch_idx):
    """Densified WTA over the non-zeros; returns False when the input has no non-zero."""
    spec = params.spec
    b = spec[SPEC_BIN_SIZE]
    lb = spec[SPEC_BITS]
    smask = b - 1
    n_hashes = spec[SPEC_N_HASHES]
    n_perms = spec[SPEC_N_PERMS]
    dim_map = params.dim_map
    for h in range(n_hashes):
        scratch_vals[h] = -np.inf
        scratch_idx[h] = 0
    n_nonzero = 0
    for e in range(n):
        v = vals[e]
        if v == 0:
            continue
        n_nonzero += 1
        d = ids[e]
        for p in range(n_perms):
            c = dim_map[d, p]
            if c < 0:
                continue
            h = c >> lb
            s = c & smask
            if v > scratch_vals[h] or (v == scratch_vals[h] and s < scratch_idx[h]):
                scratch_vals[h] = v
                scratch_idx[h] = s
    if n_nonzero == 0:
        return False
    # From here scratch_vals only marks bins: 1.0 = non-empty before densification, and for an
    # empty bin -(g + 1) where g is the first non-empty bin after it (circularly), the fallback
    # donor. Probes only ever copy from bins that were non-empty (order independent).
    n_empty = 0
    for h in range(n_hashes):
        if scratch_vals[h] == -np.inf:
            n_empty += 1
        else:
            scratch_vals[h] = np.float32(1.0)
    if n_empty == 0:
        return True
    nxt = -1
    for i in range(2 * n_hashes - 1, -1, -1):
        h = i - n_hashes if i >= n_hashes else i
        if scratch_vals[h] > 0:
            nxt = h
        elif i < n_hashes:
            scratch_vals[h] = np.float32(-(nxt + 1))
    key = params.dens_key[0] | np.uint64(1)
    for h in range(n_hashes):
        if scratch_vals[h] > 0:
            continue
        donor = np.int64(-scratch_vals[h]) - 1
        for attempt in range(1, DENSIFY_ATTEMPTS + 1):
            g = _densify_probe(key, h, attempt, n_hashes)
            if scratch_vals[g] > 0:
                donor = g
                break
        off = splitmix64(key ^ _OFFSET_SALT ^ (np.uint64(donor) << _U32) ^ np.uint64(h))
        scratch_idx[h] = (scratch_idx[donor] + np.int64(off >> _U40)) & smask
    return True


@njit(cache=True, **INTERNAL)
def _hash_minhash(params, ids, vals, n, scratch_idx):
    """b-bit MinHash of the set {ids[e] : vals[e] != 0}; returns False when that set is empty."""
    n_hashes = params.spec[SPEC_N_HASHES]
    mh_a = params.mh_a
    mh_b = params.mh_b
    for h in range(n_hashes):
        scratch_idx[h] = _MINHASH_EMPTY
    n_nonzero = 0
    for e in range(n):
        if vals[e] == 0:
            continue
        n_nonzero += 1
        x = np.uint64(ids[e])
        for h in range(n_hashes):
            hv = np.int32((mh_a[h] * x + mh_b[h]) >> _U33)
            if hv < scratch_idx[h]:
                scratch_idx[h] = hv
    return n_nonzero > 0


@njit(cache=True, **INTERNAL)
def _hash_pieces(params, ids, vals, n, scratch_vals, scratch_idx, srp, wta, dwta, minhash):
    """The per-hash pieces of (ids[:n], vals[:n]) into scratch_idx[:H]; False if the family gives
    every table code 0 (DWTA / MinHash of an input without non-zeros). srp .. minhash: the slots of
    the kinds marker; a None slot's branch is pruned before typing, so its family is not compiled."""
    family = params.spec[SPEC_FAMILY]
    if srp is not None:
        if family == FAMILY_SRP:
            _hash_srp(params, ids, vals, n, scratch_vals, scratch_idx)
            return True
    if wta is not None:
        if family == FAMILY_WTA:
            _hash_wta(params, ids, vals, n, scratch_vals, scratch_idx)
            return True
    if dwta is not None:
        if family == FAMILY_DWTA:
            return _hash_dwta(params, ids, vals, n, scratch_vals, scratch_idx)
    if minhash is not None:
        if family == FAMILY_MINHASH:
            return _hash_minhash(params, ids, vals, n, scratch_idx)
    return False  # a family the marker leaves out: the Python owners never let this happen


@njit(cache=True)
def hash_sparse(params, ids, vals, n, range_pow, codes_out, scratch_vals, scratch_idx, kinds):
    """Hash the sparse vector (ids[:n], vals[:n]) into codes_out[:L] (int32 in [0, 2**range_pow)).

    params: HashParams. ids int32 (distinct, in [0, D)), vals float32 (finite).
    scratch_vals (>= H,) float32 and scratch_idx (>= H,) int32: per-thread scratch, overwritten.
    kinds: constants.kinds_marker tuple; its slot for params' family must not be None.
    Serial, allocation free. Family chosen by params.spec[SPEC_FAMILY].
    """
    if _hash_pieces(params, ids, vals, n, scratch_vals, scratch_idx, kinds[KIND_SRP], kinds[KIND_WTA],
                    kinds[KIND_DWTA], kinds[KIND_MINHASH]):
        _combine_pieces(params.spec, scratch_idx, range_pow, codes_out)
    else:
        for t in range(params.spec[SPEC_L]):
            codes_out[t] = 0


# --------------------------------------------------------------------------------------------
# Parallel drivers
# --------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def hash_rows_parallel(params, weights, range_pow, codes_out, n_chunks, kinds):
    """codes_out[i] = codes of dense row weights[i] (N, D) float32, hashed as ids = arange(D).

    prange over n_chunks contiguous row blocks (rows cost the same; pass the thread count T);
    scratch (n_chunks, H) is allocated before the loop. n_chunks is an argument because calling
    numba.get_num_threads() inside a function stops numba from caching it.
    """
    n_rows = weights.shape[0]
    dim = weights.shape[1]
    n_hashes = params.spec[SPEC_N_HASHES]
    n_chunks = max(1, min(n_chunks, n_rows))
    scratch_vals = np.empty((n_chunks, n_hashes), np.float32)
    scratch_idx = np.empty((n_chunks, n_hashes), np.int32)
    ids = np.arange(dim, dtype=np.int32)
    for chunk in prange(n_chunks):
        c = np.int64(chunk)  # parfors type the index unsigned: one int64 type for every callee
        lo = c * n_rows // n_chunks
        hi = (c + 1) * n_rows // n_chunks
        for i in range(lo, hi):
            hash_sparse(params, ids, weights[i], dim, range_pow, codes_out[i], scratch_vals[c], scratch_idx[c],
                        kinds)


# --------------------------------------------------------------------------------------------
# Public Python wrappers
# --------------------------------------------------------------------------------------------


def _check_array(name, a, dtype, ndim):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        raise ValueError(f"{name}: need a {ndim}-d {np.dtype(dtype)} ndarray, got "
                         f"{getattr(a, 'dtype', type(a))} with ndim {getattr(a, 'ndim', '?')}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous")


def _check_codes_out(codes_out, n_rows, n_tables):
    if codes_out is None:
        return np.empty((n_rows, n_tables), np.int32)
    _check_array("codes_out", codes_out, np.int32, 2)
    if codes_out.shape != (n_rows, n_tables):
        raise ValueError(f"codes_out: need shape {(n_rows, n_tables)}, got {codes_out.shape}")
    return codes_out


def hash_rows(params, weights, range_pow, codes_out=None):
    """Codes (N, L) int32 of every row of weights (N, D) float32 (a layer's neurons)."""
    validate_hash_params(params)
    _check_range_pow(range_pow)
    _check_array("weights", weights, np.float32, 2)
    dim = int(params.spec[SPEC_DIM])
    if weights.shape[1] != dim:
        raise ValueError(f"weights: need {dim} columns, got {weights.shape[1]}")
    codes_out = _check_codes_out(codes_out, weights.shape[0], int(params.spec[SPEC_L]))
    if weights.shape[0] > 0:
        hash_rows_parallel(params, weights, np.int64(range_pow), codes_out, np.int64(numba.get_num_threads()),
                           kinds_marker([params.spec[SPEC_FAMILY]]))
    return codes_out


def srp_dense_projections(params):
    """The SRP projections as a dense (H, D) float32 matrix (zeros where a projection skips a dim),
    built from the CSR."""
    dim = int(params.spec[SPEC_DIM])
    dense = np.zeros((int(params.spec[SPEC_N_HASHES]), dim), np.float32)
    dims = np.repeat(np.arange(dim), np.diff(params.proj_indptr))
    dense[params.proj_hash, dims] = params.proj_sign
    return dense


@njit(parallel=True, cache=True, fastmath=True)
def squared_row_norms(rows, bias, out):
    """out[i] = |rows[i]|^2 + bias[i]^2: rows (N, D) float32, bias and out (N,) float32; summed in
    float64 (fastmath: a dot product, vectorised). The norms the MIPS transform's slack is made of
    (lsh.py), in parallel where numpy's einsum took one thread (34 ms of a 670K-row rebuild)."""
    for i in prange(rows.shape[0]):
        total = np.float64(bias[i]) * np.float64(bias[i])
        row = rows[i]
        for d in range(row.shape[0]):
            total += np.float64(row[d]) * np.float64(row[d])
        out[i] = np.float32(total)


@njit(parallel=True, cache=True)
def combine_sign_rows(spec, products, tail, tail_projections, range_pow, codes_out, signs):
    """codes_out[i] = table codes of the SRP bits of products[i] + tail[i] @ tail_projections
    (N, H) float32 (1 where > 0), as hash_sparse combines them: products are the BLAS products of
    a block of rows with the projections' first D' dims (added to in place), tail (N, E) the
    block's last E columns and tail_projections (E, H) the projections' last E dims (E = 0:
    none), each added as one contiguous row, in SIMD. signs (T, H) int32: one row of bits per
    thread chunk. Taking the products as they come from BLAS spares the (N, H) boolean and int32
    copies the bits used to travel through (a third of a 670K-row hashing at 1 thread)."""
    n_rows = products.shape[0]
    n_hashes = products.shape[1]
    n_tail = tail.shape[1]
    n_chunks = signs.shape[0]
    for chunk in prange(n_chunks):
        c = np.int64(chunk)
        bits = signs[c]
        for i in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
            row = products[i]
            for t in range(n_tail):
                coefficient = tail[i, t]
                projection = tail_projections[t]
                for j in range(n_hashes):
                    row[j] += coefficient * projection[j]
            for j in range(n_hashes):
                bits[j] = 1 if row[j] > 0.0 else 0
            _combine_pieces(spec, bits, range_pow, codes_out[i])


# Rows hashed per BLAS block in a rebuild. A block's products (rows x L*K float32: 9.8 MB at 4,096 x
# 600) stay under glibc's largest mmap threshold (32 MB), so each block reuses the heap memory the
# last one freed; blocks of 32,768 rows (78 MB) were mapped afresh each time, and the kernel faulted
# in and zeroed 1.6 GB of pages per 670K-row rebuild. A full rebuild of the 670K shape at 1 thread:
# 1.91-1.97 -> 1.69 s (hashing 1.04-1.09 -> 0.81-0.84 s; medians of 6).
HASH_BLOCK_ROWS = 1 << 12


def split_projections(params, n_tail):
    """The SRP projections as dense float32 (head (H, D - n_tail), tail (n_tail, H)), each
    C-contiguous: hash_rows_srp_blas multiplies the rows by the head in BLAS and adds the tail
    columns' share in combine_sign_rows."""
    dense = srp_dense_projections(params)
    width = dense.shape[1] - n_tail
    return np.ascontiguousarray(dense[:, :width]), np.ascontiguousarray(dense[:, width:].T)


def hash_rows_srp_blas(params, weights, range_pow, codes_out, *, tail=None, projections=None,
                       block_rows=HASH_BLOCK_ROWS):
    """SRP codes of every row [weights[i], tail[i]] through one BLAS matrix product per block:
    weights (N, D') float32 and tail (N, D - D') float32 (default none). A rebuild passes the
    MIPS transform's bias and slack columns as the tail (lsh.py), so that the weight rows go to
    BLAS as they are, not through a transformed copy made on one thread (20% of a 670K-row
    hashing at 2 threads). projections: split_projections(params, D - D'), where the caller keeps
    them between rebuilds.

    Rebuilding the tables of a 670K-neuron layer hashes 670K rows; as a GEMM against the dense
    (H, D) projections this runs at BLAS speed instead of one sparse dot per (row, hash). A kernel
    that sums each +-1 projection's columns of a transposed block instead (a third of the adds,
    in hash_sparse's order) ran no faster here: 1.2 s at 1 thread against BLAS' 1.1 (2026-12-07).
    The sums are added in another order than hash_sparse's, so a projection within rounding of
    zero can flip its bit: the codes agree with hash_rows except for such ties (tested), which
    an approximate index does not notice.
    """
    if int(params.spec[SPEC_FAMILY]) != FAMILY_SRP:
        raise ValueError("hash_rows_srp_blas: params are not SRP")
    _check_range_pow(range_pow)
    _check_array("weights", weights, np.float32, 2)
    n_rows, dim = weights.shape[0], int(params.spec[SPEC_DIM])
    tail = np.zeros((n_rows, 0), np.float32) if tail is None else tail
    _check_array("tail", tail, np.float32, 2)
    if tail.shape[0] != n_rows or weights.shape[1] + tail.shape[1] != dim:
        raise ValueError(f"weights {weights.shape} and tail {tail.shape}: need {n_rows} rows of {dim} columns together")
    head, tail_projections = split_projections(params, tail.shape[1]) if projections is None else projections
    codes_out = _check_codes_out(codes_out, n_rows, int(params.spec[SPEC_L]))
    signs = np.empty((numba.get_num_threads(), head.shape[0]), np.int32)
    for start in range(0, n_rows, block_rows):
        block = slice(start, start + block_rows)
        combine_sign_rows(params.spec, weights[block] @ head.T, tail[block], tail_projections, np.int64(range_pow),
                          codes_out[block], signs)
    return codes_out


# --------------------------------------------------------------------------------------------
# Collision probabilities and choosing K, L
# --------------------------------------------------------------------------------------------


_WTA_GRID = np.linspace(-1.0, 1.0, 81)


@lru_cache(maxsize=16)
def _wta_collision_curve(bin_size, n_trials=100_000):
    """P(argmax x == argmax y) over b coordinates of Gaussian pairs with correlation rho, on
    the grid _WTA_GRID. No closed form for b > 2 (b = 2 gives 1 - arccos(rho)/pi); estimated by
    Monte Carlo with a fixed seed and the same draws for every rho (deterministic, smooth in
    rho), standard error below 0.0016."""
    rng = np.random.default_rng(12345)
    x = rng.standard_normal((n_trials, bin_size))
    z = rng.standard_normal((n_trials, bin_size))
    ax = np.argmax(x, axis=1)
    curve = np.empty(_WTA_GRID.size)
    for i, rho in enumerate(_WTA_GRID):
        y = rho * x + math.sqrt(max(0.0, 1.0 - rho * rho)) * z
        curve[i] = np.mean(ax == np.argmax(y, axis=1))
    curve[-1] = 1.0
    return curve


def _wta_bin_collision(rho, bin_size):
    """Linear interpolation of _wta_collision_curve at rho in [-1, 1]."""
    return float(np.interp(rho, _WTA_GRID, _wta_collision_curve(int(bin_size))))


def collision_probability(family, similarity, k=1, bin_size=8):
    """Probability that two vectors share one table's code (K hashes) at the given similarity.

    SRP: similarity = cosine; per bit 1 - arccos(s)/pi (exact for Gaussian projections,
      close for sparse +-1 projections in high D).
    WTA / DWTA: similarity = cosine, under the model that the bin's coordinates are Gaussian
      pairs with that correlation (Monte Carlo table, see _wta_collision_curve; about 0.5 s the
      first time per bin size); a random pair gives 1/b.
    MINHASH: similarity = Jaccard J; per b-bit minhash J + (1 - J) / b (b = bin_size).
    Returns p_hash ** k (hashes are independent), ignoring the 2**-range_pow chance of a
    collision by folding.
    """
    s = float(similarity)
    if family == FAMILY_SRP:
        s = min(1.0, max(-1.0, s))
        p = 1.0 - math.acos(s) / math.pi
    elif family in (FAMILY_WTA, FAMILY_DWTA):
        s = min(1.0, max(-1.0, s))
        p = _wta_bin_collision(s, bin_size)
    elif family == FAMILY_MINHASH:
        s = min(1.0, max(0.0, s))
        p = s + (1.0 - s) / bin_size
    else:
        raise ValueError(f"collision_probability: unknown family {family}")
    return p ** int(k)


def random_pair_collision(family, bin_size=8):
    """Per-hash collision probability of an unrelated pair: 1/2 for SRP, 1/b otherwise."""
    return 0.5 if family == FAMILY_SRP else 1.0 / bin_size


def tables_for_recall(p: float, target_recall: float) -> float:
    """The L tables that retrieve a neuron sharing one table's code with probability p with
    probability >= target_recall: ceil(log(1 - R) / log(1 - p)), through log1p so that a p below
    float precision (WTA at K 32) stays finite; 1 for p >= 1, inf for p <= 0."""
    if p >= 1.0:
        return 1
    if p <= 0.0:
        return math.inf
    return max(1, math.ceil(math.log(1.0 - target_recall) / math.log1p(-p)))


def suggest_k_l(n_neurons, target_active_fraction, target_recall, family, bin_size=8, *,
                near_similarity=0.8, max_k=32, max_l=1024):
    """Choose (K, L) so a near neuron is retrieved with probability >= target_recall while about
    target_active_fraction of the N neurons are retrieved.

    Reasoning (classic LSH amplification): a neuron at similarity `near_similarity` to the query
    (cosine for SRP/WTA/DWTA, Jaccard for MinHash; 0.8 by default) shares one table's code with
    probability p_near**K, so over L tables it is missed with probability (1 - p_near**K)**L;
    recall >= R needs L = ceil(log(1 - R) / log(1 - p_near**K)). An unrelated neuron shares a
    code with probability p_far**K per table (p_far = 1/2 for SRP, 1/b for WTA-type and b-bit
    MinHash), so the fraction retrieved is about min(1, L * p_far**K). Larger K shrinks that
    fraction faster than it grows L, so we take the smallest K whose fraction is <= the target
    (the target is raised to 1/N: at least one neuron). If none fits with L <= max_l, we return
    the K with L <= max_l that retrieves the smallest fraction.
    """
    n_neurons = int(n_neurons)
    if n_neurons < 1:
        raise ValueError("suggest_k_l: n_neurons must be >= 1")
    if not 0.0 < target_active_fraction <= 1.0:
        raise ValueError("suggest_k_l: target_active_fraction must be in (0, 1]")
    if not 0.0 < target_recall < 1.0:
        raise ValueError("suggest_k_l: target_recall must be in (0, 1)")
    target = max(float(target_active_fraction), 1.0 / n_neurons)
    p_near = collision_probability(family, near_similarity, 1, bin_size)
    p_far = random_pair_collision(family, bin_size)
    best = None
    for k in range(1, max_k + 1):
        l = tables_for_recall(p_near ** k, target_recall)
        if l > max_l:
            break
        frac = min(1.0, l * p_far ** k)
        if frac <= target:
            return k, l
        if best is None or frac < best[2]:
            best = (k, l, frac)
    if best is None:
        return 1, max_l
    return best[0], best[1]
