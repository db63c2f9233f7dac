"""Synthetic multi-label datasets that a network can learn, at any scale.

    train, test = make_synthetic(20_000, 2_000, n_features=135_909, n_labels=670_091,
                                 nnz_per_sample=76, labels_per_sample=(1, 10))

Shape letters: B samples, D = `n_features`, N = `n_labels`, P = `prototype_size`.

The generative story
--------------------
- Every label l has a sparse *prototype*: P feature ids with positive weights, given by a hash of
  (seed, l, slot) (`label_prototypes`). Nothing of size N x D or even N x P is stored, so the
  Amazon-670K shape costs no more memory than the samples themselves.
- Label popularity is Zipf: the label of popularity rank r (a random permutation of the ids)
  has probability proportional to 1 / (r + 1) ** zipf_exponent.
- A sample draws k labels, k uniform in `labels_per_sample` (inclusive), by popularity;
  repeats are merged, so a sample can end with fewer than k labels (rare unless the exponent is
  large).
- It gets m ~ Poisson(nnz_per_sample) (at least 1) feature draws: each is uniform noise with
  probability `noise_fraction`, else a prototype feature. The prototype draws are split evenly
  over the sample's labels and taken without replacement from each label's P slots, so a label
  contributes at most P features. Value = slot weight x U(0.5, 1.5) for prototype features,
  U(0.1, 0.6) for noise.
- Within a row, repeated feature ids (hash or noise collisions) are merged by summing, ids are
  sorted and unique, and values are L2-normalised (positive float32, tf-idf-like).

Train and test come from the same prototypes and popularity, drawn from one seeded generator,
so the whole pair is a deterministic function of the arguments.
"""

from __future__ import annotations

import numpy as np

from slidepy.data import Dataset, dataset_stats

__all__ = ["make_synthetic", "label_prototypes", "dataset_stats"]

# splitmix64 constants (Steele, Lea & Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
# Salts that separate the hash streams for prototype ids and prototype weights.
_SALT_ID = np.uint64(0x5D1DE1D5)
_SALT_WEIGHT = np.uint64(0xC0FFEE11)
# Prototype weights lie in [_WEIGHT_MIN, 1).
_WEIGHT_MIN = 0.2


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic, vectorised)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def label_prototypes(label_ids, n_features: int, prototype_size: int, seed: int = 0):
    """The prototypes of `label_ids` as used by `make_synthetic(..., seed=seed)`.

    `label_ids` (n,) ints. Returns `ids` (n, P) int32 in [0, n_features) (a prototype may
    repeat an id: hash collisions) and `weights` (n, P) float32 in [0.2, 1).
    """
    labels = np.asarray(label_ids, dtype=np.int64)
    slots = np.arange(prototype_size, dtype=np.int64)
    labels, slots = np.broadcast_arrays(labels[:, None], slots[None, :])
    return _prototype_cells(labels, slots, n_features, prototype_size, seed)


def _prototype_cells(labels, slots, n_features, prototype_size, seed):
    """Feature id (int32) and weight (float32) of prototype slot `slots` of label `labels`.

    Elementwise over equal-shape int64 arrays; a pure function of (seed, label, slot), which is
    what lets prototypes be recomputed instead of stored.
    """
    cell = labels.astype(np.uint64) * np.uint64(prototype_size) + slots.astype(np.uint64)
    seed_mix = _splitmix64(np.array([seed], dtype=np.int64).astype(np.uint64))[0]
    base = _splitmix64(cell ^ seed_mix)
    ids = (_splitmix64(base ^ _SALT_ID) % np.uint64(n_features)).astype(np.int32)
    unit = (_splitmix64(base ^ _SALT_WEIGHT) >> np.uint64(11)).astype(np.float64) / 2.0**53
    weights = (_WEIGHT_MIN + (1.0 - _WEIGHT_MIN) * unit).astype(np.float32)
    return ids, weights


def make_synthetic(
    n_train: int,
    n_test: int,
    n_features: int,
    n_labels: int,
    *,
    nnz_per_sample: int = 20,
    labels_per_sample: tuple[int, int] = (1, 3),
    prototype_size: int | None = None,
    noise_fraction: float = 0.2,
    zipf_exponent: float = 1.0,
    seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """A (train, test) pair of learnable synthetic datasets; see the module docstring.

    `prototype_size` defaults to `nnz_per_sample`. Raises ValueError on out-of-range arguments.
    """
    lo, hi = (int(v) for v in labels_per_sample)
    p = nnz_per_sample if prototype_size is None else int(prototype_size)
    checks = (
        (n_train >= 0 and n_test >= 0, "n_train and n_test must be >= 0"),
        (1 <= n_features <= 2**31 - 1, "n_features must be in [1, 2**31)"),
        (1 <= n_labels <= 2**31 - 1, "n_labels must be in [1, 2**31)"),
        (nnz_per_sample >= 1, "nnz_per_sample must be >= 1"),
        (1 <= lo <= hi, "labels_per_sample must be (lo, hi) with 1 <= lo <= hi"),
        (p >= 1, "prototype_size must be >= 1"),
        (0.0 <= noise_fraction <= 1.0, "noise_fraction must be in [0, 1]"),
        (zipf_exponent >= 0.0, "zipf_exponent must be >= 0"),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n_labels)
    popularity = 1.0 / (rank + 1.0) ** zipf_exponent
    label_cdf = np.cumsum(popularity / popularity.sum())
    label_cdf[-1] = 1.0  # guard searchsorted against a rounding shortfall
    args = (n_features, n_labels, nnz_per_sample, lo, hi, p, noise_fraction, label_cdf, seed)
    train = _draw_samples(rng, n_train, *args, name=f"synthetic(seed={seed}):train")
    test = _draw_samples(rng, n_test, *args, name=f"synthetic(seed={seed}):test")
    return train, test


def _draw_samples(
    rng, n, n_features, n_labels, nnz, lo, hi, p, noise_fraction, label_cdf, seed, *, name
) -> Dataset:
    """Draw `n` samples (vectorised over all of them); see the module docstring."""
    # Labels: k per sample by popularity, then (row, label) pairs deduplicated and sorted.
    k = rng.integers(lo, hi + 1, size=n)
    pair_row = np.repeat(np.arange(n, dtype=np.int64), k)
    drawn = np.searchsorted(label_cdf, rng.random(pair_row.size), side="right")
    drawn = np.minimum(drawn, n_labels - 1)
    pair_key = np.sort(pair_row * n_labels + drawn)
    pair_key = pair_key[_first_of_runs(pair_key)]
    pair_row = pair_key // n_labels
    pair_label = pair_key % n_labels
    labels_per_row = np.bincount(pair_row, minlength=n)
    y_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(labels_per_row, out=y_indptr[1:])

    # Feature draws per sample: m total, of which n_noise uniform noise, the rest prototypes.
    m = np.maximum(rng.poisson(nnz, size=n), 1)
    n_noise = rng.binomial(m, noise_fraction)
    n_proto = m - n_noise
    # Split a row's prototype draws evenly over its labels (the first `extra` get one more).
    first_pair = y_indptr[:-1]
    pos_in_row = np.arange(pair_row.size) - first_pair[pair_row]
    per_label = n_proto[pair_row] // labels_per_row[pair_row]
    extra = n_proto[pair_row] % labels_per_row[pair_row]
    take = np.minimum(per_label + (pos_in_row < extra), p)

    # Without replacement from each pair's P slots: random key per slot, keep the `take` smallest.
    # Only pairs that take something need a slot order.
    active = np.flatnonzero(take > 0)
    slot_order = np.argsort(rng.random((active.size, p)), axis=1)
    chosen = np.arange(p)[None, :] < take[active, None]  # the first `take` of each random order
    chosen_pair = np.broadcast_to(active[:, None], chosen.shape)[chosen]
    chosen_slot = slot_order[chosen]
    proto_row = pair_row[chosen_pair]
    proto_feat, proto_w = _prototype_cells(
        pair_label[chosen_pair], chosen_slot, n_features, p, seed
    )
    proto_val = proto_w * rng.uniform(0.5, 1.5, size=proto_feat.size).astype(np.float32)

    noise_row = np.repeat(np.arange(n, dtype=np.int64), n_noise)
    noise_feat = rng.integers(0, n_features, size=noise_row.size, dtype=np.int32)
    noise_val = rng.uniform(0.1, 0.6, size=noise_row.size).astype(np.float32)

    # Merge repeats within a row (sum), which also sorts ids within rows.
    row = np.concatenate([proto_row, noise_row])
    feat = np.concatenate([proto_feat, noise_feat]).astype(np.int64)
    val = np.concatenate([proto_val, noise_val]).astype(np.float64)
    key = row * n_features + feat
    order = np.argsort(key)
    key = key[order]
    starts = np.flatnonzero(_first_of_runs(key))
    merged = np.add.reduceat(val[order], starts) if starts.size else val[:0]
    key = key[starts]
    x_row = key // n_features
    x_indices = (key % n_features).astype(np.int32)
    norms = np.sqrt(np.bincount(x_row, weights=merged * merged, minlength=n))
    x_values = (merged / norms[x_row]).astype(np.float32)
    x_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(x_row, minlength=n), out=x_indptr[1:])
    return Dataset(
        x_indptr=x_indptr,
        x_indices=x_indices,
        x_values=x_values,
        y_indptr=y_indptr,
        y_indices=pair_label.astype(np.int32),
        n_features=n_features,
        n_labels=n_labels,
        source=name,
    )


def _first_of_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Bool mask of the entries that differ from their predecessor (the first of each run)."""
    mask = np.ones(sorted_keys.size, dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=mask[1:])
    return mask
