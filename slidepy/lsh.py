"""One layer's LSH index: hash functions, bucket tables, and when to rebuild them.

`LshIndex` is the Python-side owner (tier 1): it draws hash functions (hashing.py), hashes every
neuron's weight row and fills the bucket tables (tables.py) in parallel, decides when to rebuild
(SLIDE's decaying schedule, or Mongoose-style drift), and hands the kernels an `LshLayer` view of
its arrays. The per-sample query lives in selection.py (fill_lsh).

Inner products, not angles. A neuron's logit is w.h + b, but SRP and WTA-type hashes compare
directions, and trained rows differ widely in norm and bias: hashing w against h retrieves
well-aligned neurons while the ones with the largest logits go missing, are never trained down as
negatives, and take over exact inference. So every family hashes the simple-LSH transform of
Neyshabur & Srebro (2015): rows become [w, b, sqrt(M^2 - |w|^2 - b^2)] with M the largest row norm
at the rebuild, queries become [h, 1, 0]; the cosine of the pair is (w.h + b) / (M |[h, 1]|), so a
query's collisions rank neurons by their logits. Hash functions therefore see D + 2 dims.

Two kinds of index. The hash families (srp, wta, dwta, minhash) fill fixed-capacity buckets by
hash code. `kmeans` is data-dependent: the buckets are k-means clusters of the rows and a query
probes the clusters of highest mean logit (clusters.py, which says why sign bits fail on trained
layers). Both kinds share this owner, the rebuild schedule, the checkpoint state and the kernel
view; `SET_KIND` tells the query which one to run.

Shape letters: D layer input dim, N neurons, L tables, K hashes per table, H = K * L,
R = 2**range_pow buckets per table, C bucket capacity, S drift-sample size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .clusters import (SHORTCUT_BACKOFF, assign_rows, auto_clusters, centre_on_members, cluster_rows,
                       initial_centroids, refresh_centroids)
from .constants import (  # noqa: F401  (SET_*, INDEX_* and the code maps are re-exported for callers)
    FAMILY_CODES,
    FAMILY_DWTA,
    FAMILY_SRP,
    FAMILY_WTA,
    INDEX_CLUSTERS,
    INDEX_HASH,
    INSERT_CODES,
    INSERT_FIFO,
    MAX_INT,
    POLICY_CODES,
    SET_BIAS_DIM,
    SET_KIND,
    SET_POLICY,
    SET_RANGE_POW,
    SET_THRESHOLD,
    SETTINGS_LEN,
)
from .hashing import (
    SPEC_LEN,
    HashParams,
    hash_params_from_arrays,
    hash_rows,
    hash_rows_srp_blas,
    make_hash_params,
    split_projections,
    squared_row_norms,
    suggest_k_l,
)
from .errors import CheckpointError, ConfigError
from .rng import derive_int_seed, generator
from .tables import build_tables, query_scratch_size, table_bytes

# Lloyd iterations of the first clustering, from random rows (later rebuilds warm-start: 1 each).
INITIAL_KMEANS_ITERS = 4
# What each random draw of an index is for: its stream is (index seed, purpose, draw or rebuild
# count[, table]), through rng.generator / rng.derive_int_seed, so no two draws share a stream.
_DRAW_HASHES, _DRAW_INSERT_ORDER, _DRAW_RESERVOIR, _DRAW_KMEANS, _DRAW_DRIFT_SAMPLE = range(1, 6)
# Rows transformed (copied) per block where a rank-order family's rebuild hashes them: 4,096 rows of
# 130 floats (2 MB) stay under glibc's mmap threshold, so each block reuses the heap memory the
# last one freed instead of faulting in fresh pages (SRP needs no copy: hash_rows_srp_blas).
TRANSFORM_BLOCK_ROWS = 1 << 12


class LshLayer(NamedTuple):
    """What a kernel needs to query one layer's tables. Same numba type for every layer."""

    settings: np.ndarray  # (SETTINGS_LEN,) int64: range_pow, policy, threshold, bias coordinate
    params: HashParams
    buckets: np.ndarray  # (L, R, C) int32, -1 = empty slot
    counts: np.ndarray  # (L, R) int32 inserts ever attempted per bucket
    centroids_t: np.ndarray  # (D + 1, L * C) float32 cluster centroids, transposed ((0, 0) if hashing)
    cluster_indptr: np.ndarray  # (L * C + 1,) int64 member-list offsets
    cluster_members: np.ndarray  # (L * N,) int32 neuron ids, cluster by cluster


def empty_lsh_layer() -> LshLayer:
    """The placeholder for a layer without LSH (keeps the kernels' tuple of indexes one numba type)."""
    params = HashParams(
        spec=np.zeros(SPEC_LEN, np.int64), proj_indptr=np.zeros(0, np.int64), proj_hash=np.zeros(0, np.int32),
        proj_sign=np.zeros(0, np.float32), dim_map=np.zeros((0, 0), np.int32), mh_a=np.zeros(0, np.uint64),
        mh_b=np.zeros(0, np.uint64), dens_key=np.zeros(1, np.uint64), proj_dense=np.zeros((0, 0), np.float32))
    return LshLayer(np.zeros(SETTINGS_LEN, np.int64), params, np.zeros((0, 0, 0), np.int32), np.zeros((0, 0), np.int32),
                    *_no_clusters())


def _no_clusters():
    return np.zeros((0, 0), np.float32), np.zeros(1, np.int64), np.zeros(0, np.int32)


def _no_params() -> HashParams:
    return empty_lsh_layer().params


@dataclass
class RebuildSchedule:
    """SLIDE's decaying schedule: first rebuild after `initial` batches, then each interval is the
    previous one times `decay` (capped at `max_interval`). Weights move fast early and slowly
    later, so tables need refreshing less and less often.

    The intervals are measured on a clock (`tick`). With rebuild.pace "steps" (the default) every
    step counts 1. With "lr" a step counts its learning rate over the peak, so a step at a quarter
    of the peak rate counts a quarter: Adam and SGD move a row in proportion to the rate, so the
    tables go stale at that pace, and under a decaying rate the late rebuilds spread out. At a
    constant rate both clocks are the step count."""

    initial: int
    decay: float
    max_interval: int | None = None
    next_step: float = 0  # the clock reading due for the next rebuild
    interval: float = 0.0
    clock: float = 0.0
    last_step: int | None = 0  # the step of the last tick; None: set the clock to the next one

    def __post_init__(self):
        if not self.next_step:
            self.interval = float(self.initial)
            self.next_step = self.initial

    def tick(self, step: int, lr_share: float = 1.0) -> None:
        """Advance the clock to `step`, the steps since the last tick counting lr_share each."""
        if self.last_step is None:  # a checkpoint from before the clock, which read the step count
            self.clock = float(step)
        else:
            self.clock += max(0.0, lr_share) * max(0, step - self.last_step)
        self.last_step = step

    def due(self) -> bool:
        return self.clock >= self.next_step - 1e-9  # the tolerance: a sum of fractional shares

    def advance(self) -> None:
        """A rebuild happens now: the next one is an interval (times decay, capped) later."""
        self.interval *= self.decay
        if self.max_interval is not None:
            self.interval = min(self.interval, float(self.max_interval))
        self.next_step = self.clock + max(1, int(round(min(self.interval, MAX_INT))))  # decay 1e307 gives inf


@dataclass(frozen=True)
class LshOptions:
    """What one layer's index is asked to be, as plain fields: config.Lsh with its `rebuild`
    section flattened in (model.lsh_options builds it from a config; this module never sees the
    config). `k`, `l` and `clusters` may be "auto". `random_share` is read by the engine's
    selection, not by the index."""

    family: str                    # "kmeans", or a hash family: "srp", "wta", "dwta", "minhash"
    clusters: int | str            # kmeans: clusters per table
    k: int | str                   # hashes per table
    l: int | str                   # tables
    bin_size: int                  # WTA / DWTA
    srp_density: float
    range_pow: int                 # 2**range_pow buckets per table
    bucket_capacity: int
    insert: str                    # "fifo" / "reservoir"
    policy: str                    # "vanilla" / "topk" / "threshold"
    threshold: int                 # min tables hit, for policy threshold
    random_share: float
    target_recall: float           # "auto" k / l aim at these
    target_active_fraction: float
    initial_interval: int          # the rebuild schedule (RebuildSchedule) ...
    decay: float
    max_interval: int | None
    rehash_every: int              # ... redraw hash functions every N rebuilds; 0 = never
    drift_threshold: float | None  # rebuild on measured drift instead of the schedule
    drift_sample: int
    drift_check_every: int
    refresh_every: int             # kmeans: re-centre clusters every N batches; 0 = never
    spread_steps: int = 0          # a scheduled rebuild's per-row work over this many steps
    pace: str = "steps"            # the schedule's clock: "steps" or "lr" (RebuildSchedule)


def resolve_k_l(options: LshOptions, n_neurons: int) -> tuple[int, int]:
    """The options' (k, l), with "auto" filled in from the target recall and active fraction.
    For `kmeans`, k is unused (0) and "auto" tables means one clustering."""
    k, l = options.k, options.l
    if options.family == "kmeans":
        return 0, 1 if l == "auto" else int(l)
    if k == "auto" or l == "auto":
        sk, sl = suggest_k_l(n_neurons, options.target_active_fraction, options.target_recall,
                             FAMILY_CODES[options.family], options.bin_size, max_l=512)
        k = sk if k == "auto" else k
        if l == "auto":
            # L for the (possibly user-fixed) K: same relation as suggest_k_l uses.
            l = sl if options.k == "auto" else suggest_l_for_k(options, int(k))
    return int(k), int(l)


def suggest_l_for_k(options: LshOptions, k: int) -> int:
    """L for a user-fixed K: as suggest_k_l counts it (hashing.tables_for_recall), at most 512."""
    from .hashing import collision_probability, tables_for_recall

    p = collision_probability(FAMILY_CODES[options.family], 0.8, k, options.bin_size)
    return int(min(512, tables_for_recall(p, options.target_recall)))


def n_clusters_for(options: LshOptions, n_neurons: int, budget: int) -> int:
    """Clusters per table of a kmeans index (the options' number, or auto_clusters)."""
    clusters = options.clusters
    return min(n_neurons, auto_clusters(n_neurons, budget or n_neurons) if clusters == "auto" else int(clusters))


def index_layout(options: LshOptions, dim: int, n_neurons: int,
                 budget: int) -> tuple[tuple[int, int, int, int], int]:
    """((L, H, Q, V), bytes) of a layer's index without building it: the per-thread query
    scratch shape (see LshIndex.hash_shape) and the bytes of its tables or clusters, codes
    included (for a hash index twice: a rebuild copies them). Used by the memory estimate."""
    k, l = resolve_k_l(options, n_neurons)
    if options.family == "kmeans":
        c = n_clusters_for(options, n_neurons, budget)
        nbytes = 4 * (dim + 1) * l * c + 8 * (l * c + 1) + 4 * l * n_neurons + 4 * n_neurons * l
        return (0, l * c, 0, 0), nbytes
    shape = (l, k * l, query_scratch_size(l, options.bucket_capacity), dim + 1)
    # the codes (N, L) int32, and the table-major copy of them each rebuild makes (tables.build_tables)
    return shape, table_bytes(l, options.range_pow, options.bucket_capacity) + 2 * 4 * n_neurons * l


def neuron_rows(weights: np.ndarray, input_major: bool) -> np.ndarray:
    """(N, D) weight rows to hash: layer 0 stores (F, N), so it is transposed for the rebuild
    (also `LshIndex.neuron_rows`)."""
    return np.ascontiguousarray(weights.T) if input_major else weights


class LshIndex:
    """The hash functions (or cluster centroids), tables and rebuild state of one layer."""

    def __init__(self, layer: int, size: tuple[int, int], options: LshOptions, *, seed: int, budget: int = 0,
                 first_iters: int | None = None):
        self.layer = layer
        # kmeans: Lloyd iterations of the first build (recluster)
        self.first_iters = INITIAL_KMEANS_ITERS if first_iters is None else int(first_iters)
        self.dim, self.n_neurons = size
        self.options = s = options
        self.kind = INDEX_CLUSTERS if s.family == "kmeans" else INDEX_HASH
        self.family = FAMILY_CODES.get(s.family, -1)  # hash family code (-1 for kmeans)
        self.k, self.l = resolve_k_l(s, self.n_neurons)
        if s.policy == "threshold" and s.threshold > self.l:  # l "auto" is checked here, once resolved
            raise ConfigError(f"lsh.threshold {s.threshold} is larger than lsh.l ({self.l} for layer {layer}): no "
                              "neuron could be hit by that many tables")
        self.range_pow = int(s.range_pow)
        self.capacity = int(s.bucket_capacity)
        self.seed = int(seed)
        self.draws = 0  # how many times hash functions were drawn (the params' seed offset)
        self.rebuilds = 0
        self.shortcut_backoff = 0  # kmeans: warm rebuilds left that skip the shortcut (recluster)
        self.settings = np.array([self.range_pow, POLICY_CODES[s.policy], s.threshold, self.dim, self.kind],
                                 np.int64)
        self.max_norm = 1.0  # M of the transform at the last rebuild
        self._projections = None  # SRP projections, dense and split for the rebuild (hashing.split_projections)
        if self.kind == INDEX_CLUSTERS:
            self.n_clusters = n_clusters_for(s, self.n_neurons, budget)
            self.params = _no_params()
            self.buckets = np.zeros((0, 0, 0), np.int32)
            self.counts = np.zeros((0, 0), np.int32)
            n_c = self.l * self.n_clusters
            self.centroids_t = np.zeros((self.dim + 1, n_c), np.float32)
            self.cluster_indptr = np.zeros(n_c + 1, np.int64)
            self.cluster_members = np.zeros(self.l * self.n_neurons, np.int32)
            self.codes = np.zeros((self.n_neurons, self.l), np.int32)  # each row's cluster, per table
        else:
            self.n_clusters = 0
            self.params = self._draw()
            self.buckets = np.full((self.l, 1 << self.range_pow, self.capacity), -1, np.int32)
            self.counts = np.zeros((self.l, 1 << self.range_pow), np.int32)
            self.codes = np.zeros((self.n_neurons, self.l), np.int32)  # reused by every rebuild
            self.centroids_t, self.cluster_indptr, self.cluster_members = _no_clusters()
        self.schedule = RebuildSchedule(s.initial_interval, s.decay, s.max_interval)
        # A spread rebuild under way (spread_steps > 1): the next row to re-hash or re-assign, -1
        # when none is; a kmeans index assigns against the centroids of the rebuild's first step.
        self.pending_row = -1
        spread = s.spread_steps > 1 and self.kind == INDEX_CLUSTERS
        self.pending_centroids = np.zeros((self.l * self.n_clusters, self.dim + 1) if spread else (0, 0), np.float32)
        self.drift_ids = np.zeros(0, np.int64)
        self.drift_codes = np.zeros((0, self.l), np.int32)
        self.last_drift = 0.0

    def _draw(self) -> HashParams:
        seed = derive_int_seed(self.seed, _DRAW_HASHES, self.draws)
        self.draws += 1
        return make_hash_params(self.family, self.dim + 2, self.k, self.l, bin_size=self.options.bin_size,
                                density=self.options.srp_density, seed=seed)

    def hash_shape(self) -> tuple[int, int, int, int]:
        """(L, H, Q, V) of the per-thread scratch a query needs: codes, hash work, candidate union,
        and the transformed query vector (up to D inputs plus the constant coordinate). A cluster
        index needs only one score per cluster (in the hash-work row)."""
        if self.kind == INDEX_CLUSTERS:
            return 0, self.l * self.n_clusters, 0, 0
        return self.l, self.k * self.l, query_scratch_size(self.l, self.capacity), self.dim + 1

    def kernel_view(self) -> LshLayer:
        return LshLayer(self.settings, self.params, self.buckets, self.counts, self.centroids_t,
                        self.cluster_indptr, self.cluster_members)

    neuron_rows = staticmethod(neuron_rows)

    def rebuild(self, weights: np.ndarray, input_major: bool, *, bias: np.ndarray | None = None,
                redraw: bool = False, fresh: bool = False) -> float:
        """Re-hash every neuron with the current weights and refill the tables. Returns seconds.
        `fresh`: the weights were replaced wholesale (a model loaded without its index), so a
        cluster index starts over instead of warm-starting from clusters of other weights."""
        started = time.perf_counter()
        self.pending_row = -1  # a whole rebuild supersedes a spread one under way
        rows = self.neuron_rows(weights, input_major)
        bias = np.zeros(self.n_neurons, np.float32) if bias is None else bias
        if self.kind == INDEX_CLUSTERS:
            recluster(self, rows, bias, fresh=fresh)
            self.rebuilds += 1
            remember_drift_sample(self)
            return time.perf_counter() - started
        if redraw:
            self.params = self._draw()
            self._projections = None
        norms = _squared_norms(rows, bias)
        self.max_norm = _max_norm(norms)
        self._hash_neurons(rows, bias, self.codes, norms)
        self._fill_tables()
        return time.perf_counter() - started

    def _fill_tables(self) -> None:
        """Refill the hash tables from `codes` (every row's code per table); count the rebuild."""
        insert = INSERT_CODES[self.options.insert]
        if insert == INSERT_FIFO:  # a ring keeps the last C inserted: shuffle, or high ids would win
            order = generator(self.seed, _DRAW_INSERT_ORDER, self.rebuilds).permutation(self.n_neurons)
            order = order.astype(np.int32)
        else:  # reservoir keeps each with probability C/n in any order; id order reads codes sequentially
            order = np.arange(self.n_neurons, dtype=np.int32)
        reservoir_seed = derive_int_seed(self.seed, _DRAW_RESERVOIR, self.rebuilds)
        build_tables(self.codes, order, insert, reservoir_seed, self.buckets, self.counts)
        self.rebuilds += 1
        remember_drift_sample(self)

    # -- a rebuild spread over steps (rebuild.spread_steps) -----------------------------------------

    def _start_spread(self, weights: np.ndarray, input_major: bool, bias: np.ndarray | None) -> float:
        """Begin a spread rebuild and do its first slice. A hash index fixes the transform's M
        over all rows now; a cluster index keeps the current centroids to assign against. The
        live tables or clusters serve queries until the last slice replaces them."""
        started = time.perf_counter()
        bias = np.zeros(self.n_neurons, np.float32) if bias is None else bias
        if self.kind == INDEX_CLUSTERS:
            self.pending_centroids[...] = self.centroids_t.T
        else:
            self.max_norm = _max_norm(_squared_norms(self.neuron_rows(weights, input_major), bias))
        self.pending_row = 0
        return time.perf_counter() - started + self._continue_spread(weights, input_major, bias)

    def _continue_spread(self, weights: np.ndarray, input_major: bool, bias: np.ndarray | None) -> float:
        """One step's slice of a spread rebuild: ceil(N / spread_steps) rows re-hashed (into
        `codes`, which queries never read) or assigned to their nearest kept centroid. After the
        last slice, the tables are refilled, or the clusters re-centred on their new members."""
        started = time.perf_counter()
        n = self.n_neurons
        bias = np.zeros(n, np.float32) if bias is None else bias
        lo = self.pending_row
        hi = min(n, lo + -(-n // max(1, self.options.spread_steps)))  # 0 on a resume: the rest at once
        rows = weights[:, lo:hi].T if input_major else weights[lo:hi]
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if self.kind == INDEX_CLUSTERS:
            n_c = self.n_clusters
            for t in range(self.l):
                self.codes[lo:hi, t] = assign_rows(rows, bias[lo:hi], self.pending_centroids[t * n_c:(t + 1) * n_c])
        else:
            self._hash_neurons(rows, bias[lo:hi], self.codes[lo:hi])
        self.pending_row = hi
        if hi >= n:
            self.pending_row = -1
            if self.kind == INDEX_CLUSTERS:
                install_clusters(self, self.neuron_rows(weights, input_major), bias, self.pending_centroids)
                self.rebuilds += 1
                remember_drift_sample(self)
            else:
                self._fill_tables()
        return time.perf_counter() - started

    def refresh(self, weights: np.ndarray, input_major: bool, bias: np.ndarray | None = None) -> float:
        """Re-centre every cluster on its members' current rows (no re-assignment): O(N D), so
        it can run far more often than a rebuild. Hash indexes have nothing to refresh."""
        if self.kind != INDEX_CLUSTERS or self.rebuilds == 0:
            return 0.0
        started = time.perf_counter()
        bias = np.zeros(self.n_neurons, np.float32) if bias is None else bias
        refresh_centroids(self.neuron_rows(weights, input_major), bias, self.cluster_indptr, self.cluster_members,
                          self.centroids_t)
        return time.perf_counter() - started

    def transformed_rows(self, rows: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """[w, b, sqrt(M^2 - |w|^2 - b^2)] for each row: (n, D + 2) float32 (a copy; rebuilds hash
        SRP rows with their tail alone, `_hash_neurons`)."""
        return np.hstack([rows.astype(np.float32, copy=False), self.transform_tail(rows, bias)])

    def transform_tail(self, rows: np.ndarray, bias: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
        """The transform's last two columns, [b, sqrt(M^2 - |w|^2 - b^2)], (n, 2) float32; norms:
        the rows' _squared_norms where the caller has them. The rank-order families (WTA, DWTA)
        get 0 for the slack, as queries ([h, 1, 0]) have: the slack is usually a row's largest
        coordinate, so it won every bin it fell in, and a table with such a bin held codes no query
        produces (18-19 of 50 DWTA/WTA tables answered no query at all)."""
        tail = np.zeros((rows.shape[0], 2), np.float32)
        tail[:, 0] = bias
        if self.family not in (FAMILY_WTA, FAMILY_DWTA):
            norms = _squared_norms(rows, bias) if norms is None else norms
            tail[:, 1] = np.sqrt(np.maximum(np.float32(self.max_norm ** 2) - norms, 0.0))
        return tail

    def _hash_neurons(self, rows: np.ndarray, bias: np.ndarray, codes_out: np.ndarray,
                      norms: np.ndarray | None = None, block_rows: int = TRANSFORM_BLOCK_ROWS) -> np.ndarray:
        """Codes of transformed weight rows (C-contiguous float32): SRP through BLAS with the
        transform's tail beside the rows (hashing.hash_rows_srp_blas), the other families a
        transformed copy of a block at a time through the sparse kernel. norms: the rows'
        _squared_norms, where known."""
        if self.family == FAMILY_SRP:
            if self._projections is None:
                self._projections = split_projections(self.params, 2)
            return hash_rows_srp_blas(self.params, rows, self.range_pow, codes_out,
                                      tail=self.transform_tail(rows, bias, norms), projections=self._projections)
        for start in range(0, rows.shape[0], block_rows):
            block = self.transformed_rows(rows[start:start + block_rows], bias[start:start + block_rows])
            hash_rows(self.params, block, self.range_pow, codes_out[start:start + block_rows])
        return codes_out

    def drift(self, weights: np.ndarray, input_major: bool, bias: np.ndarray | None = None) -> float:
        """Fraction of (sampled neuron, table) codes that changed since the last rebuild: a cheap
        estimate of how stale the tables are (Mongoose, ICLR 2021)."""
        if self.drift_ids.shape[0] == 0:
            return 0.0
        rows = weights[:, self.drift_ids].T if input_major else weights[self.drift_ids]
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        sample_bias = np.zeros(rows.shape[0], np.float32) if bias is None else bias[self.drift_ids]
        if self.kind == INDEX_CLUSTERS:  # the share of sampled rows whose nearest centroid moved
            n_c = self.n_clusters
            codes = np.stack([assign_rows(rows, sample_bias, self.centroids_t[:, t * n_c:(t + 1) * n_c].T.copy())
                              for t in range(self.l)], axis=1)
        else:
            codes = self._hash_neurons(rows, sample_bias, np.zeros((rows.shape[0], self.l), np.int32))
        self.last_drift = float(np.mean(codes != self.drift_codes))
        return self.last_drift

    def maybe_rebuild(self, step: int, weights: np.ndarray, input_major: bool, bias: np.ndarray | None = None,
                      lr_share: float = 1.0) -> float:
        """Rebuild if the schedule (or measured drift) says so; returns seconds spent (0 if not).
        lr_share: this step's learning rate over the schedule's peak, the pace of the rebuild
        schedule's clock (1 with rebuild.pace "steps")."""
        s = self.options
        self.schedule.tick(step, lr_share if s.pace == "lr" else 1.0)
        if self.pending_row >= 0:  # a spread rebuild goes on, whatever started it
            return self._continue_spread(weights, input_major, bias)
        spent = 0.0
        if s.drift_threshold is not None:  # measured drift starts a rebuild instead of the schedule
            due = False
            if step % s.drift_check_every == 0:
                started = time.perf_counter()
                due = self.drift(weights, input_major, bias) >= s.drift_threshold
                spent = time.perf_counter() - started
        else:
            due = self.schedule.due()
            if due:
                self.schedule.advance()
        if due:
            return spent + self._rebuild_now(weights, input_major, bias)
        # Refreshes count plain steps, under either trigger: paced by the rate as well, they left
        # DebianNextWord's recall@10 at 0.89 and its 1-epoch P@1 at 0.145 (0.957 / 0.156 with step
        # refreshes).
        if s.refresh_every and step % s.refresh_every == 0:
            return spent + self.refresh(weights, input_major, bias)
        return spent

    def _rebuild_now(self, weights, input_major, bias) -> float:
        """A scheduled rebuild: spread over steps when so configured, except the first build and
        one that redraws hash functions (queries must hash as the live tables were built)."""
        every = self.options.rehash_every
        redraw = bool(every) and (self.rebuilds % every == 0) and self.rebuilds > 0
        if self.options.spread_steps > 1 and self.rebuilds > 0 and not redraw:
            return self._start_spread(weights, input_major, bias)
        return self.rebuild(weights, input_major, bias=bias, redraw=redraw)

    def table_bytes(self) -> int:
        return (self.buckets.nbytes + self.counts.nbytes + self.codes.nbytes + self.centroids_t.nbytes
                + self.cluster_indptr.nbytes + self.cluster_members.nbytes)

    # -- checkpoint state -----------------------------------------------------------------------

    def state_arrays(self, prefix: str) -> dict:
        arrays = {f"{prefix}.buckets": self.buckets, f"{prefix}.counts": self.counts,
                  f"{prefix}.centroids_t": self.centroids_t, f"{prefix}.cluster_indptr": self.cluster_indptr,
                  f"{prefix}.cluster_members": self.cluster_members, f"{prefix}.codes": self.codes,
                  f"{prefix}.pending_centroids": self.pending_centroids}
        for name, value in self.params._asdict().items():
            arrays[f"{prefix}.params.{name}"] = value
        return arrays

    def state_meta(self) -> dict:
        return {"draws": self.draws, "rebuilds": self.rebuilds, "next_step": self.schedule.next_step,
                "interval": self.schedule.interval, "clock": self.schedule.clock,
                "last_step": self.schedule.last_step, "k": self.k, "l": self.l, "max_norm": self.max_norm,
                "pending_row": self.pending_row, "shortcut_backoff": self.shortcut_backoff}

    def load_state(self, arrays: dict, meta: dict, prefix: str) -> None:
        """The index as `state_arrays` / `state_meta` saved it; a CheckpointError names an array
        whose shape this index does not have (its LSH settings differ from the checkpoint's)."""
        pending = int(meta.get("pending_row", -1))
        for name in ("buckets", "counts", "centroids_t", "cluster_indptr", "cluster_members", "codes",
                     "pending_centroids"):
            key = f"{prefix}.{name}"
            if key not in arrays:  # older checkpoints hold hash tables only, or no spread rebuild's centroids
                continue
            have, want = arrays[key].shape, getattr(self, name).shape
            if have != want:
                if name == "pending_centroids" and pending < 0:  # no spread rebuild under way: nothing to carry
                    continue
                raise CheckpointError(f"{key} has shape {have} but this index needs {want}: the checkpoint was "
                                      "written with other LSH settings (family, k, l, clusters, budget)")
            getattr(self, name)[...] = arrays[key]
        spec = arrays.get(f"{prefix}.params.spec")
        if spec is not None and self.kind == INDEX_HASH and int(spec[0]) != self.family:
            raise CheckpointError(f"{prefix} was hashed with family {spec[0]} (constants.FAMILY_CODES), this index "
                                  f"with {self.family}: the checkpoint was written with other LSH settings")
        self.params = self._checked_params(arrays, prefix)
        self._projections = None
        self._check_ids(prefix)
        self.draws = int(meta["draws"])
        self.rebuilds = int(meta["rebuilds"])
        self.schedule.next_step = float(meta["next_step"])
        self.schedule.interval = float(meta["interval"])
        self.schedule.clock = float(meta.get("clock", 0.0))
        self.schedule.last_step = meta.get("last_step")  # None in older checkpoints (see tick)
        self.max_norm = float(meta.get("max_norm", 1.0))
        self.pending_row = pending
        self.shortcut_backoff = int(meta.get("shortcut_backoff", 0))  # a resumed run assigns as the whole one
        if self.rebuilds > 0:  # the drift sample: drawn from (seed, rebuilds), codes as of that rebuild
            remember_drift_sample(self)


    def _checked_params(self, arrays: dict, prefix: str) -> HashParams:
        """The checkpoint's hash functions, validated (hashing.hash_params_from_arrays) and of this
        index's shape: the kernels size their scratch by the config's K and L and index by the
        params' own, unchecked, so a file of other K, L or input width would write past it. A
        cluster index has none (its file holds the placeholder)."""
        if self.kind == INDEX_CLUSTERS:
            return _no_params()
        try:
            params = hash_params_from_arrays(arrays, f"{prefix}.params.")
        except ValueError as exc:
            raise CheckpointError(f"{prefix}: {exc}") from None
        if not np.array_equal(params.spec, self.params.spec):
            raise CheckpointError(f"{prefix}.params.spec is {params.spec.tolist()} but this index's is "
                                  f"{self.params.spec.tolist()} (family, input width, k, l, bin size, ...): the "
                                  "checkpoint was written with other LSH settings")
        return params

    def _check_ids(self, prefix: str) -> None:
        """Neuron ids, clusters and codes loaded from a file lie where the kernels index by them
        without bounds checks."""
        n_codes = self.n_clusters if self.kind == INDEX_CLUSTERS else 1 << self.range_pow
        checks = [("buckets", self.buckets, -1, self.n_neurons), ("cluster_members", self.cluster_members, 0,
                                                                  self.n_neurons),
                  ("codes", self.codes, 0, n_codes), ("cluster_indptr", self.cluster_indptr, 0,
                                                      self.cluster_members.shape[0] + 1)]
        for name, values, lo, hi in checks:
            if values.size and (values.min() < lo or values.max() >= hi):
                raise CheckpointError(f"{prefix}.{name} holds values outside [{lo}, {hi}): the file is damaged or "
                                      "was written for another layer")
        if self.cluster_indptr.size and np.any(np.diff(self.cluster_indptr) < 0):
            raise CheckpointError(f"{prefix}.cluster_indptr decreases: the file is damaged")


# -- what a rebuild does besides hashing: k-means clustering, the drift sample -----------------


def recluster(index: LshIndex, rows: np.ndarray, bias: np.ndarray, fresh: bool = False) -> None:
    """A kmeans index's rebuild: k-means per table over the (N, D) rows, warm-started from the
    current centroids after the first build (unless `fresh`)."""
    n_c = index.n_clusters
    try_shortcut = index.shortcut_backoff == 0
    failed = False
    for t in range(index.l):
        rng = generator(index.seed, _DRAW_KMEANS, index.rebuilds, t)
        if fresh or index.rebuilds == 0:
            centroids, previous = initial_centroids(rows, bias, n_c, rng), None
        else:
            centroids = np.ascontiguousarray(index.centroids_t[:, t * n_c:(t + 1) * n_c].T)
            previous = index.codes[:, t]
        assign, indptr, members, kept = cluster_rows(rows, bias, centroids, index.first_iters, rng, previous,
                                                     try_shortcut)
        failed |= previous is not None and try_shortcut and not kept
        index.codes[:, t] = assign
        _install_table(index, t, centroids, indptr, members)
    # clusters.SHORTCUT_BACKOFF: after a failed shortcut, assign in full for that many rebuilds
    index.shortcut_backoff = SHORTCUT_BACKOFF if failed else max(0, index.shortcut_backoff - 1)


def install_clusters(index: LshIndex, rows: np.ndarray, bias: np.ndarray, centroids: np.ndarray) -> None:
    """The end of a spread kmeans rebuild: every table's clusters from the assignment in
    `index.codes`, centred on their members' current rows (`centroids` (L*C, D + 1), the ones
    assigned against, is updated in place)."""
    n_c = index.n_clusters
    for t in range(index.l):
        table = centroids[t * n_c:(t + 1) * n_c]
        indptr, members = centre_on_members(rows, bias, index.codes[:, t], table)
        _install_table(index, t, table, indptr, members)


def _install_table(index: LshIndex, t: int, centroids: np.ndarray, indptr: np.ndarray, members: np.ndarray) -> None:
    n_c = index.n_clusters
    index.centroids_t[:, t * n_c:(t + 1) * n_c] = centroids.T
    index.cluster_indptr[t * n_c:(t + 1) * n_c + 1] = indptr + t * index.n_neurons
    index.cluster_members[t * index.n_neurons:(t + 1) * index.n_neurons] = members


def _squared_norms(rows: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """|[w, b]|^2 of each row (N,) float32, in parallel (hashing.squared_row_norms)."""
    out = np.empty(rows.shape[0], np.float32)
    if rows.shape[0]:
        squared_row_norms(np.ascontiguousarray(rows, dtype=np.float32), np.ascontiguousarray(bias, dtype=np.float32),
                          out)
    return out


def _max_norm(norms: np.ndarray) -> float:
    """M of the simple-LSH transform from the rows' _squared_norms: the largest norm of a row [w,
    b] (1 for an all-zero layer)."""
    return float(np.sqrt(np.max(norms, initial=0.0))) or 1.0


def remember_drift_sample(index: LshIndex) -> None:
    """After a rebuild: draw the neurons whose codes `LshIndex.drift` compares later, and keep
    their codes (only when the index rebuilds on drift)."""
    if index.options.drift_threshold is None:
        return
    size = min(index.n_neurons, index.options.drift_sample)
    rng = generator(index.seed, _DRAW_DRIFT_SAMPLE, index.rebuilds)
    index.drift_ids = np.sort(rng.choice(index.n_neurons, size=size, replace=False)).astype(np.int64)
    index.drift_codes = index.codes[index.drift_ids].copy()
