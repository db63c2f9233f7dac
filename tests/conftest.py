"""Shared fixtures: a tiny synthetic config that trains in seconds once the kernels are compiled, and
one numba thread for tests that compare Hogwild sums exactly."""

import numba
import pytest


@pytest.fixture
def one_thread():
    """numba on one thread for the test: with more, Hogwild adds on tiny layers may race, which
    would make exact comparisons flaky by design."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """Parsed-data caches of the test run go to a temp directory, not the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SLIDEPY_CACHE_DIR", str(tmp_path_factory.mktemp("slidepy-cache")))
    yield
    mp.undo()

TINY = {
    "data": {"synthetic": {"n_train": 1200, "n_test": 300, "n_features": 400, "n_labels": 150,
                           "nnz_per_sample": 15, "labels_per_sample": [1, 2], "seed": 3}},
    "model": {"hidden": [32],
              "output": {"selection": {"mode": "lsh", "budget": 40,
                                       "lsh": {"family": "srp", "k": 4, "l": 8, "range_pow": 4,
                                               "bucket_capacity": 32,
                                               "rebuild": {"initial_interval": 5, "decay": 1.2}}}}},
    "training": {"epochs": 4, "batch_size": 64, "lr": 0.005, "seed": 0, "log_every": 5},
    "eval": {"every": 0, "subset": None, "recall_samples": 64},
    "output": {"checkpoint_every": 10, "keep_last": 2},
}


@pytest.fixture
def tiny_config(tmp_path):
    """A fresh copy of the tiny config dict with run_dir inside tmp_path."""
    import copy

    cfg = copy.deepcopy(TINY)
    cfg["output"]["run_dir"] = str(tmp_path / "run")
    return cfg


@pytest.fixture
def sliced_config(tiny_config, monkeypatch):
    """The tiny config with the leaves' share "auto" (shortlist 20) under slice rules that spare
    120 of its 1,200 training samples (reranker.validation_rows: 10%, at least 50)."""
    from slidepy import reranker

    monkeypatch.setattr(reranker, "MIN_VALIDATION", 50)
    monkeypatch.setattr(reranker, "VALIDATION_SHARE", 0.1)
    monkeypatch.setattr(reranker, "MAX_VALIDATION_SHARE", 0.1)
    tiny_config["model"]["reranker"] = {"weight": "auto", "shortlist": 20}
    return tiny_config


def interrupt_at_step(n: int):
    """A Trainer callback that asks the run to stop (as SIGINT would) once it reaches step n."""

    def stop(trainer, record):
        if trainer.step >= n:
            trainer.stop_request.signum = 2

    return stop
