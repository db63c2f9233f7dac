"""prefetch.py: prefetch hints compile for the arrays the kernels pass and change no result."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from slidepy.prefetch import prefetch_item, prefetch_row


@njit
def _gather_dots(weights, ids, x, ahead):
    """weights[ids[a]] . x for each a, prefetching the row `ahead` positions on (0: none)."""
    out = np.empty(ids.shape[0], np.float32)
    for a in range(ids.shape[0]):
        if ahead > 0 and a + ahead < ids.shape[0]:
            prefetch_row(weights, ids[a + ahead])
        s = np.float32(0.0)
        for j in range(weights.shape[1]):
            s += weights[ids[a], j] * x[j]
        out[a] = s
    return out


@njit
def _count_marked(stamp, items, mark, ahead):
    """How many items carry `mark` in stamp, prefetching the stamp of the item `ahead` on."""
    count = 0
    for s in range(items.shape[0]):
        if ahead > 0 and s + ahead < items.shape[0]:
            prefetch_item(stamp, items[s + ahead])
        count += stamp[items[s]] == mark
    return count


@pytest.mark.parametrize("dtype, width", [(np.float32, 128), (np.float32, 3), (np.float64, 20), (np.int32, 17)])
def test_prefetched_rows_give_the_same_products(dtype, width):
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((1000, width)).astype(dtype)
    ids = rng.integers(0, 1000, 300)
    x = rng.standard_normal(width).astype(np.float32)
    plain = _gather_dots(weights, ids, x, 0)
    expected = np.array([np.float32(sum(np.float32(weights[i, j]) * x[j] for j in range(width))) for i in ids[:5]])
    np.testing.assert_allclose(plain[:5], expected, rtol=1e-5, atol=1e-4)
    for ahead in (1, 4, 16, 1000):
        np.testing.assert_array_equal(_gather_dots(weights, ids, x, ahead), plain)


def test_prefetch_of_a_row_past_the_end_is_harmless():
    """A hint computes an address and never loads it: a row index past the array does not fault."""
    weights = np.ones((4, 8), np.float32)

    @njit
    def ask_past_the_end(w):
        prefetch_row(w, 10**6)
        return w[3].sum()

    assert ask_past_the_end(weights) == 8.0


def test_prefetched_items_give_the_same_counts():
    rng = np.random.default_rng(1)
    stamp = rng.integers(0, 3, 50_000).astype(np.int32)
    items = rng.integers(0, 50_000, 4_000)
    expected = int((stamp[items] == 2).sum())
    for ahead in (0, 1, 8, 64):
        assert _count_marked(stamp, items, np.int32(2), ahead) == expected


def test_prefetch_refuses_arrays_it_cannot_address():
    """prefetch_row needs a C-contiguous 2-D array, prefetch_item a contiguous 1-D one."""

    @njit
    def row_of_a_vector(v):
        prefetch_row(v, 0)

    @njit
    def row_of_a_transpose(w):
        prefetch_row(w.T, 0)

    @njit
    def item_of_a_matrix(w):
        prefetch_item(w, 0)

    with pytest.raises(TypingError):
        row_of_a_vector(np.zeros(4, np.float32))
    with pytest.raises(TypingError):
        row_of_a_transpose(np.zeros((4, 4), np.float32))
    with pytest.raises(TypingError):
        item_of_a_matrix(np.zeros((4, 4), np.float32))


def test_only_arrays_too_large_to_stay_cached_are_prefetched():
    """rows_ahead: PREFETCH_ROWS for an array of PREFETCH_MIN_BYTES or more, else a distance no
    loop reaches (Bibtex's 3.7 MB arrays lost time to the hints)."""
    from slidepy.prefetch import NEVER, PREFETCH_MIN_BYTES, PREFETCH_ROWS, rows_ahead

    large = np.empty((PREFETCH_MIN_BYTES // 512, 128), np.float32)  # exactly the threshold (pages never touched)
    small = np.empty((1836, 512), np.float32)
    assert rows_ahead(large) == PREFETCH_ROWS
    assert rows_ahead(large[:-1]) == NEVER
    assert rows_ahead(small) == NEVER
    assert NEVER > 10**15
