"""The benchmark's data sets: synthetic shapes generated on the fly, and the real sets in
../shared/data with the config users run on each."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import REPO

SYNTHETIC_SHAPES = {
    # name: (n_features, n_labels, nnz_per_sample, labels_per_sample)
    "amazon670k": (135_909, 670_091, 76, (1, 10)),
    "delicious200k": (782_585, 205_443, 76, (1, 10)),
    "tiny": (500, 2_000, 20, (1, 3)),  # for tests/test_bench.py
}
REAL_PATHS = {
    "bibtex": ("../shared/data/Bibtex/train.txt", "../shared/data/Bibtex/test.txt"),
    "delicious": ("../shared/data/Delicious/train.txt", "../shared/data/Delicious/test.txt"),
    "mnist": ("../shared/data/MNIST/train.txt.gz", "../shared/data/MNIST/test.txt.gz"),
    "debian-deps": ("../shared/data/DebianDeps/train.txt", "../shared/data/DebianDeps/test.txt"),
    "debian-nextword": ("../shared/data/DebianNextWord/train.txt", "../shared/data/DebianNextWord/test.txt"),
}
# The config users run on each real dataset (relative to the repository root).
SHIPPED_CONFIGS = {
    "bibtex": "configs/bibtex.yaml",
    "delicious": "configs/delicious.yaml",
    "mnist": "configs/mnist.yaml",
    "debian-deps": "configs/debian-deps.yaml",
    "debian-nextword": "configs/debian-nextword.yaml",
}
DEFAULT_DATASETS = ("amazon670k", "delicious200k", "bibtex", "delicious", "mnist", "debian-deps", "debian-nextword")
QUICK_DATASETS = ("amazon670k", "bibtex", "debian-deps")
# Epoch defaults where no config (or --epochs) says: slidepy on the datasets without a config, and
# dense PyTorch where the targets name its epochs (issue 10: DebianDeps 10, DebianNextWord 1).
DEFAULT_EPOCHS = {"bibtex": 10, "delicious": 5, "mnist": 1, "tiny": 2}
TORCH_EPOCHS = {"debian-deps": 10, "debian-nextword": 1}
# Issue 9's real datasets: slidepy's shipped config against the better of Omikuji and PECOS.
TREE_TARGET_DATASETS = ("bibtex", "delicious", "debian-deps", "debian-nextword")


def _real_path(rel: str, data_root: str | None = None) -> Path:
    """A data path as the configs write it (`../shared/data/...`, relative to the repository
    root). With `data_root`, `../shared/data/X` is `data_root/X`. Otherwise the path is tried
    against the repository root and then against each directory above it (a git worktree may sit
    deeper than the checkout the configs were written for); the first that exists wins."""
    rel = str(rel)
    prefix = "../shared/data/"
    if data_root and rel.startswith(prefix):
        return (Path(data_root) / rel[len(prefix):]).resolve()
    if os.path.isabs(rel):
        return Path(rel)
    first = (REPO / rel).resolve()
    if first.exists() or not rel.startswith("../"):
        return first
    tail = rel[len("../"):]
    for up in REPO.parents:
        cand = up / tail
        if cand.exists():
            return cand.resolve()
    return first


def dataset_paths(name: str, data_root: str | None = None) -> tuple[Path, Path]:
    tr, te = REAL_PATHS[name]
    return _real_path(tr, data_root), _real_path(te, data_root)


def dataset_available(name: str, data_root: str | None = None) -> str | None:
    """None if the dataset can be used, else the reason it cannot."""
    if name in SYNTHETIC_SHAPES:
        return None
    if name not in REAL_PATHS:
        return f"unknown dataset {name!r}"
    for rel, path in zip(REAL_PATHS[name], dataset_paths(name, data_root)):
        if not path.exists():
            return f"{rel} not found (looked for {path}; --data-root sets where ../shared/data is)"
    return None


def header_shape(path) -> tuple[int, int, int] | None:
    """(samples, features, labels) from an XC file's header line, or None."""
    import gzip

    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as f:
            parts = f.readline().split()
        return tuple(int(p) for p in parts) if len(parts) == 3 else None
    except (OSError, ValueError):
        return None


def load_bench_data(dspec: dict):
    """(train, test) for a dataset spec; the test set is cut to its first `eval_subset` samples so
    every system scores exactly the same samples."""
    import slidepy

    name = dspec["name"]
    if name in SYNTHETIC_SHAPES:
        nf, nl, nnz, lps = SYNTHETIC_SHAPES[name]
        train, test = slidepy.make_synthetic(int(dspec["n_train"]), int(dspec["n_test"]), nf, nl,
                                             nnz_per_sample=nnz, labels_per_sample=lps,
                                             noise_fraction=float(dspec["noise_fraction"]), seed=0)
    else:
        from slidepy.data import load_dataset

        cache_dir = dspec["cache_dir"]  # always given: nothing is written beside the data files
        train = load_dataset(dspec["train_path"], cache_dir=cache_dir)
        test = load_dataset(dspec["test_path"], cache_dir=cache_dir, n_features=train.n_features,
                            n_labels=train.n_labels)
        if dspec.get("n_train") and dspec["n_train"] < train.n_samples:
            train = train.subset(np.arange(int(dspec["n_train"])))
    subset = dspec.get("eval_subset")
    if subset and subset < test.n_samples:
        test = test.subset(np.arange(int(subset)))
    return train, test


def popularity_p1(train, test) -> float:
    """P@1 of always predicting the most frequent training label: the floor a model must beat
    before its P@1 says anything (on the synthetic Zipf data a model reaches it within steps)."""
    top = int(np.argmax(np.bincount(train.y_indices, minlength=train.n_labels)))
    hits = [top in test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]] for i in range(test.n_samples)]
    return float(np.mean(hits)) if hits else float("nan")
