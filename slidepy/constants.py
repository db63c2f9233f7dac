"""Integer codes, array layouts and limits shared by the kernels and their Python owners.

The kernels branch on small integers, never on strings or passed-in functions (STYLE.md). Every
code lives here, with the string -> code maps the Python side uses, so a module that needs a
code imports this one and nothing else of ours. This module imports nothing of ours.
"""

# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------

MAX_INT = 2**31 - 1        # no int a user sets may exceed this: the kernels index with int32 and
                           # seeds are mixed in uint64
MAX_K = 32                 # hashes per table: K codes of up to log2(b) bits are folded into 64 bits
MAX_L = 512                # tables
MIN_BIN_SIZE = 2           # WTA/DWTA bin size b, a power of two
MAX_BIN_SIZE = 256
MIN_RANGE_POW = 1
MAX_RANGE_POW = 24         # R = 2**24 buckets; L * R * (C + 1) int32 is already GiBs per layer
MIN_BUCKET_CAPACITY = 1    # slots per bucket C, a power of two (buckets are rings)
MAX_BUCKET_CAPACITY = 4096
MAX_CODE_BITS = 30  # the widest hash code hashing.py computes (int32 codes); tables stop at MAX_RANGE_POW

# ---------------------------------------------------------------------------------------------
# Active-set selection and losses (network.make_spec, kernels, selection)
# ---------------------------------------------------------------------------------------------

MODE_ALL = 0  # every neuron active: exact dense computation
MODE_RANDOM = 1  # true labels (output layer) plus uniformly sampled neurons up to a budget
MODE_LSH = 2  # candidates from an LSH index over the weight rows
MODE_CODES = {"all": MODE_ALL, "random": MODE_RANDOM, "lsh": MODE_LSH}

LOSS_SOFTMAX = 0  # softmax cross-entropy against the labels as a uniform distribution (SLIDE's loss)
LOSS_BCE = 1  # independent sigmoid per label
LOSS_CODES = {"softmax": LOSS_SOFTMAX, "bce": LOSS_BCE}

# What one call of kernels.train_batch does per sample: the whole sample, or one half of a step
# whose output layer runs as a batch product over the union of the active sets (union.py).
PHASE_FULL = 0
PHASE_SELECT = 1  # hidden layers forward, then the output layer's selection only
PHASE_HIDDEN_BACKWARD = 2  # the hidden layers' backward from the product's d loss / d hidden
PHASE_HIDDEN = 3  # hidden layers forward only, before a product scores a cluster index's centroids
PHASE_SELECT_SCORED = 4  # PHASE_SELECT with those centroid scores given
PHASE_FULL_SCORED = 5  # PHASE_FULL with the output's centroid scores given (after PHASE_HIDDEN)

# Columns of the per-layer `spec` table, an (n_layers, SPEC_FIELDS) int64 array (network.make_spec).
SPEC_IN_DIM = 0  # D
SPEC_OUT_DIM = 1  # N
SPEC_INPUT_MAJOR = 2  # 1 for layer 0 (weights (F, N)), else 0 (weights (N, D))
SPEC_MODE = 3  # MODE_* used in training
SPEC_INFER_MODE = 4  # MODE_* used in evaluation / prediction (MODE_ALL = exact)
SPEC_BUDGET = 5  # most neurons active per sample (true labels included)
SPEC_MIN_ACTIVE = 6  # top up with random neurons to at least this many
SPEC_CAPACITY = 7  # A: scratch capacity of the active set in training
SPEC_RANDOM_PERMILLE = 8  # LSH layers: per-mille of the non-label budget kept for uniform negatives
SPEC_CORRECTION = 9  # output layer: 1 = weight uniform negatives as the neurons they stand for
SPEC_DROPOUT_PPM = 10  # hidden layers: dropout probability of each output in training, per million
SPEC_FIELDS = 11

# ---------------------------------------------------------------------------------------------
# LSH indexes (hashing, tables, clusters, lsh, selection)
# ---------------------------------------------------------------------------------------------

FAMILY_SRP = 0  # signed random projections
FAMILY_WTA = 1  # winner take all
FAMILY_DWTA = 2  # densified winner take all
FAMILY_MINHASH = 3  # b-bit minwise hashing of the non-zero ids
FAMILY_NAMES = {FAMILY_SRP: "srp", FAMILY_WTA: "wta", FAMILY_DWTA: "dwta", FAMILY_MINHASH: "minhash"}
FAMILY_CODES = {name: code for code, name in FAMILY_NAMES.items()}

INDEX_HASH = 0  # hash codes -> fixed-capacity buckets (tables.py)
INDEX_CLUSTERS = 1  # k-means clusters probed by centroid score (clusters.py)

# Index kinds, one per piece of query code a kernel may need: the four hash families (same codes
# as FAMILY_*) and the cluster index. The kernels that may query an index take a `kinds` marker
# (kinds_marker below), a tuple with one slot per kind plus KIND_TABLES (any hash family: the
# bucket tables), so that numba compiles only the kinds a network queries.
KIND_SRP = FAMILY_SRP
KIND_WTA = FAMILY_WTA
KIND_DWTA = FAMILY_DWTA
KIND_MINHASH = FAMILY_MINHASH
KIND_KMEANS = 4
N_KINDS = 5
KIND_TABLES = 5  # marker slot only: set when any hash family is

INSERT_FIFO = 0  # a full bucket overwrites its oldest item
INSERT_RESERVOIR = 1  # a full bucket keeps each item inserted with probability C/n
INSERT_CODES = {"fifo": INSERT_FIFO, "reservoir": INSERT_RESERVOIR}

POLICY_VANILLA = 0  # union of the probed buckets in probe order
POLICY_TOPK = 1  # the candidates hit by the most tables
POLICY_THRESHOLD = 2  # candidates hit by at least `threshold` tables
POLICY_NAMES = {POLICY_VANILLA: "vanilla", POLICY_TOPK: "topk", POLICY_THRESHOLD: "threshold"}
POLICY_CODES = {name: code for code, name in POLICY_NAMES.items()}

# Columns of LshLayer.settings, an (SETTINGS_LEN,) int64 array (lsh.LshIndex.kernel_view).
SET_RANGE_POW = 0
SET_POLICY = 1
SET_THRESHOLD = 2
SET_BIAS_DIM = 3  # the query's constant coordinate, D (see the transform in lsh.py)
SET_KIND = 4  # INDEX_HASH or INDEX_CLUSTERS
SETTINGS_LEN = 5


def kinds_marker(kinds) -> tuple:
    """The `kinds` argument of the kernels that may query an index: slot k is True if some layer
    queries an index of kind k (KIND_*), None otherwise; slot KIND_TABLES is True if any hash
    family's is.

    A slot's *type* decides what numba compiles: the query code of a kind is guarded by
    `if slot is not None`, which numba's dead-branch pruning removes before typing when the slot is
    None. So a network that queries SRP tables compiles the SRP code only, and each combination of
    kinds is one specialisation (cached like any other).
    """
    used = {int(k) for k in kinds}
    unknown = used - set(range(N_KINDS))
    if unknown:
        raise ValueError(f"kinds_marker: unknown index kind(s) {sorted(unknown)}")
    tables = True if used - {KIND_KMEANS} else None
    return tuple(True if k in used else None for k in range(N_KINDS)) + (tables,)


# ---------------------------------------------------------------------------------------------
# Compile options (kernels, selection, hashing, tables, scoring, optimizer, metrics, clusters)
# ---------------------------------------------------------------------------------------------

# `@njit(cache=True, **INTERNAL)` marks a function that only compiled code calls (a serial worker
# or leaf below a driver): numba builds no CPython or C entry point for it, code it would otherwise
# generate and optimise for every function, about 1.5 s of a cold quick start's compile. Calling
# such a function from Python crashes the interpreter (there is no entry point to call), so
# anything a test, script or Python code calls directly keeps the plain decorator
# (tests/test_compile.py checks that no test or script names an INTERNAL one).
INTERNAL = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}
