"""Small counter-based random numbers for numba kernels.

Every random choice a kernel makes (reservoir slots, sampled negatives, dropout, ...) comes from
an explicit state array passed in, never from a global generator, so a kernel's result depends
only on its inputs and never on thread scheduling.

Pieces
------
- `splitmix64(x)`: a bijective 64-bit mixer (Steele, Lea & Flood 2014). Used to turn any
  counter (seed, step, sample, table ...) into a well-spread 64-bit value.
- `mix_seed(a, b)`: combine two integers into one 64-bit seed; not symmetric in (a, b).
- `derive_seed(seed, step, sample)`: the per-sample seed the engine uses,
  `splitmix64(seed ^ step * C1 ^ sample * C2)`; a worker seeds its own state from it, so the
  random stream of sample `i` at step `s` is the same whichever thread runs it.
- xorshift64* generator (Vigna 2016): the state is a uint64 array (one element, or one per
  thread `(T,)`), and `next_u64(state, i)` advances `state[i]` in place. State must never be 0;
  `seed_state` guarantees that.
- `randint(state, i, n)` in `[0, n)` and `uniform(state, i)` in `[0, 1)` use the top 53 bits
  of the output (the low bits of xorshift64* are the weaker ones).
- `generator(*keys)`: the NumPy Generator of the stream named by integer keys, for Python-side
  draws (epoch order, evaluation subset): `generator(seed, epoch)`. Streams with different key
  tuples are independent (NumPy's SeedSequence mixes the keys); mix keys here, never by hand
  (`seed * 1000 + epoch` collides across seeds).
- `derive_int_seed(*keys)`: the same mixing, for code that takes an int seed rather than a
  Generator (an LSH index, hash functions, table inserts, a worker's sample stream):
  `derive_int_seed(seed, LSH_SEED_STREAM, layer)`. Name what a stream is for with a constant key
  after the seed (`LSH_SEED_STREAM`, `WORKER_SEED_STREAM`, lsh.py's `_DRAW_*`), so two uses never
  share a stream.

All functions are `@njit(cache=True)` leaves and take uint64 or int64 arguments; integer inputs
are reinterpreted as uint64 (two's complement), so negative seeds are allowed.
"""

import numpy as np
from numba import njit

# Odd 64-bit constants (golden ratio and splitmix64 multipliers); C1/C2 scale step and sample.
C1 = np.uint64(0x9E3779B97F4A7C15)
C2 = np.uint64(0xBF58476D1CE4E5B9)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_XS_MULT = np.uint64(0x2545F4914F6CDD1D)
_NONZERO = np.uint64(0x853C49E6748FEA9B)  # replaces a zero state (xorshift would stay at 0)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S12 = np.uint64(12)
_S25 = np.uint64(25)
_S11 = np.uint64(11)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True)
def splitmix64(x):
    """Bijective mix of a 64-bit integer -> uint64 (splitmix64 finaliser of x + golden ratio)."""
    z = np.uint64(x) + C1
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def mix_seed(a, b):
    """Combine two integers into one uint64 seed; mix_seed(a, b) != mix_seed(b, a) in general."""
    return splitmix64(splitmix64(a) ^ np.uint64(b))


@njit(cache=True)
def derive_seed(seed, step, sample):
    """Per-sample seed: splitmix64(seed ^ step * C1 ^ sample * C2) (wrapping uint64 arithmetic)."""
    return splitmix64(np.uint64(seed) ^ (np.uint64(step) * C1) ^ (np.uint64(sample) * C2))


@njit(cache=True)
def seed_state(state, i, seed):
    """Set state[i] from any integer seed: splitmix64(seed), never 0."""
    s = splitmix64(seed)
    if s == 0:
        s = _NONZERO
    state[i] = s


@njit(cache=True)
def xorshift_step(x):
    """The xorshift64* state after x (uint64): what next_u64 stores. For a loop that keeps the
    state in a local variable and draws with uniform_of, instead of loading and storing state[i]
    around every draw (kernels.dropout: one draw per hidden unit)."""
    x ^= x >> _S12
    x ^= x << _S25
    x ^= x >> _S27
    return x


@njit(cache=True)
def uniform_of(x):
    """The float64 in [0, 1) that uniform draws from the state x (after its step)."""
    return np.float64((x * _XS_MULT) >> _S11) * _INV_2_53


@njit(cache=True)
def _advance(state, i):
    """Step state[i] (uint64 array) in place; returns the new state."""
    x = xorshift_step(state[i])
    state[i] = x
    return x


@njit(cache=True)
def next_u64(state, i):
    """Advance the xorshift64* state[i] (uint64 array) and return the next uint64 output."""
    return _advance(state, i) * _XS_MULT


@njit(cache=True)
def uniform(state, i):
    """float64 in [0, 1) from the top 53 bits of next_u64(state, i)."""
    return uniform_of(_advance(state, i))


@njit(cache=True)
def randint(state, i, n):
    """int64 in [0, n) for n >= 1 (floor(uniform * n); bias below 2**-53 * n)."""
    r = np.int64(uniform(state, i) * n)
    if r >= n:  # cannot happen for n < 2**53; kept as a guard
        r = n - 1
    return r


def generator(*keys) -> np.random.Generator:
    """Python helper: np.random.default_rng of the keys as uint64 words (negative ints wrap), so
    generator(seed, epoch) is the stream default_rng([seed, epoch]) always gave."""
    return np.random.default_rng([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys])


def derive_int_seed(*keys) -> int:
    """Python helper: a seed in [0, 2**63) (an int64 and a uint64 alike) for the stream named by
    integer keys, from NumPy's SeedSequence as `generator` mixes them. Each key is one 64-bit word
    (negative ints wrap), so no two key tuples of the same length share a seed by accident."""
    words = np.array([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys], dtype=np.uint64)
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def make_state(seed, n=1):
    """Python helper: a (n,) uint64 state array, state[t] = seed_state(mix_seed(seed, t))."""
    if n < 1:
        raise ValueError(f"make_state: n must be >= 1, got {n}")
    state = np.empty(n, dtype=np.uint64)
    _fill_state(state, np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF))
    return state


@njit(cache=True)
def _fill_state(state, seed):
    for t in range(state.shape[0]):
        seed_state(state, t, mix_seed(seed, np.uint64(t)))
