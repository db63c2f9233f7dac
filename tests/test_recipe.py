"""The automatic recipe (recipe.py): rules over the data's shape, the CLI path without a config,
and a small end-to-end run that learns."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from slidepy import Trainer, make_synthetic, reranker
from slidepy.cli import main
from slidepy.configfile import config_from_dict, load_config
from slidepy.data import write_dataset
from slidepy.errors import ConfigError
from slidepy.rundir import checkpoint_path
from slidepy.clusters import FULL_ASSIGN_MACS, auto_clusters
from slidepy.recipe import (ASSIGN_MACS_PER_STEP, BANK_COST_RATIO, BLAS_ADVANTAGE, EVAL_SHARE, EVALS_PER_RUN,
                            EXACT_LABELS, EXACT_LR, HIDDEN, MAX_BANK_FLOATS, MAX_EPOCHS, MAX_EXACT_EPOCHS, MIN_VOTES,
                            NEIGHBOUR_BANK_FLOATS, REBUILD_INTERVAL, REBUILD_INTERVAL_LIMIT, REBUILD_MAX_INTERVAL,
                            REBUILD_SHARE, TARGET_STEPS, auto_config, describe, dropout_for, input_scale, learning_rate,
                            neighbours_for, output_budget, parse_duration, passes_in_budget, planned_passes,
                            rebuild_max_interval, rebuild_spread, votes_weight, RAMP_SHARE_LIMIT,
                            first_rebuild_interval, rebuild_cost_in_steps, rebuilds_in)


def test_parse_duration():
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("5m") == 300 and parse_duration("1.5h") == 5400
    assert parse_duration("5m30s") == 330 and parse_duration("1h 30m") == 5400
    for bad in ("", "5 minutes", "-3s", "5m30", "5s5s", "1.5.5"):
        with pytest.raises(ConfigError, match="is not a duration like 90s, 5m, 1.5h or 5m30s"):
            parse_duration(bad)
    for zero in ("0", "0s", "0m0s"):
        with pytest.raises(ConfigError, match=f"'{zero}' must be longer than 0 s"):
            parse_duration(zero)


def test_the_recipe_refuses_a_single_label_and_keeps_the_batch_within_the_set():
    from slidepy.errors import DataError

    one = make_synthetic(40, 5, 30, 2, nnz_per_sample=4, labels_per_sample=(1, 1), seed=0)[0]
    one = one.__class__(one.x_indptr, one.x_indices, one.x_values, one.y_indptr, np.zeros_like(one.y_indices), 30, 1)
    with pytest.raises(DataError, match=r"^one\.txt: 1 label: a classifier needs at least 2 to tell apart"):
        auto_config(one, "one.txt", None)
    # a config's softmax over it is refused too (P@1 read 1.0 for a loss of 0); bce trains a yes/no label
    from slidepy import Trainer, config_from_dict

    cfg = {"model": {"hidden": [8], "output": {"selection": {"mode": "all"}}}, "training": {"max_steps": 1},
           "output": {"run_dir": "unused"}}
    with pytest.raises(DataError, match=r"^<memory>: 1 label: a softmax over fewer than 2 labels learns nothing"):
        Trainer(config_from_dict(cfg), train=one, progress=False)
    cfg["model"]["loss"] = "bce"
    assert Trainer(config_from_dict(cfg), train=one, progress=False).model.engine.n_labels == 1
    few = make_synthetic(40, 5, 30, 6, nnz_per_sample=4, seed=0)[0]
    assert auto_config(few, "few.txt", None)["training"]["batch_size"] == 40
    assert auto_config(few, "few.txt", None)["eval"]["k"] == [1, 3, 5]
    two = make_synthetic(40, 5, 30, 2, nnz_per_sample=4, labels_per_sample=(1, 1), seed=0)[0]
    assert auto_config(two, "two.txt", None)["eval"]["k"] == [1]  # P@3 of 2 labels could never pass 2/3


def test_output_budget_grows_as_sqrt_of_labels():
    assert output_budget(22_875) == 640 and output_budget(50_000) == 896
    assert output_budget(5_000) == 320 and output_budget(670_091) == 3328
    assert output_budget(10**9) == 4096
    fractions = [output_budget(n) / n for n in (10_000, 100_000, 1_000_000)]
    assert fractions == sorted(fractions, reverse=True)  # the active share falls as N grows


def _fake(n_samples, n_labels):
    train, _ = make_synthetic(n_samples, 10, 50, n_labels, nnz_per_sample=5, labels_per_sample=(1, 2), seed=0)
    return train


def test_rules_follow_the_shape():
    small = auto_config(_fake(3000, 200), "tr.txt", "te.txt")
    assert small["model"]["output"]["selection"]["mode"] == "all"
    assert small["training"]["epochs"] == MAX_EXACT_EPOCHS == 5  # 24 steps an epoch: the cap of an exact softmax
    # a sampled output layer moves a row only in the steps that pick it: the same shape at more
    # labels than EXACT_LABELS takes the cap of MAX_EPOCHS passes
    sampled = auto_config(_fake(3000, EXACT_LABELS + 1), "tr.txt", "te.txt")
    assert sampled["model"]["output"]["selection"]["mode"] == "lsh" and sampled["training"]["epochs"] == MAX_EPOCHS == 20
    assert planned_passes(24, exact=True) == 5 and planned_passes(24, exact=False) == 20
    assert planned_passes(2000, exact=True) == planned_passes(2000, exact=False) == 3  # the steps' rule below both caps
    big = auto_config(_fake(64_000, EXACT_LABELS + 1), "tr.txt", None)
    sel = big["model"]["output"]["selection"]
    assert sel["mode"] == "lsh" and sel["lsh"]["family"] == "kmeans" and sel["budget"] == output_budget(EXACT_LABELS + 1)
    assert big["training"]["epochs"] == 10  # 500 steps an epoch, ~5,000 steps
    timed = auto_config(_fake(3000, 200), "tr.txt", "te.txt", time_budget_s=30.0)
    assert timed["training"]["time_budget_s"] == 30.0 and timed["training"]["epochs"] == 1000
    for cfg in (small, big, timed):
        load_config(cfg)  # every recipe is a valid config
        # checkpoints by training time, whatever the run's length or the network's size
        assert cfg["output"]["checkpoint_every"] == 0 and cfg["output"]["checkpoint_every_s"] == 600.0
    assert small["model"]["dropout"] == 0.5 and big["model"]["dropout"] == 0.5  # 5 and 10 passes
    one_pass = auto_config(_fake(700_000, EXACT_LABELS + 1), "tr.txt", None)  # 5,469 steps an epoch
    assert one_pass["training"]["epochs"] == 1 and one_pass["model"]["dropout"] == 0.0
    # the learning rate follows the passes: larger steps when each row is touched in few passes
    assert one_pass["training"]["lr"] == learning_rate(1) == 0.005
    assert big["training"]["lr"] == learning_rate(10) == 0.002
    # an exact softmax's few passes take the larger EXACT_LR: every row moves at every step
    assert small["training"]["lr"] == learning_rate(5, exact=True) == EXACT_LR == 0.006
    assert learning_rate(5) == learning_rate(6, exact=True) == 0.002  # a sampled layer; past the exact cap (a budget's)
    assert learning_rate(2, exact=True) == learning_rate(2) and learning_rate(1, exact=True) == learning_rate(1)
    # ... and so does the warm-up: 2.5% of the planned steps of a single pass, else none
    assert one_pass["training"]["warmup_steps"] == round(0.025 * 5_469)
    assert big["training"]["warmup_steps"] == small["training"]["warmup_steps"] == 0
    two_pass = auto_config(SimpleNamespace(n_samples=500_000, n_features=30_000, n_labels=50_000,
                                           y_indices=np.zeros(500_000), nnz=1_500_000, mean_row_norm=1.0),
                           "tr.txt", None)  # DebianNextWord's
    assert two_pass["training"]["epochs"] == 2 and two_pass["training"]["lr"] == learning_rate(2) == 0.004
    assert two_pass["training"]["warmup_steps"] == 0
    assert two_pass["model"]["output"]["selection"]["lsh"]["rebuild"]["spread_steps"] == rebuild_spread(50_000, 896)
    load_config(two_pass)
    # the neighbours' votes while their bank of training vectors is affordable, their share set by
    # the positives per label
    m_small = _fake(3000, 200).y_indices.shape[0] / 200
    assert small["model"]["neighbours"] == {"k": 25, "weight": votes_weight(m_small), "temperature": 0.05,
                                            "space": "auto"}
    assert two_pass["model"]["neighbours"]["weight"] == 0.0
    # the input scale: 1 for rows of mean norm within [1, 8] (the synthetic rows have norm 1), else
    # the factor to the nearer edge, written as a number so that --dry-run shows it
    assert small["model"]["input_scale"] == two_pass["model"]["input_scale"] == 1.0
    # ... whose lower edge a single pass raises to 3: layer 0 steps 3x further on unit-norm rows
    assert one_pass["model"]["input_scale"] == 3.0
    assert input_scale(SimpleNamespace(mean_row_norm=5.0), 1) == 1.0  # inside [3, 8]
    assert input_scale(SimpleNamespace(mean_row_norm=0.5), 1) == 6.0
    assert input_scale(SimpleNamespace(mean_row_norm=0.5), 2) == 2.0
    for norm, scale in ((40.0, 0.2), (0.25, 4.0), (7.9, 1.0), (3.0, 1.0)):
        shaped = SimpleNamespace(n_samples=3000, n_features=2000, n_labels=200, y_indices=np.zeros(3000), nnz=30_000,
                                 mean_row_norm=norm)
        assert auto_config(shaped, "tr.txt", None)["model"]["input_scale"] == scale


def test_neighbours_follow_the_bank_size_and_the_positives_per_label():
    largest = NEIGHBOUR_BANK_FLOATS // HIDDEN
    assert neighbours_for(largest, 10 * 1000, 1000) == {"k": 25, "weight": 0.7, "temperature": 0.05, "space": "auto"}
    # a larger bank stays whole while its product costs at most BANK_COST_RATIO times exact
    # scoring's and it fits MAX_BANK_FLOATS, at the share its positives a label call for
    whole = {"k": 25, "weight": 0.7, "temperature": 0.05, "space": "auto"}
    assert neighbours_for(150_000, 391_000, 100_000) == whole  # votes-bank/'s generated set: 3.9 a label
    assert neighbours_for(BANK_COST_RATIO * 100_000, 391_000, 100_000) == whole
    # 8 samples a label is too dear to keep whole, and a sample of it holds 1.25 positives a label
    assert neighbours_for(MAX_BANK_FLOATS // HIDDEN, 10 * largest, largest)["weight"] == 0.0
    # past either, a random part of the training set that fits NEIGHBOUR_BANK_FLOATS, at the least
    # share, while each label keeps MIN_BANK_POSITIVES positives in it on average
    dear = BANK_COST_RATIO * largest + 1  # samples for `largest` labels: more than twice exact scoring
    sampled = neighbours_for(dear, 10 * dear, largest)
    assert sampled == {"k": 25, "weight": MIN_VOTES, "temperature": 0.05, "space": "auto", "bank_samples": largest}
    thin = 5 * largest  # 10 positives a label over 5 x largest / 3 labels, 2 of them in the bank
    assert neighbours_for(thin, 10 * (thin // 3), thin // 3)["weight"] == 0.0
    assert "bank_samples" not in neighbours_for(thin, 10 * (thin // 3), thin // 3)
    assert neighbours_for(500_000, 500_000, 50_000)["weight"] == 0.0  # DebianNextWord: 1.3 a label
    # the edge: four times the bank at 10 positives a label leaves 2.5 a label in it: kept, at the
    # least share; a slot fewer (just under 2.5 a label in the bank) drops the votes
    assert neighbours_for(4 * largest, 10 * largest, largest) == {"k": 25, "weight": 0.3, "temperature": 0.05,
                                                                  "space": "auto", "bank_samples": largest}
    assert neighbours_for(4 * largest, 10 * largest - 1, largest)["weight"] == 0.0
    # and past MAX_BANK_FLOATS, however many labels share the cost
    huge = MAX_BANK_FLOATS // HIDDEN + 1
    assert neighbours_for(huge, 40 * huge, huge)["bank_samples"] == largest
    # rows fitted to few positives lean on the votes; well-fed rows on themselves
    shares = [votes_weight(m) for m in (1, 10, 16, 30, 73, 250, 6000)]
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == shares[1] == 0.7 and shares[-1] == shares[-3] == 0.3  # DebianDeps' m 10; Bibtex's 73
    assert 0.3 < votes_weight(16) < 0.7


def test_rebuild_cap_keeps_the_rebuilds_a_small_share_of_the_steps():
    # a DebianDeps-shaped layer (22,875 labels, 44 non-zeros a sample) rebuilds within 300 steps
    assert rebuild_max_interval(22_875, output_budget(22_875), 44.0) == REBUILD_MAX_INTERVAL == 300
    # DebianNextWord's (50,000 labels, 3 non-zeros): a rebuild is worth ~65 steps, so ~650
    assert 600 <= rebuild_max_interval(50_000, 896, 3.0) <= 700
    # the share holds: a rebuild's multiply-adds at BLAS_ADVANTAGE x a step's rate, over the cap's steps
    for n in (50_000, 100_000, 150_000):
        budget = output_budget(n)
        cap = rebuild_max_interval(n, budget, 3.0)
        rebuild_steps = n * auto_clusters(n, budget) * 513 / BLAS_ADVANTAGE / (128 * 512 * (3.0 + budget) * 3)
        assert rebuild_steps / cap <= REBUILD_SHARE < rebuild_steps / (cap - 1) or cap == REBUILD_INTERVAL_LIMIT
    assert rebuild_max_interval(670_091, output_budget(670_091), 76.0) == REBUILD_INTERVAL_LIMIT
    # more non-zeros make a step dearer, so a rebuild is worth fewer of them
    assert rebuild_max_interval(100_000, 1280, 100.0) < rebuild_max_interval(100_000, 1280, 3.0)
    nw = auto_config(SimpleNamespace(n_samples=500_000, n_features=30_000, n_labels=50_000,
                                     y_indices=np.zeros(500_000), nnz=1_500_000, mean_row_norm=1.0), "tr.txt", None)
    assert nw["model"]["output"]["selection"]["lsh"]["rebuild"]["max_interval"] == rebuild_max_interval(50_000, 896, 3.0)


def test_a_short_run_over_many_labels_starts_its_rebuilds_later():
    """The ramp's early rebuilds (50, 115, 200, ... steps) cost as much each as the later ones: in a
    90 s run of 825 steps over 10^5 labels they took half the budget. Where they would take more
    than RAMP_SHARE_LIMIT of a run's steps' time, the first interval grows until they keep to
    REBUILD_SHARE (at least one rebuild, halfway); the shipped sets' runs keep REBUILD_INTERVAL."""
    assert rebuilds_in(1000, 50, 300) == 7 and rebuilds_in(825, 50, 1273) == 6 and rebuilds_in(100, 50, 300) == 1 and rebuilds_in(49, 50, 300) == 0
    for n, nnz, steps in ((22_875, 44.0, 5_230), (22_875, 44.0, 1_600), (50_000, 3.0, 7_800), (100_000, 20.0, 7_000)):
        budget = output_budget(n)
        cost, cap = rebuild_cost_in_steps(n, budget, nnz), rebuild_max_interval(n, budget, nnz)
        assert rebuilds_in(steps, REBUILD_INTERVAL, cap) * cost / steps <= RAMP_SHARE_LIMIT
        assert first_rebuild_interval(steps, cost, cap) == REBUILD_INTERVAL
    budget = output_budget(100_000)
    cost, cap = rebuild_cost_in_steps(100_000, budget, 32.0), rebuild_max_interval(100_000, budget, 32.0)
    for steps in (825, 5_000):
        assert rebuilds_in(steps, REBUILD_INTERVAL, cap) * cost / steps > RAMP_SHARE_LIMIT
        first = first_rebuild_interval(steps, cost, cap)
        made = rebuilds_in(steps, first, cap)
        assert REBUILD_INTERVAL < first <= min(steps // 2, cap) and made >= 1
        assert made * cost / steps <= REBUILD_SHARE or first in (steps // 2, cap)
    # the recipe writes it into the config it plans
    shape = SimpleNamespace(n_samples=60_000, n_features=50_000, n_labels=100_000, y_indices=np.zeros(118_000),
                            nnz=60_000 * 32, mean_row_norm=1.0)
    rebuild = auto_config(shape, "tr.txt", None)["model"]["output"]["selection"]["lsh"]["rebuild"]
    planned = 11 * 469  # TARGET_STEPS in whole epochs of ceil(60,000 / 128) steps
    assert rebuild["initial_interval"] == first_rebuild_interval(planned, cost, cap) > REBUILD_INTERVAL
    assert rebuild["initial_interval"] <= rebuild["max_interval"]  # as the config requires
    for budgeted in (dict(time_budget_s=90.0), dict(time_budget_s=90.0, samples_per_second=1_300.0)):
        config_from_dict(auto_config(shape, "tr.txt", None, **budgeted))  # valid, before and after the trial


def test_rebuild_spread_keeps_each_steps_share_of_a_rebuild_small():
    """Each step's slice of a cluster assignment stays within ASSIGN_MACS_PER_STEP multiply-adds,
    over at most the first rebuild interval; nothing is spread where one step suffices, or where
    rebuilds never assign in full."""
    assert rebuild_spread(5_000, output_budget(5_000)) == 0
    assert rebuild_spread(50_000, output_budget(50_000)) == 6 and rebuild_spread(100_000, output_budget(100_000)) == 16
    for n in (22_875, 50_000, 100_000):
        budget, steps = output_budget(n), rebuild_spread(n, output_budget(n))
        macs = n * auto_clusters(n, budget) * (HIDDEN + 1)
        assert macs <= FULL_ASSIGN_MACS and 2 <= steps <= REBUILD_INTERVAL
        assert macs / steps <= ASSIGN_MACS_PER_STEP < macs / (steps - 1)
    assert rebuild_spread(670_091, output_budget(670_091)) == 0  # above FULL_ASSIGN_MACS


def test_dropout_rises_with_the_passes():
    assert dropout_for(1) == 0.0 and dropout_for(3) == 0.25 and dropout_for(5) == 0.5 and dropout_for(40) == 0.5
    assert all(dropout_for(e) <= dropout_for(e + 1) for e in range(1, 30))


def _shaped(n_samples, n_labels=50_000, nnz_per_sample=3, norm=1.0):
    return SimpleNamespace(n_samples=n_samples, n_features=30_000, n_labels=n_labels, y_indices=np.zeros(n_samples),
                           nnz=nnz_per_sample * n_samples, mean_row_norm=norm)


def test_a_time_budget_sets_the_passes_it_allows_at_the_trials_rate():
    """With a trial's rate the passes are the budget's, less the rebuilds' share, and every rule
    that follows the passes (learning rate, warm-up, dropout, input scale) follows those."""
    # 60 s x 5,000 samples/s = 300,000 samples, 90% of them (the rebuilds' 10% off) over 500,000
    assert passes_in_budget(60.0, 5_000.0, 500_000) == pytest.approx(0.54)
    # DebianNextWord's shape under a minute: under one pass, so the one-pass settings, where the
    # steps' plan (two passes) would choose those for two
    short = auto_config(_shaped(500_000), "tr.txt", None, time_budget_s=60.0, samples_per_second=5_000.0)
    planned = auto_config(_shaped(500_000), "tr.txt", None, time_budget_s=60.0)
    passes = passes_in_budget(60.0, 5_000.0, 500_000)
    assert passes < 1 and short["training"]["lr"] == learning_rate(passes) == 0.005
    assert short["training"]["warmup_steps"] == round(0.025 * round(passes * 3907)) > 0
    assert short["model"]["dropout"] == 0.0 and short["model"]["input_scale"] == 3.0
    assert planned["training"]["lr"] == learning_rate(2) and planned["model"]["dropout"] == dropout_for(2)
    assert planned["training"]["warmup_steps"] == 0 and planned["model"]["input_scale"] == 1.0
    # DebianDeps' shape: under 30 s about 5 passes, less dropout than the 15 of the steps' plan;
    # under 10 s under 2 passes, the larger rate; under 10 minutes, the full dropout
    deps = _shaped(44_606, 22_875, 44)
    few = auto_config(deps, "tr.txt", None, time_budget_s=30.0, samples_per_second=8_000.0)
    fewer = auto_config(deps, "tr.txt", None, time_budget_s=10.0, samples_per_second=8_000.0)
    many = auto_config(deps, "tr.txt", None, time_budget_s=600.0, samples_per_second=8_000.0)
    assert 4 < passes_in_budget(30.0, 8_000.0, 44_606) < 5 and 1 < passes_in_budget(10.0, 8_000.0, 44_606) < 2
    assert fewer["training"]["lr"] == learning_rate(1.6) == 0.004 and few["training"]["lr"] == many["training"]["lr"] == 0.002
    assert few["model"]["dropout"] == dropout_for(passes_in_budget(30.0, 8_000.0, 44_606)) < many["model"]["dropout"] == 0.5
    # the evaluations spread over the steps the budget allows, not over the steps' plan, and
    # those that would take more than a tenth of the training seconds are skipped
    steps = round(passes_in_budget(30.0, 8_000.0, 44_606) * 349)
    assert few["eval"]["every"] == steps // EVALS_PER_RUN and planned["eval"]["every"] == TARGET_STEPS // EVALS_PER_RUN
    assert few["eval"]["max_share"] == planned["eval"]["max_share"] == EVAL_SHARE == 0.1
    for cfg in (short, few, many):
        assert cfg["training"]["time_budget_s"] is not None and cfg["training"]["epochs"] == 1000
        load_config(cfg)


def test_train_without_a_config_learns_and_writes_the_resolved_config(tmp_path):
    train, test = make_synthetic(1500, 300, 300, 120, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    write_dataset(train, tmp_path / "train.txt")
    write_dataset(test, tmp_path / "test.txt")
    out = tmp_path / "run"
    # The run is capped at 96 steps (8 epochs), which any machine takes in far less than the 30 s
    # budget (here 0.3 s), so what it learns does not depend on the machine's speed: the trial
    # asks for >= 5 passes (the recipe's settings from there on are one) down to ~280 samples/s.
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--test",
                                       str(tmp_path / "test.txt"), "--out", str(out), "--no-progress",
                                       "--time-budget", "30s", "--threads", "1", "--set", "training.max_steps=96"])
    assert result.exit_code == 0, result.output
    cfg = load_config(out / "config.yaml")
    assert cfg.training.time_budget_s == 30.0 and cfg.data.train == str(tmp_path / "train.txt")
    assert cfg.training.max_steps == 96
    final = [json.loads(line) for line in open(out / "metrics.jsonl") if '"eval"' in line][-1]
    assert final["complete"] and final["step"] == 96, final
    # Always predicting the most frequent training label scores 0.273 here. The final P@1 blends in
    # the neighbours' votes, which score 0.95 from an untrained network's hidden space on this set,
    # so whether the network learnt is read from the network alone (a loaded checkpoint has no
    # votes): measured 0.78-0.80 over training seeds 0-2 (0.47-0.55 after 36 steps).
    popular = np.bincount(train.y_indices, minlength=train.n_labels).argmax()
    popularity = np.mean([popular in test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]]
                          for i in range(test.n_samples)])
    alone = Trainer.load(checkpoint_path(out, 96)).evaluate(test, subset=None)
    assert alone["P@1"] > max(0.6, popularity + 0.3), (alone, popularity)
    assert final["P@1"] > 0.6, final
    # The console says what the recipe chose from the data's shape, and where its config is
    assert ("automatic recipe for 1,500 samples x 300 features, 120 labels" in result.output
            and "every label scored (exact softmax)" in result.output and "until 30 s of training" in result.output
            and f"the config: {out / 'config.yaml'}" in result.output), result.output
    # ... after a trial of a fraction of the budget, whose rate set the passes it plans for
    assert "s trial trained" in result.output and "the budget allows about" in result.output
    # ... and, at the end, the space its votes were taken in, with the figures that chose it
    loo = final["votes_loo_p1"]
    assert (f"votes in the {final['votes_space']} space (held-out P@1 of the votes alone: hidden "
            f"{loo['hidden']:.3f}, input {loo['input']:.3f})") in result.output, result.output
    assert "(nearest in the hidden or the input space, whichever votes better)" in result.output


def test_a_time_budget_without_a_config_plans_by_the_trials_rate(tmp_path, monkeypatch):
    import slidepy.calibrate as calibrate

    train, test = make_synthetic(1500, 300, 300, 120, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    write_dataset(train, tmp_path / "train.txt")
    write_dataset(test, tmp_path / "test.txt")
    asked = []
    monkeypatch.setattr(calibrate, "trial_rate", lambda cfg, data, seconds, progress: asked.append((cfg, seconds)) or 300.0)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--test",
                                       str(tmp_path / "test.txt"), "--out", str(out), "--no-progress",
                                       "--time-budget", "2s", "--threads", "1", "--set", "training.seed=7"])
    assert result.exit_code == 0, result.output
    # the trial ran the config as the run would (overrides applied) for its share of the budget
    (trial_cfg, seconds), = asked
    assert trial_cfg.training.threads == 1 and trial_cfg.training.seed == 7 and seconds == pytest.approx(0.1)
    passes = passes_in_budget(2.0, 300.0, 1500)  # 0.36: one pass's settings, not the 5 passes' of the steps' plan
    assert "the budget allows about 0.4 passes" in result.output
    cfg = load_config(out / "config.yaml")
    assert cfg.training.lr == learning_rate(passes) == 0.005 and cfg.model.dropout == 0.0
    assert cfg.training.warmup_steps == round(0.025 * round(passes * 12)) and cfg.training.seed == 7
    # --resume goes on with the settings the run began with, whatever a new trial would say
    monkeypatch.setattr(calibrate, "trial_rate", lambda *args, **kwargs: asked.append(args) or 1e9)
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--test",
                                       str(tmp_path / "test.txt"), "--out", str(out), "--no-progress",
                                       "--time-budget", "2s", "--threads", "1", "--set", "training.seed=7", "--resume"])
    assert result.exit_code == 0, result.output
    assert len(asked) == 1 and "resumed from step" in result.output
    assert load_config(out / "config.yaml").training.lr == 0.005
    # ... and so without --time-budget: not the settings the recipe would choose for no budget
    before = (out / "config.yaml").read_text()
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--test",
                                       str(tmp_path / "test.txt"), "--out", str(out), "--no-progress",
                                       "--threads", "1", "--set", "training.seed=7", "--resume"])
    assert result.exit_code == 0, result.output
    assert len(asked) == 1 and "resumed from step" in result.output
    assert (out / "config.yaml").read_text() == before


def test_a_recipe_run_reads_its_training_file_once(tmp_path, monkeypatch):
    """The set the recipe read to plan is the one the run trains on (a second parsed copy would
    double the dataset's memory, which the estimate counts once)."""
    import slidepy.data as data_mod
    import slidepy.trainer as trainer_mod

    train, test = make_synthetic(300, 60, 300, 40, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    write_dataset(train, tmp_path / "train.txt")
    write_dataset(test, tmp_path / "test.txt")
    read = []
    real = data_mod.load_dataset

    def counted(path, *args, **kwargs):
        read.append(str(path))
        return real(path, *args, **kwargs)

    for module in (data_mod, trainer_mod):
        monkeypatch.setattr(module, "load_dataset", counted)
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--test",
                                       str(tmp_path / "test.txt"), "--out", str(tmp_path / "run"), "--no-progress",
                                       "--threads", "1", "--set", "training.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert read == [str(tmp_path / "train.txt"), str(tmp_path / "test.txt")]


def test_the_recipe_on_an_empty_or_headerless_training_file(tmp_path):
    """An empty set is named as such (not as the batch size it would give); a LIBSVM file, whose
    dimensions no header gives, still gets the memory estimate of its loaded shape."""
    (tmp_path / "empty.txt").write_text("0 50 10\n")
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "empty.txt"), "--no-progress"])
    assert result.exit_code == 2 and "empty.txt: no samples" in result.output, result.output
    train, _ = make_synthetic(300, 10, 300, 40, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    write_dataset(train, tmp_path / "train.svm", format="libsvm")
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.svm"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "parameters + gradients + optimizer" in result.output, result.output


def test_describe_names_the_shape_and_the_choices_as_resolved():
    train, _ = make_synthetic(640, 10, 300, 5000, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    cfg = config_from_dict(auto_config(train, "train.txt", None))
    line = describe(cfg, train)
    budget = output_budget(5000)
    assert line.startswith(f"automatic recipe for 640 samples x 300 features, 5,000 labels ({train.nnz / 640:.1f} "
                           f"non-zeros and {train.y_indices.shape[0] / 640:.2f} labels a sample): ")
    assert f"{HIDDEN} hidden units at dropout {cfg.model.dropout:g}" in line
    assert f"{budget:,} of the 5,000 labels a sample picked by lsh" in line and f"{cfg.training.epochs} epochs" in line
    assert f"Adam lr {cfg.training.lr:g} (linear)" in line
    assert f"neighbours' votes at {cfg.model.neighbours.weight:g} (nearest in the hidden or the input space" in line
    # 640 samples spare no slice for the leaves' share: the line says which share they take
    assert f"re-ranked by per-label linear leaves at {reranker.WEIGHT:g} (too few samples to hold a slice out" in line
    big, _ = make_synthetic(12_000, 10, 300, 5000, nnz_per_sample=12, labels_per_sample=(1, 2), seed=5)
    assert "(their share, depth and C chosen on a held-out slice)" in describe(config_from_dict(auto_config(big, "t", None)),
                                                                              big)
    # overrides show, as the run will train: a time budget, another budget, the votes off
    cfg = load_config(auto_config(train, "train.txt", None, time_budget_s=90.0),
                      ["model.output.selection.budget=320", "model.neighbours.weight=0", "training.optimizer=sgd"])
    line = describe(cfg, train)
    assert "320 of the 5,000 labels a sample" in line and "until 90 s of training" in line and "no neighbours' votes" in line
    assert f"SGD lr {cfg.training.lr:g}" in line


def test_train_needs_a_config_or_data():
    result = CliRunner().invoke(main, ["train", "--no-progress"])
    assert result.exit_code == 2 and "--train FILE" in result.output


def test_the_recipe_says_what_it_chose_on_the_ray_path_too(tmp_path, monkeypatch):
    """`--workers N` hands the config to the Ray driver, which loads the data itself: the recipe's
    line is printed before that, from the training set the recipe read."""
    import slidepy.cli as cli

    train, _ = make_synthetic(600, 10, 200, 80, nnz_per_sample=8, labels_per_sample=(1, 2), seed=3)
    write_dataset(train, tmp_path / "train.txt")
    handed = []
    monkeypatch.setattr(cli, "_train_distributed", lambda cfg, *args: handed.append(cfg))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--train", str(tmp_path / "train.txt"), "--out", str(out),
                                       "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(handed) == 1 and handed[0].distributed.workers == 2
    assert ("automatic recipe for 600 samples x 200 features, 80 labels" in result.output
            and f"the config: {out / 'config.yaml'}" in result.output), result.output


def test_the_hidden_layer_narrows_until_the_run_fits_the_memory_available(monkeypatch):
    """Halved from 512 while the estimate passes 75% of the memory available, not below 64; with
    no figure for the machine (no /proc/meminfo) the width stays."""
    import slidepy.memory as memory
    from slidepy.configfile import config_from_dict as build

    train = make_synthetic(300, 10, 5000, 800, nnz_per_sample=8, seed=0)[0]
    wide = auto_config(train, "train.txt", None)
    assert wide["model"]["hidden"] == [512]

    def needs(width):
        cfg = dict(wide, model={**wide["model"], "hidden": [width]})
        return memory.estimate_for_config(build(cfg), train=train).total

    assert needs(128) < needs(256) < needs(512)
    fits_128 = int(needs(128) / 0.75) + 1
    monkeypatch.setattr(memory, "available_memory", lambda: fits_128)
    narrowed = auto_config(train, "train.txt", None)
    assert narrowed["model"]["hidden"] == [128]
    assert "128 hidden units (narrowed to fit the memory available)" in describe(build(narrowed), train, narrowed)
    chosen = build(dict(narrowed, model={**narrowed["model"], "hidden": [256]}))  # --set model.hidden=[256]
    assert "256 hidden units at dropout" in describe(chosen, train, narrowed)
    monkeypatch.setattr(memory, "available_memory", lambda: 1)
    assert auto_config(train, "train.txt", None)["model"]["hidden"] == [64]
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    assert auto_config(train, "train.txt", None)["model"]["hidden"] == [512]
