"""End-to-end training through the Python API: learning, resume, save/load, callbacks."""

import copy
import io
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from slidepy import Trainer, config_from_dict
from slidepy.config import OutputConfig
from slidepy.errors import CheckpointError, DataError, NumericalError
from slidepy.rundir import list_checkpoints
from slidepy.trainer import COMPILING, CheckpointClock, CompileNotice, TrainingInterrupted, eval_along_due


def _weights(trainer):
    return [np.array(layer.weights) for layer in trainer.engine.layers]


def test_lsh_training_learns_far_above_chance(tiny_config):
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    result = trainer.fit()
    logs = [r for r in trainer.history if r["event"] == "log"]
    assert logs[-1]["loss"] < logs[0]["loss"] * 0.8
    # 150 labels, Zipf popularity: always predicting the most frequent label scores well under 0.2
    assert result["P@1"] > 0.4
    # 40 random neurons of 150 would hold 40 / 150 = 0.27 of the exact top-10; measured 0.73 here,
    # 0.47-0.73 over training seeds 0-2 x data seeds 3-5
    assert result["lsh_recall@10"] > 0.4
    assert logs[-1]["active_mean"][1] <= 40 + 2  # budget (+ labels forced in)
    lines = [json.loads(line) for line in open(trainer.run_dir / "metrics.jsonl")]
    assert {"start", "log", "eval"} <= {line["event"] for line in lines}
    for key in ("step", "epoch", "train_seconds", "P@1", "P@3", "P@5"):
        assert key in lines[-1]


@pytest.mark.parametrize("mode", ["all", "random"])
def test_other_selectors_learn(tiny_config, mode):
    tiny_config["model"]["output"]["selection"]["mode"] = mode
    result = Trainer(config_from_dict(tiny_config), progress=False).fit()
    assert result["P@1"] > 0.4


def test_interrupt_and_resume_is_bit_identical(tiny_config, tmp_path):
    tiny_config["training"]["deterministic"] = True
    tiny_config["training"]["epochs"] = 2
    straight = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "straight", progress=False)
    straight.fit()

    def stop_at_step_13(trainer, record):
        if trainer.step >= 13:
            trainer.stop_request.signum = 2  # what the SIGINT handler sets

    first = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "cut", progress=False,
                    callbacks=[stop_at_step_13])
    with pytest.raises(TrainingInterrupted) as stopped:
        first.fit()
    assert "--resume" in str(stopped.value)
    assert stopped.value.checkpoint is not None

    resumed = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "cut", progress=False)
    assert resumed.resume()
    assert resumed.step == first.step
    resumed.fit()
    assert resumed.step == straight.step
    for a, b in zip(_weights(straight), _weights(resumed)):
        assert np.array_equal(a, b)
    # and the log: stopped at step 13, between log records (log_every 5), the record after the
    # resume averages steps 11-15 as the straight run's does, not 14-15 alone
    cut13 = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "cut13", progress=False)
    step_once = cut13.train_step

    def stopping_at_13():
        if cut13.step == 12:  # as a SIGINT during step 13 would: that step ends, saves and stops
            cut13.stop_request.signum = 2
        return step_once()

    cut13.train_step = stopping_at_13
    with pytest.raises(TrainingInterrupted):
        cut13.fit()
    again = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "cut13", progress=False)
    assert again.resume() and again.step == 13
    again.fit()

    def losses(run):
        return {r["step"]: r["loss"] for r in map(json.loads, open(run / "metrics.jsonl")) if r["event"] == "log"}

    assert 15 in losses(tmp_path / "cut13") and losses(tmp_path / "cut13") == losses(tmp_path / "straight")
    # datasets handed in from Python are no file the config names: its config.yaml would train on
    # other data, so the hint is the Python calls
    given = Trainer(config_from_dict(tiny_config), train=straight.train_data, test=straight.test_data,
                    run_dir=tmp_path / "given", progress=False, callbacks=[stop_at_step_13])
    with pytest.raises(TrainingInterrupted) as stopped:
        given.fit()
    assert "slidepy train" not in str(stopped.value)
    assert f"Trainer(config, train=..., test=..., run_dir='{tmp_path / 'given'}'), then .resume()" in str(stopped.value)
    # ... unless the set handed in is the config's own training file (the CLI's automatic recipe
    # loads it before the trainer): then the command resumes it
    from slidepy import load_dataset, write_dataset

    write_dataset(straight.train_data, tmp_path / "train.txt")
    tiny_config["data"] = {"train": str(tmp_path / "train.txt")}
    own = Trainer(config_from_dict(tiny_config), train=load_dataset(tmp_path / "train.txt"),
                  run_dir=tmp_path / "own", progress=False, callbacks=[stop_at_step_13])
    with pytest.raises(TrainingInterrupted, match="resume with: slidepy train --config"):
        own.fit()


def test_a_loaded_finished_model_fit_on_other_sets_scores_them_in_its_own_run_dir(tiny_config, tmp_path):
    """Trainer.load(..., train=, test=, run_dir=).fit() of a model with nothing left to train
    scores the test set it was given (not the saved run's last record) and writes into run_dir."""
    from slidepy.synthetic import make_synthetic

    tiny_config["training"]["max_steps"] = 6
    first = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "orig", progress=False)
    first.fit()
    path = first.save(tmp_path / "model.npz")
    other_train, other_test = make_synthetic(100, 60, first.train_data.n_features, first.train_data.n_labels, seed=9)
    again = Trainer.load(path, train=other_train, test=other_test, run_dir=tmp_path / "again")
    result = again.fit()
    assert result["P@1"] == again.evaluate(other_test, subset=None)["P@1"]
    assert again.run_dir == tmp_path / "again" and (tmp_path / "again" / "metrics.jsonl").is_file()
    assert [json.loads(line)["event"] for line in open(tmp_path / "orig" / "metrics.jsonl")].count("start") == 1


def test_save_load_predict_roundtrip(tiny_config, tmp_path):
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.fit()
    path = trainer.save(tmp_path / "model.npz")
    loaded = Trainer.load(path)
    ids_a, scores_a = trainer.predict(trainer.test_data, k=5)
    ids_b, scores_b = loaded.predict(trainer.test_data, k=5)
    assert np.array_equal(ids_a, ids_b)
    assert np.allclose(scores_a, scores_b)
    assert loaded.evaluate(trainer.test_data)["P@1"] == trainer.evaluate()["P@1"]


def test_load_rejects_mismatched_checkpoint(tiny_config, tmp_path):
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    path = trainer.save(tmp_path / "model.npz")
    tiny_config["model"]["hidden"] = [16]
    other = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "other", progress=False)
    with pytest.raises(CheckpointError, match="layer0.weights"):
        other.restore(path)


def test_a_model_loaded_from_a_runs_earlier_checkpoint_does_not_train_on_over_that_run(tiny_config, tmp_path):
    """Trainer.load(step 10 of a run that went on to 20).fit() in that run's directory would write
    over its step-20 checkpoint and log steps 11-20 twice: refused; in a directory of its own it
    trains on."""
    from slidepy.errors import ConfigError

    tiny_config["training"]["max_steps"] = 20
    tiny_config["output"].update(checkpoint_every=10, keep_last=5)
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.fit()
    earlier = dict(trainer.run.checkpoints())[10]
    before = (trainer.run.metrics.read_bytes(), open(dict(trainer.run.checkpoints())[20], "rb").read())
    loaded = Trainer.load(earlier, load_data_from_config=True)
    assert loaded.run_dir == trainer.run_dir and loaded.step == 10
    with pytest.raises(ConfigError, match=r"holds a run that went on past step 10, where this model was saved \(to "
                                          r"step 20\)"):
        loaded.fit()
    assert (trainer.run.metrics.read_bytes(), open(dict(trainer.run.checkpoints())[20], "rb").read()) == before
    elsewhere = Trainer.load(earlier, load_data_from_config=True, run_dir=tmp_path / "on")
    assert elsewhere.fit()["step"] == 20


def test_a_failed_resume_lets_go_of_the_run_dir(tiny_config):
    """resume() with the wrong network raises; the right Trainer, in the same process, then resumes
    (the lock was held until the failed one was collected, and named this process as another run)."""
    from slidepy.errors import ConfigError

    tiny_config["training"]["max_steps"] = 5
    Trainer(config_from_dict(tiny_config), progress=False).fit()
    wrong = copy.deepcopy(tiny_config)
    wrong["model"]["hidden"] = [16]
    bad = Trainer(config_from_dict(wrong), progress=False)
    with pytest.raises(CheckpointError):
        bad.resume()
    tiny_config["training"]["max_steps"] = 8
    right = Trainer(config_from_dict(tiny_config), progress=False)
    assert right.resume() and right.fit()["step"] == 8
    waiting = Trainer(config_from_dict(tiny_config), progress=False)
    right.run.lock()  # held (as after a resume() not yet followed by fit())
    with pytest.raises(ConfigError, match="held by another Trainer in this process"):
        waiting.resume()
    right.run.unlock()


def test_a_resume_past_the_end_its_config_now_gives_says_so(tiny_config):
    """A run trained to step 12, resumed with a shorter length (an original --set left off the
    resume command): it would end at once without a word; the warning says why. Resumed to go on,
    no such word."""
    tiny_config["training"].update(max_steps=12, epochs=100)
    Trainer(config_from_dict(tiny_config), progress=False).fit()
    tiny_config["training"].update(max_steps=5, epochs=100)
    short = Trainer(config_from_dict(tiny_config), progress=False)
    with pytest.warns(UserWarning, match=r"resumed at step 12 \(epoch \d+\), past where this config ends the run "
                                         r"\(training.max_steps 12 -> 5 since it was trained\): it ends here"):
        assert short.resume()
    short.run.unlock()
    tiny_config["training"].update(max_steps=20)
    longer = Trainer(config_from_dict(tiny_config), progress=False)
    assert longer.resume() and not any("past where" in w for w in longer.warnings)
    assert longer.fit()["step"] == 20


def test_nan_loss_stops_with_step_and_layer(tiny_config):
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.engine.layers[1].weights[:] = np.nan
    with pytest.raises(NumericalError, match="step"):
        trainer.fit()


def test_time_budget_stops_training_and_final_eval_scores_the_whole_test_set(tiny_config, monkeypatch):
    tiny_config["training"].update({"epochs": 1000, "time_budget_s": 0.3})
    tiny_config["eval"].update({"every": 5, "subset": 100})
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    spent_before_step = []  # the budget seconds counted when each step began
    real_step = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda: spent_before_step.append(trainer.budget_seconds) or real_step())
    final = trainer.fit()
    # it stopped because of the budget, at the first step that spent it: every step began within
    # the budget, the last one ended past it, and the epochs had not run out
    assert max(spent_before_step) == spent_before_step[-1] < 0.3 <= trainer.budget_seconds
    assert len(spent_before_step) == trainer.step < trainer._total_steps and trainer.epoch < 1000
    evals = [r for r in trainer.history if r["event"] == "eval"]
    assert all(not r["complete"] for r in evals[:-1]) and final is evals[-1] and final["complete"]
    rss = [r["peak_rss_mb"] for r in evals]  # a peak: positive, never falling
    assert rss[0] > 10 and rss == sorted(rss)
    # the final record is the whole test set: recompute it with subset=None
    assert final["P@1"] == trainer.evaluate(subset=None)["P@1"]


def _fake_clock(monkeypatch, trainer, step_seconds, eval_seconds):
    """The trainer's clock made to advance by step_seconds over each training step and
    eval_seconds over each evaluation, and not otherwise; rebuilds (timed by the engine) count 0 s.
    The real steps and evaluations still run."""
    import slidepy.trainer

    clock = [0.0]
    monkeypatch.setattr(slidepy.trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def timed(function, seconds):
        def call(*args, **kwargs):
            clock[0] += seconds
            return function(*args, **kwargs)
        return call

    real_rebuild = trainer.engine.maybe_rebuild

    def rebuild(lr_share=1.0):
        real_rebuild(lr_share)
        return 0.0

    monkeypatch.setattr(trainer.engine, "train_step", timed(trainer.engine.train_step, step_seconds))
    monkeypatch.setattr(trainer.model, "eval_report", timed(trainer.model.eval_report, eval_seconds))
    monkeypatch.setattr(trainer.engine, "maybe_rebuild", rebuild)


def test_evaluations_along_the_run_keep_to_their_share_of_the_training_seconds(tiny_config, monkeypatch):
    """eval.max_share skips an evaluation along the run while the earlier ones have taken more
    than that share of the training seconds; at null every scheduled one runs; the final one
    runs either way, and one scheduled for the last step is the final one (no subset of the test
    set scored just before the whole of it). On a clock where a step takes 1 s and an evaluation
    1 s, at a share of 1/8 an evaluation runs at step 1, then at the first step with 8 s of
    training per evaluation before it: 8, 16, 24 and 32 of the 38 steps (2 epochs of 19)."""
    tiny_config["training"].update({"epochs": 2})
    tiny_config["eval"].update({"every": 1, "subset": 100, "max_share": None})
    every = Trainer(config_from_dict(tiny_config), progress=False)
    _fake_clock(monkeypatch, every, 1.0, 1.0)
    every.fit()
    along = [r for r in every.history if r["event"] == "eval" and not r["complete"]]
    assert [r["step"] for r in along] == list(range(1, 38)) and every.step == 38  # step 38's is the final one
    assert [r["step"] for r in every.history if r["event"] == "eval" and r["complete"]] == [38]
    tiny_config["eval"]["max_share"] = 0.125
    tiny_config["output"]["run_dir"] += "-shared"
    shared = Trainer(config_from_dict(tiny_config), progress=False)
    _fake_clock(monkeypatch, shared, 1.0, 1.0)
    final = shared.fit()
    along = [r for r in shared.history if r["event"] == "eval" and not r["complete"]]
    assert [r["step"] for r in along] == [1, 8, 16, 24, 32]
    assert [r["eval_seconds"] for r in along] == [1.0] * 5 and shared.eval_seconds_along == 5.0
    assert final["complete"] and final["step"] == shared.step == 38
    # by default (eval.max_share 0.1) all evaluations, the final one included, stay under a fifth
    # of the wall time: 5 s of 43 here, where every scheduled one would take 38 s of 76
    del tiny_config["eval"]["max_share"]
    tiny_config["output"]["run_dir"] += "-default"
    default = Trainer(config_from_dict(tiny_config), progress=False)
    _fake_clock(monkeypatch, default, 1.0, 1.0)
    default.fit()
    evals = [r for r in default.history if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [1, 10, 20, 30, 38] and evals[-1]["complete"]
    # the checkpoints keep those seconds, so a resumed run skips what the whole one would
    assert default.eval_seconds_along == 4.0
    assert Trainer.load(default.run.checkpoints()[-1][1]).eval_seconds_along == 4.0


def test_eval_along_due_compares_the_evaluations_so_far_with_the_share():
    assert eval_along_due(None, 100.0, 1.0)  # no limit
    assert eval_along_due(0.1, 0.0, 0.0)  # none so far: the first one always runs
    assert eval_along_due(0.1, 1.0, 10.0) and not eval_along_due(0.1, 1.01, 10.0)


def test_time_budget_counts_index_rebuilds(tiny_config, monkeypatch):
    """Rebuild seconds are training time for the budget (metrics.jsonl still logs them apart):
    with every step's rebuild taking a (pretended) second, a 2.5 s budget ends after 3 steps."""
    tiny_config["training"].update({"epochs": 1000, "time_budget_s": 2.5})
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    monkeypatch.setattr(trainer.engine, "maybe_rebuild", lambda lr_share=1.0: 1.0)
    trainer.fit()
    assert trainer.step == 3 and trainer.rebuild_seconds == 3.0
    assert trainer.train_seconds < 2.5 <= trainer.budget_seconds


def test_checkpoint_clock_counts_steps_and_training_seconds():
    clock = CheckpointClock(OutputConfig(checkpoint_every=10, checkpoint_every_s=None))
    assert [s for s in range(1, 31) if clock.due(s, 1e6)] == [10, 20, 30]  # steps alone
    clock = CheckpointClock(OutputConfig(checkpoint_every=0, checkpoint_every_s=60.0), seconds=100.0)
    assert not clock.due(1, 159.9) and clock.due(1, 160.0)
    clock.saved(170.0)  # written (or loaded) at 170 s: the next one 60 s on
    assert not clock.due(2, 229.0) and clock.due(2, 230.0)
    both = CheckpointClock(OutputConfig(checkpoint_every=5, checkpoint_every_s=60.0))
    assert both.due(5, 1.0) and both.due(3, 61.0) and not both.due(3, 59.0)


def test_checkpoints_every_so_many_training_seconds(tiny_config, monkeypatch):
    """output.checkpoint_every_s: with each step's rebuild taking a (pretended) second, a
    checkpoint every 2.5 s of training lands after steps 3 and 6, and the end saves step 7."""
    tiny_config["training"].update({"epochs": 1000, "max_steps": 7})
    tiny_config["output"].update({"checkpoint_every": 0, "checkpoint_every_s": 2.5, "keep_last": 10})
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    monkeypatch.setattr(trainer.engine, "maybe_rebuild", lambda lr_share=1.0: 1.0)
    trainer.fit()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [3, 6, 7]


def test_progress_bar_counts_the_time_budget_when_there_is_one(tiny_config, capsys):
    trainer = Trainer(config_from_dict(tiny_config), progress=True)
    trainer.fit()
    assert f"{trainer.step}/{trainer.step}" in capsys.readouterr().err  # steps of the planned steps
    tiny_config["training"].update({"epochs": 1000, "time_budget_s": 0.2})
    tiny_config["output"]["run_dir"] += "-timed"
    trainer = Trainer(config_from_dict(tiny_config), progress=True)
    trainer.fit()  # the planned steps of 1,000 epochs are only a cap: the bar counts the budget's seconds
    err = capsys.readouterr().err
    assert "s of the time budget" in err and "step=" in err and f"/{trainer._total_steps}" not in err
    assert trainer._bar_position() == 0.2 <= trainer.budget_seconds
    assert "0.2/0.2 s of the time budget" in err  # a budget under 10 s counts tenths


def test_linear_schedule_decays_the_learning_rate_to_zero(tiny_config):
    from slidepy.optimizer import scheduled_lr

    assert scheduled_lr(0.01, "constant", 0, 5, 0.5) == 0.01
    assert scheduled_lr(0.01, "constant", 10, 4, 0.0) == pytest.approx(0.005)  # warm-up: step 4 of 10
    assert scheduled_lr(0.01, "linear", 0, 50, 0.25) == pytest.approx(0.0075)
    assert scheduled_lr(0.01, "linear", 0, 99, 1.0) == 0.0
    tiny_config["training"].update({"lr_schedule": "linear", "warmup_steps": 3, "epochs": 2})
    seen = []
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.fit()
    steps = trainer.step
    trainer2 = Trainer(config_from_dict({**tiny_config, "output": {**tiny_config["output"],
                                                                   "run_dir": str(trainer.run_dir) + "-b"}}),
                       progress=False, callbacks=[lambda t, r: seen.append(t.engine.lr)])
    trainer2.fit()
    lr = tiny_config["training"]["lr"]
    assert max(seen) <= lr and seen[-1] < lr * 3 / steps  # ramped up, then down to ~0 at the end


def test_the_rebuild_clock_follows_the_learning_rate_schedule(tiny_config):
    """The trainer hands each step's lr share to the index: under a linear decay from the first
    step the output index's clock ends near half the steps, and it rebuilds less often than at
    a constant rate."""
    clocks, rebuilds = {}, {}
    tiny_config["model"]["output"]["selection"]["lsh"]["rebuild"]["pace"] = "lr"
    for schedule in ("constant", "linear"):
        cfg = {**tiny_config, "training": {**tiny_config["training"], "lr_schedule": schedule},
               "output": {**tiny_config["output"], "run_dir": tiny_config["output"]["run_dir"] + schedule}}
        trainer = Trainer(config_from_dict(cfg), progress=False)
        trainer.fit()
        index = trainer.engine.lsh[-1]
        clocks[schedule], rebuilds[schedule] = index.schedule.clock, index.rebuilds
        steps = trainer.step
    assert clocks["constant"] == steps
    assert clocks["linear"] == pytest.approx(steps / 2, abs=1.0)
    assert 1 < rebuilds["linear"] < rebuilds["constant"]


def test_training_threads_govern_the_blas_products_too():
    """training.threads (and deterministic) set numba's threads and BLAS's: the output layer's
    batch products (union.py) must not run on every core of a one-thread run."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    from slidepy.trainer import set_threads

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = numba.get_num_threads()
    with threadpool_limits():  # restores BLAS's threads afterwards
        try:
            assert set_threads(config_from_dict({"training": {"threads": 1}})) == 1
            assert numba.get_num_threads() == 1 and blas_threads() == {1}
            cfg = config_from_dict({"training": {"threads": 2, "deterministic": True}})
            assert set_threads(cfg) == 1 and blas_threads() == {1}
        finally:
            numba.set_num_threads(before)


def test_blas_threads_are_capped_for_steps_and_widened_for_scoring(monkeypatch):
    """The step's small products run on at most BLAS_MAX_THREADS; exact scoring's large ones on
    every numba thread, and the cap is back afterwards."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    from slidepy import threads

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 cores")
    before = numba.get_num_threads()
    monkeypatch.setattr(threads, "BLAS_MAX_THREADS", 1)
    with threadpool_limits():
        try:
            threads.use_threads(2)
            assert numba.get_num_threads() == 2 and blas_threads() == {1}
            with threads.blas_on_all_threads():
                assert blas_threads() == {2}
            assert blas_threads() == {1}
        finally:
            numba.set_num_threads(before)


def test_bce_on_a_sampled_layer_starts_at_the_label_rate_and_learns(tiny_config):
    """loss bce with a sampled (kmeans) output layer of 1,000 labels: the output biases start at
    the log-odds of the mean label rate, and the run learns. From zero biases the negatives'
    pull killed the hidden units and P@1 stayed near the most frequent label's (0.22 here, 0.40
    on DebianDeps); with the prior start it reaches ~0.6."""
    from slidepy.trainer import label_rate

    tiny_config["data"]["synthetic"].update(n_labels=1000, n_train=4000)
    tiny_config["model"]["loss"] = "bce"
    tiny_config["model"]["output"]["selection"].update(mode="lsh", budget=64, lsh={"family": "kmeans"})
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    rate = label_rate(trainer.train_data)
    assert 1e-3 < rate < 2e-3  # 1-2 labels of 1,000
    np.testing.assert_allclose(trainer.engine.layers[-1].bias, np.log(rate / (1 - rate)), rtol=1e-6)
    assert not trainer.engine.layers[0].bias.any()  # hidden biases stay zero
    assert trainer.fit()["P@1"] > 0.45


def _times(ds, c):
    """`ds` with every feature value multiplied by c."""
    from slidepy.data import Dataset
    return Dataset(ds.x_indptr, ds.x_indices, ds.x_values * np.float32(c), ds.y_indptr, ds.y_indices,
                   ds.n_features, ds.n_labels)


def test_auto_input_scale_brings_rows_into_the_band_and_is_written_down(tiny_config, tmp_path):
    """model.input_scale "auto" leaves rows of unit mean norm as they are (the synthetic data's), and
    takes 100x rows to the band's upper edge: that run is the one on 8x rows (INPUT_NORM_BAND
    (1, 8)), prediction for prediction, and its config.yaml holds the factor for a resume."""
    from slidepy.model import INPUT_NORM_BAND
    from slidepy.trainer import load_data
    assert INPUT_NORM_BAND == (1.0, 8.0)
    tiny_config["model"]["output"]["selection"] = {"mode": "all"}  # no LSH: exact equality of the two runs
    tiny_config["training"].update(deterministic=True, epochs=2)
    tiny_config["output"]["checkpoint_every"] = 0
    train, test = load_data(config_from_dict(tiny_config))
    assert abs(train.mean_row_norm - 1.0) < 1e-3
    assert Trainer(config_from_dict(tiny_config), train=train, test=test, run_dir=tmp_path / "as-is",
                   progress=False).config.model.input_scale == 1.0
    auto = Trainer(config_from_dict(tiny_config), train=_times(train, 100), test=_times(test, 100),
                   run_dir=tmp_path / "auto", progress=False)
    assert auto.config.model.input_scale == 0.08
    tiny_config["model"]["input_scale"] = 1
    edge = Trainer(config_from_dict(tiny_config), train=_times(train, 8), test=_times(test, 8),
                   run_dir=tmp_path / "edge", progress=False)
    auto_result, edge_result = auto.fit(), edge.fit()
    assert "input_scale: 0.08" in (tmp_path / "auto" / "config.yaml").read_text()
    ids_auto, _ = auto.predict(auto.test_data, k=3)
    ids_edge, _ = edge.predict(edge.test_data, k=3)
    assert (ids_auto[:, 0] == ids_edge[:, 0]).mean() > 0.98  # 1.0 when written
    assert auto_result["P@1"] > 0.4 and abs(auto_result["P@1"] - edge_result["P@1"]) < 0.01
    # and the 100x rows at scale 1 train another network
    plain = Trainer(config_from_dict(tiny_config), train=_times(train, 100), test=_times(test, 100),
                    run_dir=tmp_path / "plain", progress=False)
    plain.fit()
    ids_plain, _ = plain.predict(plain.test_data, k=3)
    assert (ids_plain[:, 0] == ids_edge[:, 0]).mean() < 0.95  # 0.73 when written


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_compile_notice_is_one_line_outside_a_terminal():
    for stream, live in ((io.StringIO(), True), (_Terminal(), False)):
        notice = CompileNotice(stream, live, interval=0.01)
        notice.start()
        time.sleep(0.05)
        notice.finish(3.4)
        assert stream.getvalue() == f"{COMPILING} 3 s\n"


def test_compile_notice_counts_up_on_a_terminal():
    stream = _Terminal()
    notice = CompileNotice(stream, live=True, interval=0.01)
    notice.start()
    time.sleep(0.2)
    notice.finish(26.4)
    text = stream.getvalue()
    assert text.startswith(COMPILING)
    assert text.count("\r") >= 3  # rewritten in place while it waited
    assert text.endswith(f"\r{COMPILING} 26 s\n")
    assert not notice._ticker.is_alive()


def test_compile_notice_stops_when_the_compile_fails():
    stream = _Terminal()
    notice = CompileNotice(stream, live=True, interval=0.01)
    notice.start()
    time.sleep(0.05)
    notice.finish(None)
    assert not notice._ticker.is_alive()
    assert stream.getvalue().endswith(f"\r{COMPILING}\n")
    quiet = io.StringIO()
    notice = CompileNotice(quiet, live=False)
    notice.start()
    notice.finish(None)
    assert quiet.getvalue() == f"{COMPILING}\n"


def test_compile_notice_says_nothing_when_nothing_compiled():
    stream = _Terminal()
    CompileNotice(stream, live=True).finish(0.2)
    assert stream.getvalue() == ""


def test_training_samples_without_labels_or_features_are_counted_in_a_warning(tiny_config):
    """They are kept (a blank XC line is a sample with neither), but a user should know: an
    unlabelled sample trains nothing, a featureless one sees only the biases."""
    from slidepy import make_synthetic
    from slidepy.data import Dataset

    train, test = make_synthetic(30, 10, 40, 12, nnz_per_sample=4, seed=0)
    x_ptr, y_ptr = train.x_indptr.copy(), train.y_indptr.copy()
    keep_x = np.ones(train.x_indices.size, bool)
    keep_y = np.ones(train.y_indices.size, bool)
    for i in (2, 5, 9):  # no labels
        keep_y[y_ptr[i]:y_ptr[i + 1]] = False
    keep_x[x_ptr[4]:x_ptr[5]] = False  # no features
    x_counts, y_counts = np.add.reduceat(keep_x, x_ptr[:-1]), np.add.reduceat(keep_y, y_ptr[:-1])
    holed = Dataset(np.concatenate([[0], np.cumsum(x_counts)]), train.x_indices[keep_x], train.x_values[keep_x],
                    np.concatenate([[0], np.cumsum(y_counts)]), train.y_indices[keep_y], 40, 12, "holed.txt")
    tiny_config["training"]["max_steps"] = 1
    trainer = Trainer(config_from_dict(tiny_config), train=holed, test=test, progress=False)
    with pytest.warns(UserWarning) as caught:
        trainer.fit()
    said = [str(w.message) for w in caught]
    assert "3 of 30 training samples in holed.txt have no labels (they train nothing)" in said
    assert "1 of 30 training samples in holed.txt have no features (the network sees only its biases for them)" in said
    # a test set's unlabelled samples count as 0 in every P@k: said; a test set of none is refused
    unlabelled = Dataset(test.x_indptr, test.x_indices, test.x_values, np.r_[0, np.cumsum(np.diff(test.y_indptr) * (
        np.arange(10) >= 4))], np.concatenate([test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]]
                                               for i in range(4, 10)]), 40, 12, "unlab.txt")
    trainer = Trainer(config_from_dict(tiny_config), train=train, test=unlabelled, progress=False,
                      run_dir=tiny_config["output"]["run_dir"] + "-unlabelled-test")
    with pytest.warns(UserWarning) as caught:
        trainer.fit()
    assert "4 of the 10 test samples in unlab.txt have no labels; they count as 0 in every P@k and nDCG@k" in [
        str(w.message) for w in caught]
    none = Dataset(test.x_indptr, test.x_indices, test.x_values, np.zeros(11, np.int64), np.zeros(0, np.int32), 40,
                   12, "none.txt")
    with pytest.raises(DataError, match=r"^none.txt: no sample has a label \(the test set\), so there is nothing"):
        Trainer(config_from_dict(tiny_config), train=train, test=none, progress=False)


def _small_run(tmp_path, name, **training):
    from slidepy import make_synthetic

    train, test = make_synthetic(320, 50, 100, 20, seed=1)
    cfg = {"model": {"hidden": [16], "output": {"selection": {"mode": "all"}}},
           "training": {"epochs": 2, "batch_size": 32, "threads": 1, "log_every": 1, **training},
           "output": {"run_dir": str(tmp_path / name), "checkpoint_every": 0}}
    return cfg, train, test


def test_a_fit_after_an_interrupted_one_starts_without_the_old_signal(tmp_path):
    import os
    import signal

    cfg, train, test = _small_run(tmp_path, "run")
    sent = []

    def interrupt_once(trainer, record):
        if record["event"] == "log" and not sent:
            sent.append(record["step"])
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(config_from_dict(cfg), train=train, test=test, progress=False, callbacks=[interrupt_once])
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT at step 1"):
        trainer.fit()
    trainer.fit()  # no signal this time: it runs to the end
    assert trainer.step == 20 and sent == [1]


def test_fit_runs_outside_the_main_thread(tmp_path):
    """joblib's threads or a web server's workers: Python sets no signal handler there, so the run
    goes without them instead of failing."""
    import threading

    cfg, train, test = _small_run(tmp_path, "run", epochs=1)
    done = {}

    def work():
        try:
            done["trainer"] = Trainer(config_from_dict(cfg), train=train, test=test, progress=False)
            done["result"] = done["trainer"].fit()
        except Exception as exc:  # reported below
            done["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert "error" not in done, done.get("error")
    assert done["trainer"].step == 10 and done["result"]["complete"]


def test_an_epoch_end_evaluation_is_logged_once_across_a_resume(tmp_path):
    """The checkpoint at an epoch's last step is written after that epoch's evaluation: a run
    killed between them resumes from the checkpoint before, and logs each evaluation once."""
    cfg, train, test = _small_run(tmp_path, "run")
    cfg["output"]["checkpoint_every"] = 10

    def killed_at_12(trainer, record):
        if record["event"] == "log" and record["step"] == 12:
            raise RuntimeError("simulated kill")

    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(config_from_dict(cfg), train=train, test=test, progress=False, callbacks=[killed_at_12]).fit()
    resumed = Trainer(config_from_dict(cfg), train=train, test=test, progress=False)
    assert resumed.resume() and resumed.step == 10
    resumed.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in records if r["event"] in ("eval", "resume")] == [
        ("eval", 10), ("resume", 10), ("eval", 20)]


def test_a_training_set_without_any_label_is_refused(tiny_config, tmp_path):
    """Nothing to learn, and the model of 0 labels it would save could never be loaded."""
    import dataclasses

    from slidepy import make_synthetic

    train, _ = make_synthetic(50, 10, 40, 12, nnz_per_sample=4, seed=0)
    bare = dataclasses.replace(train, y_indptr=np.zeros_like(train.y_indptr), y_indices=train.y_indices[:0])
    trainer = Trainer(config_from_dict(tiny_config), train=bare, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(DataError, match="no training sample has a label"):
        trainer.fit()
    assert not list((tmp_path / "run").glob("checkpoints/*.npz"))
    # from files: the training file is named, not the test file its labels would be measured against
    (tmp_path / "train.txt").write_text("2 6 0\n 0:1\n 1:1\n")
    (tmp_path / "test.txt").write_text("1 6 3\n2 0:1\n")
    files = {**tiny_config, "data": {"train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt")}}
    with pytest.raises(DataError, match=r"train.txt: no training sample has a label"):
        Trainer(config_from_dict(files), progress=False)


def test_the_first_index_build_is_logged_apart(tiny_config, tmp_path):
    """The engine builds its LSH index when it is made, before any step: the start record gives
    its seconds (the bench adds them to slidepy's training time, as the trees' timings hold
    their own index builds); like compiling, they are outside the time budget."""
    trainer = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "run", progress=False)
    assert trainer.engine.index_build_seconds > 0 and trainer.rebuild_seconds == 0
    trainer.fit()
    start = next(r for r in trainer.history if r["event"] == "start")
    assert start["index_build_seconds"] == round(trainer.engine.index_build_seconds, 4)
    tiny_config["model"]["output"]["selection"] = {"mode": "random", "budget": 40}
    plain = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / "plain", progress=False)
    assert plain.engine.index_build_seconds == 0


def test_ctrl_c_while_fit_compiles_waits_for_the_compiler_then_stops_before_any_step(tiny_config, monkeypatch):
    """From Python, fit() compiles the kernels itself: a Ctrl-C inside numba's compiler could leave
    a half-made function ("no compiled object yet"). It is held until the compile ends, then raised
    as a KeyboardInterrupt, before the first step; nothing is saved, and the handlers are restored."""
    import os
    import signal

    import slidepy.trainer as trainer_mod

    real, finished = trainer_mod.compile_with_notice, []

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now, and the compile goes on
        finished.append(real(*args, **kwargs))
        return finished[-1]

    monkeypatch.setattr(trainer_mod, "compile_with_notice", interrupted)
    before = signal.getsignal(signal.SIGINT)
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert len(finished) == 1 and trainer.step == 0 and not trainer.run.checkpoints()
    assert signal.getsignal(signal.SIGINT) is before


def test_the_bar_says_when_it_waits_for_an_evaluation(tiny_config, capsys):
    """A final evaluation over 10^5 labels stood a minute behind a bar at 100% that said nothing."""
    tiny_config["training"]["max_steps"] = 3
    trainer = Trainer(config_from_dict(tiny_config), progress=True)
    trainer.fit()
    n = trainer.test_data.n_samples
    assert f"scoring {n:,} test samples" in capsys.readouterr().err


def test_slow_work_is_said_and_quick_work_is_not():
    import io

    from slidepy.trainer import said_if_slow

    for live, after, work, said in ((True, 0.05, 0.3, True), (True, 5.0, 0.0, False), (False, 0.0, 0.2, False)):
        out = io.StringIO()
        with said_if_slow("building the index", live, after=after, stream=out):
            time.sleep(work)
        text = out.getvalue()
        assert (text.startswith("building the index... ") and text.endswith(" s\n")) if said else text == "", text
