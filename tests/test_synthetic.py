"""slidepy.synthetic: structure, determinism, Zipf skew, and that the labels are learnable."""

from __future__ import annotations

import numpy as np
import pytest

from slidepy.data import Dataset, dataset_stats
from slidepy.synthetic import label_prototypes, make_synthetic


def dense_x(ds: Dataset, binary=False) -> np.ndarray:
    x = np.zeros((ds.n_samples, ds.n_features), dtype=np.float64)
    rows = np.repeat(np.arange(ds.n_samples), np.diff(ds.x_indptr))
    np.add.at(x, (rows, ds.x_indices), 1.0 if binary else ds.x_values)
    return x


def label_sets(ds: Dataset) -> list[set]:
    return [set(ds.y_indices[a:b].tolist()) for a, b in zip(ds.y_indptr[:-1], ds.y_indptr[1:])]


def precision_at_1(scores: np.ndarray, ds: Dataset) -> float:
    top = scores.argmax(axis=1)
    return float(np.mean([t in s for t, s in zip(top, label_sets(ds))]))


def test_structure_dtypes_sortedness():
    train, test = make_synthetic(
        500, 200, 300, 50, nnz_per_sample=15, labels_per_sample=(1, 4), seed=3
    )
    assert (train.n_samples, test.n_samples) == (500, 200)
    for ds in (train, test):
        assert (ds.n_features, ds.n_labels) == (300, 50)
        assert ds.x_indptr.dtype == np.int64 and ds.y_indptr.dtype == np.int64
        assert ds.x_indices.dtype == np.int32 and ds.y_indices.dtype == np.int32
        assert ds.x_values.dtype == np.float32
        assert np.all(ds.x_values > 0)
        n_lab = np.diff(ds.y_indptr)
        assert n_lab.min() >= 1 and n_lab.max() <= 4
        assert np.all(np.diff(ds.x_indptr) >= 1)
        for a, b in zip(ds.x_indptr[:-1], ds.x_indptr[1:]):
            assert np.all(np.diff(ds.x_indices[a:b]) > 0)  # sorted and unique
            assert np.sum(ds.x_values[a:b].astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
        for a, b in zip(ds.y_indptr[:-1], ds.y_indptr[1:]):
            assert np.all(np.diff(ds.y_indices[a:b]) > 0)
    stats = dataset_stats(train)
    assert stats["samples_without_labels"] == 0 and stats["samples_without_features"] == 0
    assert 12 <= stats["avg_nnz_per_sample"] <= 15.5  # Poisson(15) minus merged repeats
    assert 2.0 <= stats["avg_labels_per_sample"] <= 2.5  # uniform 1..4 minus merged repeats


def test_deterministic_by_seed():
    a = make_synthetic(300, 100, 500, 80, seed=11)
    b = make_synthetic(300, 100, 500, 80, seed=11)
    c = make_synthetic(300, 100, 500, 80, seed=12)
    for x, y in zip(a, b):
        for name in ("x_indptr", "x_indices", "x_values", "y_indptr", "y_indices"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
    assert not np.array_equal(a[0].y_indices, c[0].y_indices[: a[0].y_indices.size])


def test_prototype_overlap_predicts_labels():
    n_features, n_labels, nnz = 2000, 100, 20
    _, test = make_synthetic(0, 1000, n_features, n_labels, nnz_per_sample=nnz, seed=5)
    ids, weights = label_prototypes(np.arange(n_labels), n_features, nnz, seed=5)
    assert ids.shape == weights.shape == (n_labels, nnz) and ids.dtype == np.int32
    assert weights.min() >= 0.2 and weights.max() < 1.0
    proto = np.zeros((n_labels, n_features))
    proto[np.repeat(np.arange(n_labels), nnz), ids.ravel()] = 1.0
    p1 = precision_at_1(dense_x(test, binary=True) @ proto.T, test)
    chance = dataset_stats(test)["avg_labels_per_sample"] / n_labels
    assert p1 > 0.9, p1
    assert p1 > 20 * chance


def test_learnable_from_training_data_alone():
    """A nearest-centroid classifier fit on train (no access to prototypes) scores well on test."""
    train, test = make_synthetic(3000, 500, 2000, 100, nnz_per_sample=20, seed=6)
    x = dense_x(train)
    centroids = np.zeros((train.n_labels, train.n_features))
    for i, labels in enumerate(label_sets(train)):
        for label in labels:
            centroids[label] += x[i]
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    p1 = precision_at_1(dense_x(test) @ centroids.T, test)
    assert p1 > 0.7, p1


def test_noise_fraction_controls_signal():
    """All-noise features carry no label information: P@1 falls to roughly chance."""
    n_features, n_labels = 2000, 100
    _, test = make_synthetic(
        0, 1000, n_features, n_labels, noise_fraction=1.0, zipf_exponent=0.0, seed=7
    )
    ids, _ = label_prototypes(np.arange(n_labels), n_features, 20, seed=7)
    proto = np.zeros((n_labels, n_features))
    proto[np.repeat(np.arange(n_labels), 20), ids.ravel()] = 1.0
    p1 = precision_at_1(dense_x(test, binary=True) @ proto.T, test)
    assert p1 < 0.1, p1


def test_zipf_skew():
    args = (20000, 0, 500, 1000)
    train, _ = make_synthetic(*args, nnz_per_sample=5, labels_per_sample=(1, 1), seed=8)
    counts = np.sort(np.bincount(train.y_indices, minlength=1000))[::-1]
    # Zipf(1) over 1000 labels: rank 1 gets ~1/H(1000) ~ 13% of draws, the median rank ~0.03%.
    assert counts[0] / train.n_samples == pytest.approx(0.134, abs=0.02)
    assert counts[0] > 50 * max(counts[500], 1)
    flat, _ = make_synthetic(
        *args, nnz_per_sample=5, labels_per_sample=(1, 1), zipf_exponent=0.0, seed=8
    )
    flat_counts = np.bincount(flat.y_indices, minlength=1000)
    assert flat_counts.max() < 3 * flat_counts.mean()
    # The most popular labels are not simply the lowest ids (a seeded permutation ranks them).
    assert set(np.argsort(np.bincount(train.y_indices, minlength=1000))[-5:]) != {0, 1, 2, 3, 4}


def test_amazon_670k_shape_has_the_requested_density():
    """The benchmark's 670K-label shape: the non-zeros and labels per sample asked for, every id
    in range. (How fast it generates is the benchmark's business, not a test's.)"""
    train, test = make_synthetic(
        20_000, 1_000, 135_909, 670_091, nnz_per_sample=76, labels_per_sample=(1, 10), seed=0
    )
    stats = dataset_stats(train)
    assert stats["avg_nnz_per_sample"] == pytest.approx(76, rel=0.05)
    assert stats["avg_labels_per_sample"] == pytest.approx(5.4, rel=0.05)
    assert train.x_indices.max() < 135_909 and train.y_indices.max() < 670_091


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": -1},
        {"n_features": 0},
        {"n_labels": 0},
        {"nnz_per_sample": 0},
        {"labels_per_sample": (0, 2)},
        {"labels_per_sample": (3, 2)},
        {"prototype_size": 0},
        {"noise_fraction": 1.5},
        {"zipf_exponent": -1.0},
    ],
)
def test_argument_checks(kwargs):
    args = {"n_train": 10, "n_test": 10, "n_features": 50, "n_labels": 10, **kwargs}
    with pytest.raises(ValueError):
        make_synthetic(**args)


def test_empty_splits():
    train, test = make_synthetic(0, 0, 10, 5)
    assert train.n_samples == 0 and test.n_samples == 0 and dataset_stats(train)["nnz"] == 0
