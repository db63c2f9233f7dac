"""Flat LSH bucket tables: build from hash codes, query a union of buckets, pick candidates.

Shape letters: N items (neurons) that can be stored, L tables, R = 2**range_pow buckets per
table, C bucket capacity (a power of two), B batch of queries, A active-set capacity,
T thread chunks.

State is two arrays:
    buckets (L, R, C) int32   item ids, -1 = empty slot
    counts  (L, R)    int32   inserts ever attempted into the bucket since the last clear;
                              the bucket holds min(count, C) items, in slots [0, min(count, C))
Insert policies (integer codes, constants.INSERT_*):
    INSERT_FIFO      ring: slot = count & (C-1); a full bucket overwrites its oldest item, so it
                     keeps the last C items inserted.
    INSERT_RESERVOIR reservoir sampling: the first C items fill the slots; item number `count`
                     (0-based) then replaces slot j = randint(count + 1) if j < C, so each of the
                     n items inserted is kept with probability C/n. RNG state is explicit.
`build_tables` clears and fills all tables; `prange` runs over tables (each thread owns whole
tables, so no races), and table t draws from its own stream seeded by mix_seed(seed, t), so the
result is identical for any thread count.

Queries: the union of the L probed buckets `buckets[t, codes[t], :]` in probe order (table 0
slots 0.., then table 1, ...), deduplicated with a per-thread stamp array (N,) int32:
`stamp[id] == stamp_value` means "already in the set". The caller picks a fresh stamp_value per
query, so nothing is ever cleared. The number of tables that returned each candidate is kept in
`hits` (N,) int32; hits[id] is set to 1 when id is first seen in a query and incremented after,
so hits needs no reset; it is meaningful only for the ids this query added (ids the caller
stamped beforehand, e.g. true labels, get their hits entry incremented but never read).
Candidate policies (integer codes, constants.POLICY_*):
    POLICY_VANILLA   union in probe order, stopping when the output is full
    POLICY_TOPK      the candidates hit by the most tables; ties go to the earlier in probe order
    POLICY_THRESHOLD candidates hit by >= min_hits tables, in probe order, until the output is full
Output ids always stay in probe order. After `select_candidates`, an id taken from the tables
has stamp == stamp_value iff it is in the output (un-picked ids are reset to stamp_value - 1).
"""

import numpy as np
from numba import njit, prange

from .constants import (
    INSERT_FIFO,
    INSERT_RESERVOIR,
    INTERNAL,
    MAX_RANGE_POW,
    POLICY_THRESHOLD,
    POLICY_TOPK,
)
from .rng import mix_seed, randint, seed_state
from .prefetch import PREFETCH_ITEMS, prefetch_item


def _is_pow2(x):
    return x >= 1 and (x & (x - 1)) == 0


def table_bytes(l, range_pow, capacity):
    """Bytes of buckets (L, R, C) int32 plus counts (L, R) int32."""
    n_buckets = int(l) * (1 << int(range_pow))
    return n_buckets * int(capacity) * 4 + n_buckets * 4


def make_tables(l, range_pow, capacity):
    """Empty tables: buckets (L, 2**range_pow, C) int32 filled with -1, counts (L, R) int32 zeros."""
    if int(l) < 1 or not 1 <= int(range_pow) <= MAX_RANGE_POW:
        raise ValueError(f"make_tables: need l >= 1 and range_pow in [1, {MAX_RANGE_POW}]")
    if not _is_pow2(int(capacity)):
        raise ValueError(f"make_tables: capacity must be a power of two, got {capacity}")
    n_buckets = 1 << int(range_pow)
    return (np.full((int(l), n_buckets, int(capacity)), -1, np.int32),
            np.zeros((int(l), n_buckets), np.int32))


def query_scratch_size(l, capacity):
    """Length of the int32 scratch that select_candidates needs: L*C (union) + L + 1 (histogram)."""
    return int(l) * int(capacity) + int(l) + 1


# --------------------------------------------------------------------------------------------
# Insertion and building
# --------------------------------------------------------------------------------------------


@njit(cache=True, **INTERNAL)
def fill_table(slots, counts, codes, order, insert_policy, state, si):
    """Clear one table and insert items order[0], order[1], ... with the FIFO or reservoir rule.

    slots (R, C) int32 and counts (R,) int32: the table; codes (N,) int32: each item's bucket in
    it. state (uint64 array) / si: the RNG stream used by INSERT_RESERVOIR (unused for FIFO).
    Counts are int32: fewer than 2**31 inserts per bucket between clears.
    The worker sees one table's slices, not (L, R, C) arrays and a table index: with the 3-d
    indexing of the whole tables in the loop, a 670K-row fill of 50 tables took 0.60 s at 1 thread;
    on a table's own slices, 0.26 s (same output).
    """
    cap = slots.shape[1]
    slots[:, :] = -1
    counts[:] = 0
    for j in range(order.shape[0]):
        item = order[j]
        code = codes[item]
        cnt = counts[code]
        if insert_policy == INSERT_FIFO:
            slots[code, cnt & (cap - 1)] = item
        elif cnt < cap:
            slots[code, cnt] = item
        else:
            slot = randint(state, si, np.int64(cnt) + 1)
            if slot < cap:
                slots[code, slot] = item
        counts[code] = cnt + 1


@njit(parallel=True, cache=True)
def build_tables_parallel(codes_t, order, insert_policy, seed, buckets, counts):
    """Clear all tables, then insert items order[0], order[1], ... (item i goes to codes_t[t, i]).

    codes_t (L, N) int32 in [0, R): table-major, so that a table reads its own codes contiguously
    (from the neuron-major (N, L) codes each table's pass read a cache line per item: 50 passes over
    a 670K x 50 code array at the 670K shape); order (M,) int32 item ids (pass a random permutation
    so FIFO does not favour high ids); seed: reservoir streams. prange over tables.
    """
    n_tables = buckets.shape[0]
    state = np.empty(n_tables, np.uint64)
    for t in range(n_tables):
        seed_state(state, t, mix_seed(seed, np.uint64(t)))
    for table in prange(n_tables):
        t = np.int64(table)  # parfors type the index unsigned: one int64 type for every callee
        fill_table(buckets[t], counts[t], codes_t[t], order, insert_policy, state, t)


# Rows per block of table_major's transpose: a block's codes (256 x L int32) stay in L1 while its
# L output rows are written.
TRANSPOSE_BLOCK_ROWS = 256


@njit(parallel=True, cache=True)
def table_major(codes, out):
    """out (L, N) = codes (N, L).T, in parallel blocks of rows. numpy's copy of the transpose took
    0.18 s for the 670K x 50 codes at 1 thread, this 0.04 s."""
    n_rows, n_tables = codes.shape
    n_blocks = (n_rows + TRANSPOSE_BLOCK_ROWS - 1) // TRANSPOSE_BLOCK_ROWS
    for block in prange(n_blocks):
        lo = block * TRANSPOSE_BLOCK_ROWS
        hi = min(n_rows, lo + TRANSPOSE_BLOCK_ROWS)
        for t in range(n_tables):
            for i in range(lo, hi):
                out[t, i] = codes[i, t]


# --------------------------------------------------------------------------------------------
# Queries (serial workers)
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def union_candidates(buckets, counts, codes, stamp, stamp_value, hits, out_ids, n_already, max_out):
    """Union of the L buckets buckets[t, codes[t]], appended after out_ids[:n_already].

    codes (L,) int32; stamp (N,) int32 and hits (N,) int32 per thread; out_ids (>= max_out,)
    int32. Ids already stamped with stamp_value (e.g. forced labels) are skipped. Stops when
    max_out ids are in out_ids (then hits are only partly counted). Returns the new length n.
    """
    n_tables = buckets.shape[0]
    cap = buckets.shape[2]
    n = n_already
    for t in range(n_tables):
        code = codes[t]
        occ = min(counts[t, code], cap)
        bucket = buckets[t, code]
        for s in range(occ):
            if s + PREFETCH_ITEMS < occ:  # the items are scattered over the layer: see prefetch.py
                ahead = bucket[s + PREFETCH_ITEMS]
                if ahead >= 0:
                    prefetch_item(stamp, ahead)
                    prefetch_item(hits, ahead)
            item = bucket[s]
            if item < 0:
                continue
            if stamp[item] == stamp_value:
                hits[item] += 1
            else:
                if n >= max_out:
                    return n
                stamp[item] = stamp_value
                hits[item] = 1
                out_ids[n] = item
                n += 1
    return n


@njit(cache=True)
def select_candidates(policy, buckets, counts, codes, stamp, stamp_value, hits, out_ids,
                      n_already, max_out, min_hits, scratch):
    """Append LSH candidates after the n_already ids in out_ids, up to max_out in all.

    The engine first writes forced ids (true labels) into out_ids[:n_already] and sets their
    stamp to stamp_value, then calls this. policy: POLICY_VANILLA, POLICY_TOPK (most tables
    hit, ties by probe order) or POLICY_THRESHOLD (hit by >= min_hits tables); any other code
    acts as POLICY_VANILLA (the Python layer rejects unknown codes). scratch: int32
    of length >= query_scratch_size(L, C), per thread. Output stays in probe order. Returns n.
    Serial, allocation free.
    """
    if n_already >= max_out:
        return n_already
    if policy != POLICY_TOPK and policy != POLICY_THRESHOLD:  # POLICY_VANILLA
        return union_candidates(buckets, counts, codes, stamp, stamp_value, hits, out_ids, n_already, max_out)
    n_tables = buckets.shape[0]
    union_cap = n_tables * buckets.shape[2]
    # np.int64(0), not 0: a literal argument would compile a second specialisation of the union
    n_union = union_candidates(buckets, counts, codes, stamp, stamp_value, hits, scratch, np.int64(0), union_cap)
    budget = max_out - n_already
    n = n_already
    unmark = stamp_value - 1
    if policy == POLICY_TOPK:
        if n_union <= budget:
            for u in range(n_union):
                out_ids[n] = scratch[u]
                n += 1
            return n
        hist = scratch[union_cap:union_cap + n_tables + 1]
        hist[:] = 0
        for u in range(n_union):
            hist[min(hits[scratch[u]], n_tables)] += 1  # > L only if an id sits twice in a bucket
        # Threshold tau: all ids with hits > tau fit, plus the first `take_at_tau` with hits == tau.
        tau = n_tables
        above = 0
        while tau > 1 and above + hist[tau] < budget:
            above += hist[tau]
            tau -= 1
        take_at_tau = budget - above
        for u in range(n_union):
            item = scratch[u]
            h = min(hits[item], n_tables)
            if h > tau or (h == tau and take_at_tau > 0):
                if h == tau:
                    take_at_tau -= 1
                out_ids[n] = item
                n += 1
            else:
                stamp[item] = unmark
        return n
    # POLICY_THRESHOLD
    for u in range(n_union):
        item = scratch[u]
        if hits[item] >= min_hits and n < max_out:
            out_ids[n] = item
            n += 1
        else:
            stamp[item] = unmark
    return n


# --------------------------------------------------------------------------------------------
# Public Python wrappers
# --------------------------------------------------------------------------------------------


def _check_tables(buckets, counts):
    if not (isinstance(buckets, np.ndarray) and buckets.dtype == np.int32 and buckets.ndim == 3
            and buckets.flags.c_contiguous):
        raise ValueError("buckets: need a C-contiguous (L, R, C) int32 array")
    if not (isinstance(counts, np.ndarray) and counts.dtype == np.int32
            and counts.shape == buckets.shape[:2] and counts.flags.c_contiguous):
        raise ValueError("counts: need a C-contiguous (L, R) int32 array matching buckets")
    if not _is_pow2(buckets.shape[1]) or not _is_pow2(buckets.shape[2]):
        raise ValueError("buckets: R and C must be powers of two")


def _check_codes(codes, n_tables, n_buckets, name="codes"):
    if not (isinstance(codes, np.ndarray) and codes.dtype == np.int32 and codes.ndim == 2
            and codes.flags.c_contiguous):
        raise ValueError(f"{name}: need a C-contiguous 2-d int32 array")
    if codes.shape[1] != n_tables:
        raise ValueError(f"{name}: need {n_tables} columns (one per table), got {codes.shape[1]}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_buckets):
        raise ValueError(f"{name}: codes must lie in [0, {n_buckets})")


def build_tables(codes, order, insert_policy, seed, buckets, counts):
    """Validate, then clear and fill the tables in place (see build_tables_parallel)."""
    _check_tables(buckets, counts)
    _check_codes(codes, buckets.shape[0], buckets.shape[1])
    if not (isinstance(order, np.ndarray) and order.dtype == np.int32 and order.ndim == 1):
        raise ValueError("order: need a 1-d int32 array of item ids")
    if order.size and (order.min() < 0 or order.max() >= codes.shape[0]):
        raise ValueError(f"order: ids must lie in [0, {codes.shape[0]})")
    if insert_policy not in (INSERT_FIFO, INSERT_RESERVOIR):
        raise ValueError(f"insert_policy: unknown code {insert_policy}")
    codes_t = np.empty((codes.shape[1], codes.shape[0]), np.int32)
    table_major(codes, codes_t)
    build_tables_parallel(codes_t, np.ascontiguousarray(order), np.int64(insert_policy),
                          np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF), buckets, counts)
