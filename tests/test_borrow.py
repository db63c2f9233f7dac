"""borrow.py: borrowed arrays are the same memory as their owners, without a reference count."""

from typing import NamedTuple

import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError
from numba.typed import List

from slidepy.borrow import borrow, borrow_for_chunks


class Pair(NamedTuple):
    values: np.ndarray
    counts: np.ndarray


@njit
def _write_through(values, pairs, marker):
    """Borrow an array, a tuple and a List, then write through each; returns a sum read back."""
    v = borrow(values)
    v[0] = marker
    a, b = borrow((values, values[1:]))
    b[0] = marker + 1.0
    borrowed = borrow_for_chunks(pairs, 2)[1]
    total = 0.0
    for p in borrowed:
        p.values[0] = marker + 2.0
        p.counts[0] += 1
        total += p.values.sum()
    return total + a[0]


def test_borrowed_arrays_write_into_their_owners():
    values = np.zeros(4, np.float64)
    pairs = List([Pair(np.ones(3), np.zeros(2, np.int64)), Pair(np.ones(2), np.zeros(2, np.int64))])
    total = _write_through(values, pairs, 5.0)
    assert values[:2].tolist() == [5.0, 6.0]
    assert [p.values[0] for p in pairs] == [7.0, 7.0]
    assert [int(p.counts[0]) for p in pairs] == [1, 1]
    assert total == pytest.approx((7.0 + 1.0 + 1.0) + (7.0 + 1.0) + 5.0)


@njit(parallel=True)
def _chunked_sums(rows, pairs, out):
    """Each chunk reads its own borrowed List and the borrowed rows, as kernels.train_batch does."""
    by_chunk = borrow_for_chunks(pairs, out.shape[0])
    r = borrow(rows)
    for t in prange(out.shape[0]):
        mine = by_chunk[np.int64(t)]
        acc = 0.0
        for i in range(r.shape[0]):
            acc += mine[r[i] % len(mine)].values[t]
        out[t] = acc


def test_chunks_read_the_same_memory_as_a_serial_loop():
    rng = np.random.default_rng(0)
    pairs = List([Pair(rng.random(3), np.zeros(1, np.int64)) for _ in range(4)])
    rows = rng.integers(0, 4, 50)
    out = np.zeros(3)
    _chunked_sums(rows, pairs, out)
    expected = [sum(pairs[i % 4].values[t] for i in rows) for t in range(3)]
    np.testing.assert_allclose(out, expected)


def test_a_tuple_holding_a_list_is_refused():
    @njit
    def borrow_a_list(pairs):
        return borrow((pairs,))

    with pytest.raises(TypingError):
        borrow_a_list(List([Pair(np.ones(1), np.zeros(1, np.int64))]))


def test_a_string_is_refused():
    @njit
    def borrow_a_string(values):
        return borrow((values, "name"))

    with pytest.raises(TypingError):
        borrow_a_string(np.zeros(2))
