"""Filling a sample's active set for one layer: serial, allocation-free numba leaves.

An active set is a prefix `ids[:n]` of a per-thread-chunk row of `LayerScratch.act_ids`. Every
selector appends to it; duplicates are kept out with the per-chunk `stamp` row: `stamp[id] == mark`
means "already in this sample's set", and a fresh `mark` per (sample, layer) makes clearing
unnecessary. The LSH selector (lsh.py) follows the same contract.

Shape letters: N neurons of the layer, A capacity of the active set, T thread chunks.
"""

import numpy as np
from numba import njit

from .rng import randint

_MARK_LIMIT = np.int32(2**31 - 2)


@njit(cache=True)
def next_mark(stamp, mark, t):
    """A fresh stamp value for chunk t: `mark[t] + 1`, wiping the stamp row on int32 wrap-around."""
    m = mark[t] + 1
    if m >= _MARK_LIMIT:
        stamp[t, :] = 0
        m = 1
    mark[t] = m
    return m


@njit(cache=True)
def unique_prefix(ids, n, out):
    """Copy ids[:n] into out without repeats (first occurrence order); returns the count.

    Quadratic, for the short label lists of one sample, where it beats any hashing.
    """
    k = 0
    for i in range(n):
        v = ids[i]
        seen = False
        for j in range(k):
            if out[j] == v:
                seen = True
                break
        if not seen:
            out[k] = v
            k += 1
    return k


@njit(cache=True)
def fill_all(ids, n_neurons):
    """Every neuron active, in id order (so position == id); returns n_neurons."""
    for a in range(n_neurons):
        ids[a] = a
    return n_neurons


@njit(cache=True)
def add_forced(ids, n, stamp_row, mark, forced, n_forced):
    """Append forced ids (the true labels) not yet in the set; returns the new length."""
    for j in range(n_forced):
        v = forced[j]
        if stamp_row[v] != mark:
            stamp_row[v] = mark
            ids[n] = v
            n += 1
    return n


@njit(cache=True)
def fill_random(ids, n, target, n_neurons, stamp_row, mark, rng, t):
    """Append uniformly drawn distinct neurons until the set holds `target` (target < n_neurons).

    Rejection sampling: the builder turns a budget >= N into MODE_ALL, so the expected number
    of draws stays O(target * log) even near the top of the range.
    """
    while n < target:
        v = randint(rng, t, n_neurons)
        if stamp_row[v] != mark:
            stamp_row[v] = mark
            ids[n] = v
            n += 1
    return n
