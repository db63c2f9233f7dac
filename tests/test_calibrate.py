"""The trial that tells the automatic recipe how fast this machine trains (calibrate.py)."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from slidepy import make_synthetic
from slidepy.calibrate import MIN_STEPS, trial_rate, trial_seconds
from slidepy.configfile import config_from_dict
from slidepy.engine import Engine
from slidepy.recipe import auto_config


def test_trial_seconds_are_a_small_share_of_a_short_budget():
    # 5% of a short budget, at most 2 s: the cap is reached at a 40 s budget
    assert trial_seconds(4.0) == pytest.approx(0.2)
    assert trial_seconds(30.0) == pytest.approx(1.5)
    assert trial_seconds(40.0) == pytest.approx(2.0)
    assert trial_seconds(600.0) == 2.0 and trial_seconds(3600.0) == 2.0
    assert all(trial_seconds(b) <= 0.05 * b for b in (0.5, 1.0, 10.0, 40.0, 1e4))


@pytest.mark.parametrize("n_labels", [80, 5000])  # exact softmax; lsh with the cluster index
def test_trial_rate_times_steps_of_the_recipes_network_and_leaves_no_trace(tmp_path, monkeypatch, n_labels):
    monkeypatch.chdir(tmp_path)
    train, _ = make_synthetic(600, 10, 200, n_labels, nnz_per_sample=8, labels_per_sample=(1, 2), seed=3)
    cfg = config_from_dict(auto_config(train, "train.txt", None, time_budget_s=10.0))
    steps = []
    real_step = Engine.train_step

    def counted(self, data, rows, apply=True):  # the trial's steps apply; compiling's do not
        if apply:
            steps.append(len(rows))
        return real_step(self, data, rows, apply=apply)

    monkeypatch.setattr(Engine, "train_step", counted)
    data_before = train.x_values.copy()
    started = time.perf_counter()
    rate = trial_rate(cfg, train, 0.3, progress=False)
    spent = time.perf_counter() - started
    assert len(steps) >= MIN_STEPS and set(steps) == {cfg.training.batch_size}
    assert np.isfinite(rate) and rate > 0
    assert spent >= 0.3  # the steps ran for the seconds asked for (the arithmetic: the test below)
    assert list(tmp_path.iterdir()) == []  # nothing written: no run directory, no checkpoint
    np.testing.assert_array_equal(train.x_values, data_before)


def test_the_trials_cluster_index_is_built_with_one_lloyd_iteration_and_the_runs_with_four(monkeypatch):
    """The trial times steps, whose cost is their budget of rows however good the clusters; the run
    builds its own index again, with INITIAL_KMEANS_ITERS (15 s at 10^5 labels on 2 cores)."""
    import slidepy.lsh as lsh_mod
    from slidepy.model import Model

    train, _ = make_synthetic(600, 10, 200, 5000, nnz_per_sample=8, labels_per_sample=(1, 2), seed=3)
    cfg = config_from_dict(auto_config(train, "train.txt", None, time_budget_s=10.0))
    iters, real = [], lsh_mod.cluster_rows

    def counted(rows, bias, centroids, n, *args, **kwargs):
        iters.append(n)
        return real(rows, bias, centroids, n, *args, **kwargs)

    monkeypatch.setattr(lsh_mod, "cluster_rows", counted)
    trial_rate(cfg, train, 0.05, progress=False)
    assert iters and set(iters) == {1}
    iters.clear()
    Model.build(cfg, train.n_features, train.n_labels)
    assert iters and set(iters) == {lsh_mod.INITIAL_KMEANS_ITERS} and lsh_mod.INITIAL_KMEANS_ITERS > 1


def _fake_steps(monkeypatch, seconds_of_step):
    """Engine steps that take seconds_of_step(n) of a fake clock (n: 1 for the first), nothing to
    compile: the trial's arithmetic alone."""
    import slidepy.calibrate as calibrate

    clock, taken = [0.0], []

    def step(self, data, rows, apply=True):
        taken.append(len(rows))
        clock[0] += seconds_of_step(len(taken))

    monkeypatch.setattr(calibrate, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(calibrate, "compile_with_notice", lambda *args: 0.0)
    monkeypatch.setattr(Engine, "train_step", step)
    return taken


def test_the_rate_is_the_trials_later_half_where_the_first_steps_pay_for_fresh_memory(monkeypatch):
    train, _ = make_synthetic(600, 10, 200, 80, nnz_per_sample=8, labels_per_sample=(1, 2), seed=3)
    cfg = config_from_dict(auto_config(train, "train.txt", None, time_budget_s=10.0))
    batch = cfg.training.batch_size
    taken = _fake_steps(monkeypatch, lambda n: 0.010 if n <= 10 else 0.002)
    rate = trial_rate(cfg, train, 0.3, progress=False)
    assert len(taken) == 110  # 10 slow steps (0.1 s), then fast ones until 0.3 s had passed
    assert rate == pytest.approx(batch / 0.002)  # the whole trial's would be 110 x batch / 0.3
    # a last step that takes half the trial leaves no later half to time: the whole trial's rate
    taken = _fake_steps(monkeypatch, lambda n: 0.001 if n < MIN_STEPS else 1.0)
    rate = trial_rate(cfg, train, 0.3, progress=False)
    assert len(taken) == MIN_STEPS and rate == pytest.approx(MIN_STEPS * batch / (1.0 + 0.001 * (MIN_STEPS - 1)))
