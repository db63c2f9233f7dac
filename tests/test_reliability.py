"""Bad input, corrupt checkpoints, numerical faults and thread stress: a user's mistake or a broken
file is one clear line (exit 2, no traceback) and never costs a run; NaN never reaches a checkpoint.

Most tests drive the real command line in-process (click's CliRunner) on tiny files.
"""

import copy
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY
from slidepy import Dataset, Trainer, config_from_dict
from slidepy.checkpoint import load_checkpoint, save_checkpoint
from slidepy.cli import main
from slidepy.configfile import validate_paths
from slidepy.errors import ConfigError, DataError, NumericalError
from slidepy.plot import read_metrics
from slidepy.rundir import checkpoint_path, list_checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small XC training set: 3 samples, 5 features, 4 labels.
GOOD_TRAIN = "3 5 4\n0,1 0:1.0 2:0.5\n2 1:1 4:2\n3 3:1\n"
GOOD_TEST = "2 5 4\n0 0:1\n1 2:1\n"


def _file_config(tmp_path, train, test=None, **training):
    cfg = {"data": {"train": str(train), "test": None if test is None else str(test), "cache": False},
           "model": {"hidden": [8]},
           "training": {"epochs": 1, "batch_size": 2, **training},
           "eval": {"recall_samples": 0},
           "output": {"run_dir": str(tmp_path / "run")}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(config_path, *args):
    return CliRunner().invoke(main, ["train", "--config", str(config_path), "--no-progress", *args])


def _train_good(tmp_path, *args, **training) -> tuple:
    """Train GOOD_TRAIN under `training`'s settings: (the CLI result, which must succeed, and the
    run's start record)."""
    train = tmp_path / "train.txt"
    train.write_text(GOOD_TRAIN)
    result = _train(_file_config(tmp_path, train, **training), *args)
    assert result.exit_code == 0, result.output
    return result, _start_record(tmp_path)


def _start_record(tmp_path) -> dict:
    """The first record of the run's metrics.jsonl (the start record)."""
    return json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])


def _assert_one_line_error(result, *fragments, code=2):
    """Exit `code`, no traceback, the error on a single `error: ...` line holding every fragment."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# --------------------------------------------------------------------------- config and paths


def test_config_from_dict_does_not_touch_the_filesystem(tmp_path):
    cfg = config_from_dict({"data": {"train": "/no/such/train.txt", "test": "/no/such/test.txt"}})
    assert cfg.data.train == "/no/such/train.txt"
    with pytest.raises(ConfigError, match=r"^data.train: /no/such/train.txt does not exist$"):
        validate_paths(cfg)


@pytest.mark.parametrize("case", ["missing_train", "missing_test", "train_is_dir", "run_dir_under_file",
                                  "run_dir_is_file", "nul_in_path"])
def test_paths_checked_before_any_work(tmp_path, case):
    train = tmp_path / "train.txt"
    train.write_text(GOOD_TRAIN)
    (tmp_path / "afile").write_text("x")
    raw = {"data": {"train": str(train)}, "output": {"run_dir": str(tmp_path / "run")}}
    expect = {
        "missing_train": ("data.train", str(tmp_path / "nope.txt"), "does not exist"),
        "missing_test": ("data.test", str(tmp_path / "nope.txt"), "does not exist"),
        "train_is_dir": ("data.train", str(tmp_path), "is a directory"),
        "run_dir_under_file": ("output.run_dir", str(tmp_path / "afile" / "run"), "is not a directory"),
        "run_dir_is_file": ("output.run_dir", str(tmp_path / "afile"), "is not a directory"),
        "nul_in_path": ("data.train", "bad\0name", "does not exist"),
    }[case]
    key, path, reason = expect
    section, name = key.split(".")
    raw[section][name] = path
    with pytest.raises(ConfigError) as info:
        validate_paths(config_from_dict(raw))
    assert str(info.value).startswith(f"{key}: {path} ") and reason in str(info.value)
    if case != "nul_in_path":  # YAML cannot carry a NUL byte
        config = tmp_path / "cfg.yaml"
        config.write_text(yaml.safe_dump(raw))
        _assert_one_line_error(_train(config), key, path, reason)
        assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_train_file_and_unwritable_run_dir(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text(GOOD_TRAIN)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(train, 0)
    try:
        with pytest.raises(ConfigError, match="data.train: .* is not readable"):
            validate_paths(config_from_dict({"data": {"train": str(train)}}))
    finally:
        os.chmod(train, 0o644)
    os.chmod(locked, 0o500)
    try:
        with pytest.raises(ConfigError, match="output.run_dir: .* cannot be created: .* is not writable"):
            validate_paths(config_from_dict({"output": {"run_dir": str(locked / "run")}}))
    finally:
        os.chmod(locked, 0o700)


def test_memory_refused_with_estimate_without_allocating(tmp_path, monkeypatch):
    """50M labels x 4096 hidden is ~3 TB of parameters: refused before any Trainer (and so any
    array) exists: the whole command allocates well under 16 MiB along the way (traced: NumPy
    reports its arrays' memory to tracemalloc)."""
    import tracemalloc

    import slidepy.memory
    import slidepy.trainer

    monkeypatch.setattr(slidepy.memory, "available_memory", lambda: 64 * 2**30)

    def no_trainer(*args, **kwargs):
        raise AssertionError("a Trainer was built for a config that cannot fit")

    monkeypatch.setattr(slidepy.trainer.Trainer, "__init__", no_trainer)
    cfg = {"data": {"synthetic": {"n_labels": 50_000_000, "n_features": 100_000}},
           "model": {"hidden": [4096], "output": {"selection": {"mode": "lsh", "budget": 4096,
                                                                 "lsh": {"k": 8, "l": 64, "range_pow": 18}}}},
           "output": {"run_dir": str(tmp_path / "run")}}
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    tracemalloc.start()
    try:
        result = _train(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB allocated while refusing"  # measured: 0.06 MiB
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "needs more memory than the machine has available" in result.output
    assert "memory estimate:" in result.output and "parameters + gradients + optimizer" in result.output
    assert "available on this machine" in result.output and "65,536.0 MiB" in result.output
    assert not (tmp_path / "run").exists()


def test_an_absurd_adam_rate_warns_and_a_usual_one_does_not(tmp_path):
    result, start = _train_good(tmp_path, lr=1e9)
    assert "warning: training.lr 1e+09 with Adam moves each weight a step touches by about 1e+09" in result.output
    assert any("training.lr 1e+09" in w for w in start["warnings"])
    result, start = _train_good(tmp_path, "--overwrite", lr=0.002)
    assert "training.lr" not in result.output and "warnings" not in start
    # SGD's step is the rate times the gradient: a large rate is not absurd there
    result, _ = _train_good(tmp_path, "--overwrite", lr=5.0, optimizer="sgd")
    assert "training.lr" not in result.output


def test_batch_larger_than_training_set_warns_and_uses_whole_set(tmp_path):
    result, start = _train_good(tmp_path, batch_size=64)
    assert "warning: training.batch_size 64 is larger than the training set (3 samples" in result.output
    assert start["event"] == "start" and "batch_size 64" in start["warnings"][0]
    assert "step 1 " in result.output  # one step per epoch: the whole set


# --------------------------------------------------------------------------------- data files

# name -> (train text, test text or None, fragments of the one error line; {train}/{test} are paths)
DATA_CASES = {
    "truncated": ("5 5 4\n0 0:1\n1 1:1\n", None,
                  ["{train}:4: file ends after 2 data lines but the header says 5 samples (truncated file?)"]),
    "more_lines_than_header": ("1 5 4\n0 0:1\n1 1:1\n", None,
                               ["{train}:3: header says 1 samples but the file has 2 data lines: 1 1:1"]),
    "malformed_header": ("3 5\n0 0:1\n", None,
                         ["{train}:1: malformed header (expected 'n_samples n_features n_labels'): 3 5"]),
    "feature_id_beyond_header": ("2 5 4\n0 0:1\n1 7:1\n", None,
                                 ["{train}:3: feature id in '7:1' is out of range: header n_features is 5"]),
    "label_id_beyond_header": ("2 5 4\n0 0:1\n9 1:1\n", None,
                               ["{train}:3: label id 9 is out of range: header n_labels is 4"]),
    "negative_feature_id": ("2 5 4\n0 -1:1\n1 1:1\n", None,
                            ["{train}:2: feature id in '-1:1' is below the index base 0"]),
    "non_numeric_value": ("2 5 4\n0 0:abc\n1 1:1\n", None,
                          ["{train}:2: malformed feature token '0:abc' (expected id:value)"]),
    "non_numeric_label": ("2 5 4\nx 0:1\n1 1:1\n", None, ["{train}:2: malformed label list 'x'"]),
    "nan_value": ("2 5 4\n0 0:nan\n1 1:1\n", None, ["{train}:2: non-finite feature value in '0:nan'"]),
    "inf_value": ("2 5 4\n0 0:1\n1 1:inf\n", None, ["{train}:3: non-finite feature value in '1:inf'"]),
    "float32_overflow": ("2 5 4\n0 0:1e39\n1 1:1\n", None, ["{train}:2: non-finite feature value in '0:1e39'"]),
    "empty_file": ("", None, ["{train}:1: empty file"]),
    "blank_lines_only": ("\n\n\n", None, ["{train}:1: empty file"]),
    "header_only": ("0 5 4\n", None, ["{train}: no samples (data.train is empty)"]),
    "truncated_gzip": (gzip.compress(GOOD_TRAIN.encode())[:25], None,
                       ["{train}: corrupt or truncated gzip data"]),
    "test_feature_count_differs": (GOOD_TRAIN, "2 6 4\n0 0:1\n1 5:1\n",
                                   ["{test}:1: header has n_features=6, more than the 5 requested",
                                    "data.test must fit the model built from data.train: 5 features, 4 labels"]),
    "test_label_count_differs": (GOOD_TRAIN, "2 5 7\n0 0:1\n1 4:1\n",
                                 ["{test}:1: header has n_labels=7, more than the 4 requested"]),
    "libsvm_test_feature_beyond_model": (GOOD_TRAIN, "0 1:1\n1 6:1\n",
                                         ["{test}:2: feature id in '6:1' is out of range: given n_features is 5",
                                          "data.test must fit the model"]),
    "libsvm_test_label_beyond_a_libsvm_training_file": ("0 1:1 2:1\n1 3:1\n", "2 2:1\n",
                                                       ["{test}:1: label id 2 is out of range",
                                                        "the training file has no XC header", "give both files"]),
    "test_empty": (GOOD_TRAIN, "0 5 4\n", ["{test}: no samples (data.test is empty)"]),
    "test_nan": (GOOD_TRAIN, "2 5 4\n0 0:1\n1 2:NaN\n", ["{test}:3: non-finite feature value in '2:NaN'"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_is_one_line_with_file_and_line(tmp_path, case):
    train_text, test_text, fragments = DATA_CASES[case]
    train = tmp_path / ("train.txt.gz" if case == "truncated_gzip" else "train.txt")
    if isinstance(train_text, bytes):
        train.write_bytes(train_text)
    else:
        train.write_text(train_text)
    test = None
    if test_text is not None:
        test = tmp_path / "test.txt"
        test.write_text(test_text)
    result = _train(_file_config(tmp_path, train, test))
    _assert_one_line_error(result, *[f.format(train=train, test=test) for f in fragments])
    assert not list((tmp_path / "run").glob("checkpoints/*"))


def test_skip_bad_lines_reports_count_and_first_lines(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("5 5 4\n0 0:1\n1 1:x\n2 9:1\n3 3:1 4:nan\n1 2:1\n")
    config = _file_config(tmp_path, train)
    result = _train(config, "--set", "data.skip_bad_lines=true")
    assert result.exit_code == 0, result.output
    assert f"warning: {train}: skipped 3 bad line(s); first:" in result.output
    assert f"{train}:3: malformed feature token '1:x'" in result.output
    start = _start_record(tmp_path)
    assert start["event"] == "start" and start["n_train"] == 2
    assert start["skipped_lines"] == {"train": 3}
    assert [line.split(": ")[0] for line in start["first_bad"]] == [f"{train}:3", f"{train}:4", f"{train}:5"]
    # Every line bad: an empty training set is an error, with the first reason.
    train.write_text("2 5 4\n0 0:x\n1 1:x\n")
    result = _train(config, "--set", "data.skip_bad_lines=true", "--out", str(tmp_path / "run2"))
    _assert_one_line_error(result, f"{train}: no samples", "all 2 data lines were bad and skipped",
                           f"{train}:2: malformed feature token '0:x'")


def test_python_api_rejects_nonfinite_and_mismatched_datasets(tiny_config):
    cfg = config_from_dict(tiny_config)
    ds = Dataset(np.array([0, 2, 3]), np.array([0, 1, 2]), np.array([1.0, np.inf, 1.0], np.float32),
                 np.array([0, 1, 2]), np.array([0, 1]), 400, 150, source="mine")
    with pytest.raises(DataError, match="mine: training sample 0 has a non-finite feature value"):
        Trainer(cfg, train=ds, progress=False)
    good = Dataset(ds.x_indptr, ds.x_indices, np.ones(3, np.float32), ds.y_indptr, ds.y_indices, 400, 150)
    wide = Dataset(ds.x_indptr, ds.x_indices, np.ones(3, np.float32), ds.y_indptr, ds.y_indices, 500, 150,
                   source="wide")
    with pytest.raises(DataError, match="wide: the test set has 500 features but the training set 400"):
        Trainer(cfg, train=good, test=wide, progress=False)
    trainer = Trainer(cfg, train=good, progress=False)
    with pytest.raises(DataError, match="wide has 500 features but the model takes 400"):
        trainer.predict(wide)


# ------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny run with checkpoints at steps 5, 10 and 12, plus a data file for it."""
    root = tmp_path_factory.mktemp("trained")
    cfg = copy.deepcopy(TINY)
    cfg["output"].update(run_dir=str(root / "run"), checkpoint_every=5, keep_last=5)
    cfg["training"]["max_steps"] = 12
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    trainer = Trainer(config_from_dict(cfg), progress=False)
    trainer.fit()
    test = root / "test.txt"
    from slidepy import write_dataset

    write_dataset(trainer.test_data.subset(np.arange(40)), test)
    other = copy.deepcopy(cfg)
    other["model"]["hidden"] = [16]
    other["output"]["run_dir"] = str(root / "other")
    other_trainer = Trainer(config_from_dict(other), progress=False)
    other_path = other_trainer.save(root / "other.npz")
    return {"root": root, "config": config, "run": root / "run", "test": test, "other": other_path,
            "steps": [s for s, _ in list_checkpoints(root / "run")]}


def _broken_checkpoints(run, root, tmp_path):
    """name -> (path of a bad checkpoint file, fragment of the error)."""
    good = checkpoint_path(run["run"], 12)
    data = open(good, "rb").read()
    out = {}
    (tmp_path / "text.npz").write_text("step: 12\nweights: [1, 2]\n")
    out["text_file"] = (tmp_path / "text.npz", "is not a slidepy checkpoint (not a .npz/zip file)")
    (tmp_path / "empty.npz").write_bytes(b"")
    out["empty_file"] = (tmp_path / "empty.npz", "is empty (0 bytes)")
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    out["truncated"] = (tmp_path / "trunc.npz", "is truncated or corrupt")
    np.savez(tmp_path / "plain.npz", weights=np.zeros(3))
    out["plain_npz"] = (tmp_path / "plain.npz", "is not a slidepy checkpoint (it has no __meta__ entry)")
    flipped = bytearray(data)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("layer1.weights.npy")
    flipped[info.header_offset + 30 + len(info.filename) + 300] ^= 0x55
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    out["bit_flip"] = (tmp_path / "flipped.npz", "truncated or corrupt (cannot read layer1.weights.npy")
    arrays, meta = load_checkpoint(good)
    other_arrays, _ = load_checkpoint(run["other"])
    save_checkpoint(tmp_path / "shapes.npz", other_arrays, meta)  # hidden-16 arrays, hidden-32 config
    out["shapes_disagree"] = (tmp_path / "shapes.npz",
                              "does not match the config: checkpoint layer0.weights has shape (400, 16) but the "
                              "config needs (400, 32)")
    save_checkpoint(tmp_path / "nocfg.npz", arrays, {"step": 3})
    out["no_config"] = (tmp_path / "nocfg.npz", "holds no config: not a slidepy model file")
    save_checkpoint(tmp_path / "nodims.npz", arrays, {k: v for k, v in meta.items() if k != "n_features"})
    out["no_dimensions"] = (tmp_path / "nodims.npz", "has no valid model dimensions")
    bad_cfg = dict(meta, config={"training": {"lr": -1}})
    save_checkpoint(tmp_path / "badcfg.npz", arrays, bad_cfg)
    out["invalid_config"] = (tmp_path / "badcfg.npz", "holds an invalid config: training.lr: -1 is out of range")
    lsh = dict(arrays)
    lsh["lsh1.buckets"] = lsh["lsh1.buckets"][:3]
    save_checkpoint(tmp_path / "lsh.npz", lsh, meta)
    out["lsh_tables_disagree"] = (tmp_path / "lsh.npz", "lsh1.buckets has shape (3, 16, 32) but this index needs")
    return out


BROKEN = ["text_file", "empty_file", "truncated", "plain_npz", "bit_flip", "shapes_disagree", "no_config",
          "no_dimensions", "invalid_config", "lsh_tables_disagree"]


@pytest.mark.parametrize("case", BROKEN)
def test_evaluate_and_predict_reject_bad_checkpoint(trained_run, tmp_path, case):
    path, fragment = _broken_checkpoints(trained_run, trained_run["root"], tmp_path)[case]
    runner = CliRunner()
    for command in ("evaluate", "predict"):
        result = runner.invoke(main, [command, "--checkpoint", str(path), "--data", str(trained_run["test"])])
        _assert_one_line_error(result, str(path), fragment)


def test_evaluate_rejects_missing_checkpoint_and_mismatched_data(trained_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "nope.npz"),
                                  "--data", str(trained_run["test"])])
    _assert_one_line_error(result, f"checkpoint {tmp_path / 'nope.npz'} does not exist")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("1 401 150\n0 400:1\n")
    good = checkpoint_path(trained_run["run"], 12)
    result = runner.invoke(main, ["evaluate", "--checkpoint", good, "--data", str(wrong)])
    _assert_one_line_error(result, f"{wrong}:1: header has n_features=401, more than the 400 requested",
                           "the model has 400 features, 150 labels")
    ok = runner.invoke(main, ["evaluate", "--checkpoint", good, "--data", str(trained_run["test"]), "--json"])
    assert ok.exit_code == 0, ok.output
    # the command's numbers are the API's on the same checkpoint and data (every sample scored)
    from slidepy import load_dataset

    data = load_dataset(trained_run["test"], n_features=400, n_labels=150, cache=False)
    want = Trainer.load(good).evaluate(data, subset=None)
    got = json.loads(ok.output)
    assert set(got) == {f"{m}@{k}" for m in ("P", "nDCG") for k in (1, 3, 5)}
    assert got == {key: want[key] for key in got}


def _copy_run(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run)
    return run


def test_resume_from_a_checkpoint_older_than_a_setting_reports_no_change(trained_run, tmp_path):
    """A checkpoint written before a setting existed (here model.reranker) resumes as if it held
    that setting's default: nothing to report as changed, and its final evaluation stands."""
    from slidepy.rundir import list_checkpoints

    run = _copy_run(trained_run, tmp_path)
    newest = list_checkpoints(run)[-1][1]
    arrays, meta = load_checkpoint(newest)
    del meta["config"]["model"]["reranker"]
    save_checkpoint(newest, arrays, meta)
    resumed = _train(trained_run["config"], "--out", str(run), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "differ" not in resumed.output and "the run had ended there" in resumed.output


@pytest.mark.parametrize("case", ["truncated", "bit_flip", "empty_file", "text_file"])
def test_resume_falls_back_past_corrupt_newest(trained_run, tmp_path, case):
    run = _copy_run(trained_run, tmp_path)
    bad, _ = _broken_checkpoints(trained_run, trained_run["root"], tmp_path)[case]
    newest = checkpoint_path(run, 12)
    os.replace(bad, newest)
    result = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "training.max_steps=14")
    assert result.exit_code == 0, result.output
    assert "warning: skipping unreadable checkpoint: " in result.output and str(newest) in result.output
    assert f"resumed from step 10 (epoch 0) in {run}" in result.output
    assert "step 14 " in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resume = [r for r in records if r["event"] == "resume"]
    assert resume[-1]["step"] == 10 and resume[-1]["checkpoint"].endswith("step-000000010.npz")
    steps = [r["step"] for r in records if r["event"] == "log"]
    assert steps == sorted(set(steps)), "a step is logged twice"
    newest = list_checkpoints(run)[-1]
    assert newest[0] == 14 and load_checkpoint(newest[1])[1]["step"] == 14


def test_resume_with_every_checkpoint_corrupt_is_an_error(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    for _, path in list_checkpoints(run):
        with open(path, "r+b") as f:
            f.truncate(100)
    result = _train(trained_run["config"], "--out", str(run), "--resume")
    _assert_one_line_error(result, "--resume: none of the 3 checkpoint(s)", "can be read")


def test_resume_with_checkpoints_of_another_config_is_an_error(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    result = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "model.hidden=[16]")
    _assert_one_line_error(result, str(checkpoint_path(run, 12)), "does not match the config",
                           "layer0.weights has shape (400, 32) but the config needs (400, 16)", "use another --out")


def test_resume_says_which_settings_changed_and_a_finished_run_is_not_evaluated_again(trained_run, tmp_path):
    """--resume with another learning rate trains on, warning with the key and both values (the
    resume record keeps them); a longer run is no change. Resuming the finished run (its final
    checkpoint and evaluation written) logs no second final evaluation and prints the same line."""
    run = _copy_run(trained_run, tmp_path)
    records = lambda: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    evals = [r for r in records() if r["event"] == "eval"]
    finished = _train(trained_run["config"], "--out", str(run), "--resume")
    assert finished.exit_code == 0, finished.output
    assert [r for r in records() if r["event"] == "eval"] == evals and "differ" not in finished.output
    assert f"P@1 {evals[-1]['P@1']:.4f}" in finished.output.splitlines()[-1]
    assert "the run had ended there, nothing is left to train" in finished.output
    # ... unless what scores it differs (here k): then it is evaluated again, as asked
    other_k = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "eval.k=[1, 10]")
    assert other_k.exit_code == 0, other_k.output
    again = [r for r in records() if r["event"] == "eval"]
    assert len(again) == len(evals) + 1 and "P@10" in again[-1] and "P@10" in other_k.output
    evals = again
    result = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "training.max_steps=14",
                    "--set", "training.lr=0.05")
    assert result.exit_code == 0, result.output
    assert "settings that differ from those it was trained with: training.lr 0.005 -> 0.05" in result.output
    assert "the run had ended there" not in result.output  # it goes on to step 14
    assert "max_steps" not in result.output.split("differ")[1].splitlines()[0]
    resumed = [r for r in records() if r["event"] == "resume"][-1]
    assert resumed["changed"] == ["training.lr 0.005 -> 0.05"]


@pytest.mark.parametrize("end", ["max_steps", "epoch end"])
def test_the_final_checkpoint_is_written_before_the_final_evaluation(tiny_config, monkeypatch, end):
    """A run killed during its final evaluation (a scheduler's SIGTERM, then SIGKILL) keeps its
    training: the last step's checkpoint is on disk before that evaluation starts; also where the
    run ends at an epoch's end, whose evaluation (eval.every 0) is the final one."""
    if end == "max_steps":
        tiny_config["training"]["max_steps"] = 7
    else:
        tiny_config["training"]["epochs"] = 2
    tiny_config["output"]["checkpoint_every"] = 1000
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    last = 7 if end == "max_steps" else trainer.schedule.planned_steps
    real = trainer._eval_record

    def killed_in_the_final_one(final=False):
        if final:
            assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [last]
            raise KeyboardInterrupt
        return real(final)

    monkeypatch.setattr(trainer, "_eval_record", killed_in_the_final_one)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [last]


def test_a_checkpoint_that_cannot_be_written_at_the_end_exits_1_naming_the_newest_kept(trained_run, tmp_path,
                                                                                       monkeypatch):
    import errno

    import slidepy.rundir as rundir_mod

    run = _copy_run(trained_run, tmp_path)

    def full(path, arrays, meta):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir_mod, "save_checkpoint", full)
    result = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "training.max_steps=13")
    line = _assert_one_line_error(result, "cannot write checkpoint", "No space left on device",
                                  f"the newest one kept is {checkpoint_path(run, 12)}", "--resume", code=1)
    assert "step-000000013" in line


def test_fresh_run_refuses_a_run_dir_with_an_earlier_run(trained_run, tmp_path):
    """Without --resume, an earlier run's higher-step checkpoints would outlive pruning and the
    new run's own checkpoints would be deleted: refused, unless --overwrite says start over."""
    run = _copy_run(trained_run, tmp_path)
    result = _train(trained_run["config"], "--out", str(run))
    _assert_one_line_error(result, f"output.run_dir: {run} already holds checkpoints of an earlier run (up to step 12)",
                           "--resume", "--overwrite")
    assert [s for s, _ in list_checkpoints(run)] == trained_run["steps"]
    _assert_one_line_error(_train(trained_run["config"], "--out", str(run), "--resume", "--overwrite"),
                           "--resume and --overwrite contradict each other")
    result = _train(trained_run["config"], "--out", str(run), "--overwrite", "--set", "training.max_steps=6")
    assert result.exit_code == 0, result.output
    assert "deleted the earlier run's checkpoints and metrics" in result.output
    assert [s for s, _ in list_checkpoints(run)] == [5, 6]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("start") == 1 and records[-1]["step"] == 6


def test_killed_write_leaves_no_temp_file_behind(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = run / "checkpoints" / f"step-000000013.npz.tmp-{dead}"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    live = run / "checkpoints" / f"step-000000013.npz.tmp-{os.getppid()}"  # a running process
    live.write_bytes(b"PK")
    metrics = run / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"event": "log", "step": 13, "lo')  # a line cut short by a kill
    result = _train(trained_run["config"], "--out", str(run), "--resume", "--set", "training.max_steps=13")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists()
    for line in metrics.read_text().splitlines():
        json.loads(line)


# -------------------------------------------------------------------------- numerical faults


def _tiny(tiny_config, **training):
    tiny_config["training"].update(training)
    tiny_config["eval"]["recall_samples"] = 0
    return config_from_dict(tiny_config)


def test_nan_loss_names_step_and_layer(tiny_config):
    trainer = Trainer(_tiny(tiny_config, epochs=1), progress=False)
    trainer.engine.layers[1].weights[:] = np.nan
    with pytest.raises(NumericalError, match=r"^loss is nan at step 1; NaN/inf in (layer 0 weights, )?(layer 0 bias, )?layer 1 weights.*; lower "):
        trainer.fit()


def test_nan_weights_caught_within_one_log_interval_and_never_checkpointed(tiny_config):
    """NaN in the input-layer row of a feature no sample has leaves the loss finite: the weight
    check at the next log or checkpoint step catches it, and that checkpoint is not written."""
    tiny_config["model"] = {"hidden": [16], "output": {"selection": {"mode": "all"}}}
    tiny_config["output"]["checkpoint_every"] = 4
    data = _awkward_dataset(n_features=60, used_features=50)
    trainer = Trainer(_tiny(tiny_config, epochs=2, batch_size=8, log_every=3), train=data, progress=False)

    def poison(t, record):
        if record["event"] == "log" and t.step == 6:
            t.engine.layers[0].weights[55, 3] = np.nan

    trainer.callbacks.append(poison)
    with pytest.raises(NumericalError, match=r"^NaN/inf in layer 0 weights at step 8; lower training.lr"):
        trainer.fit()
    losses = [r["loss"] for r in trainer.history if r["event"] == "log"]
    assert np.isfinite(losses).all()  # the loss never showed it
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [4]
    arrays, _ = load_checkpoint(checkpoint_path(trainer.run_dir, 4))
    assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def test_nan_injected_at_a_checkpoint_step_is_not_saved(tiny_config):
    tiny_config["output"]["checkpoint_every"] = 4
    trainer = Trainer(_tiny(tiny_config, epochs=1, log_every=8), progress=False)

    def poison(t, record):
        if record["event"] == "log" and t.step == 8:  # after the log check, before the checkpoint
            t.engine.layers[1].bias[:] = np.inf

    trainer.callbacks.append(poison)
    with pytest.raises(NumericalError, match=r"^NaN/inf in layer 1 bias at step 8"):
        trainer.fit()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [4]


def test_rollback_restores_checkpoint_halves_lr_and_finishes(tiny_config):
    tiny_config["output"]["checkpoint_every"] = 5
    trainer = Trainer(_tiny(tiny_config, epochs=2, on_nan="rollback", log_every=2), progress=False)
    injected = []

    def poison_once(t, record):
        if record["event"] == "log" and t.step == 12 and not injected:
            injected.append(t.step)
            t.engine.layers[1].weights[:] = np.nan

    trainer.callbacks.append(poison_once)
    with pytest.warns(RuntimeWarning, match=r"loss is nan at step 13; NaN/inf in .*layer 1 weights.*: rolled back to .*step-000000010.npz \(step 10\) with learning rate 0.0025"):
        result = trainer.fit()
    rollbacks = [r for r in trainer.history if r["event"] == "rollback"]
    assert len(rollbacks) == 1
    assert rollbacks[0]["step"] == 10 and rollbacks[0]["checkpoint"].endswith("step-000000010.npz")
    assert rollbacks[0]["lr"] == pytest.approx(0.0025)
    assert trainer.engine.lr == pytest.approx(0.0025)
    assert trainer.step == 2 * 19 and result["P@1"] > 0.1
    assert all(np.isfinite(layer.weights).all() for layer in trainer.engine.layers)
    final, meta = load_checkpoint(checkpoint_path(trainer.run_dir, trainer.step))
    assert meta["engine"]["lr"] == pytest.approx(0.0025)  # a resumed run keeps the halved rate
    assert [r["step"] for r in trainer.history if r["event"] == "log"][-1] == 38
    # one timeline: the abandoned steps' records (the log of step 12) are gone from history and the file
    for records in (trainer.history, read_metrics(trainer.run_dir)):
        steps = [r["step"] for r in records if r["event"] == "log"]
        assert steps == sorted(set(steps)) == list(range(2, 39, 2))
    assert rollbacks[0]["dropped_records"] >= 1


def test_rollback_gives_up_after_three_in_a_row(tiny_config):
    tiny_config["output"]["checkpoint_every"] = 5
    trainer = Trainer(_tiny(tiny_config, epochs=2, on_nan="rollback", log_every=2), progress=False)

    def always_poison(t, record):
        if record["event"] == "log" and t.step >= 12:
            t.engine.layers[1].weights[0, 0] = np.nan

    trainer.callbacks.append(always_poison)
    with pytest.warns(RuntimeWarning), \
            pytest.raises(NumericalError, match=r"gave up after 3 rollbacks in a row \(learning rate now 0.000625\)"):
        trainer.fit()
    rollbacks = [r for r in trainer.history if r["event"] == "rollback"]
    assert [r["lr"] for r in rollbacks] == pytest.approx([0.0025, 0.00125, 0.000625])
    assert {r["step"] for r in rollbacks} == {10}


def test_rollback_at_the_very_end_trains_the_lost_steps_again(tiny_config):
    """NaN that the loss does not show, appearing after the last log step, is caught by the
    end-of-run check: rolled back, the lost steps trained again, and never saved."""
    tiny_config["model"] = {"hidden": [16], "output": {"selection": {"mode": "all"}}}
    tiny_config["output"]["checkpoint_every"] = 5
    data = _awkward_dataset(n_features=60, used_features=50)
    trainer = Trainer(_tiny(tiny_config, epochs=1, batch_size=8, on_nan="rollback", log_every=11), train=data,
                      progress=False)
    injected = []

    def poison_once(t, record):
        if record["event"] == "log" and t.step == 11 and not injected:
            injected.append(True)
            t.engine.layers[0].weights[55, 0] = np.nan  # a feature no sample has: the loss stays finite

    trainer.callbacks.append(poison_once)
    with pytest.warns(RuntimeWarning, match=r"NaN/inf in layer 0 weights at step 12: rolled back to .*step-000000010"):
        trainer.fit()
    assert trainer.step == 12 and trainer.engine.lr == pytest.approx(0.0025)
    assert all(np.isfinite(layer.weights).all() and np.isfinite(layer.bias).all() for layer in trainer.engine.layers)
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [10, 12]


def test_rollback_without_checkpoint_is_a_clear_error(tiny_config):
    tiny_config["output"]["checkpoint_every"] = 0
    trainer = Trainer(_tiny(tiny_config, epochs=1, on_nan="rollback"), progress=False)
    trainer.engine.layers[1].weights[:] = np.nan
    with pytest.raises(NumericalError, match="on_nan is rollback but .* has no checkpoint to roll back to"):
        trainer.fit()


def _awkward_dataset(n_features=60, n_labels=40, big=1.0, seed=0, used_features=None):
    """Samples with no labels, no features, both, and one label: the edge cases of the loss."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(96):
        kind = i % 4
        feats = [] if kind == 1 or kind == 3 else sorted(rng.choice(used_features or n_features, 5, replace=False))
        labels = [] if kind == 2 or kind == 3 else [int(rng.integers(n_labels))]
        xs.append(feats)
        ys.append(labels)
    x_indptr = np.cumsum([0] + [len(f) for f in xs])
    y_indptr = np.cumsum([0] + [len(y) for y in ys])
    x_indices = np.array([f for row in xs for f in row], np.int32)
    return Dataset(x_indptr, x_indices, np.full(x_indices.size, big, np.float32), y_indptr,
                   np.array([y for row in ys for y in row], np.int32), n_features, n_labels, source="awkward")


@pytest.mark.parametrize("mode, loss", [("all", "softmax"), ("random", "softmax"), ("lsh", "softmax"),
                                        ("lsh", "bce"), ("random_budget_1", "softmax")])
def test_samples_without_labels_or_features_train_finite(tiny_config, mode, loss):
    sel = {"mode": "random", "budget": 1} if mode == "random_budget_1" else {"mode": mode, "budget": 8}
    tiny_config["model"] = {"hidden": [16], "loss": loss,
                            "output": {"selection": {**sel, "lsh": {"family": "srp", "k": 3, "l": 4,
                                                                      "range_pow": 3}}}}
    tiny_config["output"]["checkpoint_every"] = 0
    cfg = _tiny(tiny_config, epochs=3, batch_size=8, log_every=1)
    data = _awkward_dataset()
    trainer = Trainer(cfg, train=data, test=data, progress=False)
    trainer.fit()
    losses = [r["loss"] for r in trainer.history if r["event"] == "log"]
    assert len(losses) == 36 and np.isfinite(losses).all()
    assert all(np.isfinite(layer.weights).all() for layer in trainer.engine.layers)
    if mode == "random_budget_1" and loss == "softmax":
        assert max(losses) < 1e-5  # one active neuron, its own label: softmax over itself is exact
    ids, scores = trainer.predict(data, k=3)
    assert np.isfinite(scores[ids >= 0]).all()


def test_huge_feature_values_give_finite_loss(tiny_config):
    """Values of 1e4 make logits in the thousands: the softmax must stay finite (max-shifted).
    (input_scale 1: "auto" would scale such rows down to norm 8.)"""
    tiny_config["model"] = {"hidden": [16], "output": {"selection": {"mode": "all"}}, "input_scale": 1}
    tiny_config["output"]["checkpoint_every"] = 0
    data = _awkward_dataset(big=1e4)
    trainer = Trainer(_tiny(tiny_config, epochs=1, batch_size=8, log_every=1), train=data, progress=False)
    trainer.fit()
    losses = [r["loss"] for r in trainer.history if r["event"] == "log"]
    assert np.isfinite(losses).all() and max(losses) > 10  # large but finite


# ---------------------------------------------------------------------------------- signals


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["output"]["run_dir"] = str(tmp_path / "run")
    cfg["training"].update(epochs=500, log_every=1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "slidepy.cli", "train", "--config", str(config), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (metrics.exists() and metrics.read_text().count('"log"') >= 2):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # Either the first signal's save won the race, or the second stopped it without saving.
    assert ("--resume" in err) or ("not saved (the checkpoints in" in err), err
    for _, path in list_checkpoints(tmp_path / "run"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------- thread stress

STRESS_SCRIPT = textwrap.dedent("""
    import copy, json, sys
    import numba, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import TINY
    from slidepy import Trainer, config_from_dict

    out = {{}}
    for mode, hidden_mode in [("lsh", "lsh"), ("random", "random"), ("all", "all")]:
        for threads in (numba.config.NUMBA_NUM_THREADS, 1):
            cfg = copy.deepcopy(TINY)
            cfg["data"]["synthetic"].update(n_train=1200, n_test=300, nnz_per_sample=40)
            cfg["model"]["hidden"] = [{{"size": 64, "selection": {{"mode": hidden_mode, "budget": 32,
                                      "lsh": {{"family": "dwta", "k": 2, "l": 6, "range_pow": 6, "bin_size": 4}}}}}}]
            cfg["model"]["output"]["selection"]["mode"] = mode
            cfg["training"].update(epochs=8, batch_size=128, threads=threads, log_every=5)
            cfg["output"].update(run_dir={run!r} + f"/{{mode}}-{{threads}}", checkpoint_every=0)
            trainer = Trainer(config_from_dict(cfg), progress=False)
            result = trainer.fit()
            losses = [r["loss"] for r in trainer.history if r["event"] == "log"]
            finite = bool(np.isfinite(losses).all()) and all(np.isfinite(l.weights).all() for l in trainer.engine.layers)
            out[f"{{mode}}-{{'max' if threads > 1 else 1}}"] = {{
                "P@1": result["P@1"], "finite": finite, "steps": trainer.step, "threads": trainer.threads,
                "checksum": float(sum(np.float64(l.weights.sum()) for l in trainer.engine.layers))}}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_thread_stress_with_bounds_checking(tmp_path):
    """Many short Hogwild steps on small layers with every thread (oversubscribed: at least 8)
    and numba's bounds checks on (NUMBA_BOUNDSCHECK=1 compiles fresh code, so it gets its own
    cache dir): no crash, no out-of-bounds access, no NaN, and P@1 close to a 1-thread run.
    Batches of 128 give each thread 16 samples, enough for the chunks to overlap in time (the
    weights then differ from the 1-thread run in the last bits: real lock-free races)."""
    threads = max(8, os.cpu_count() or 1)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               NUMBA_NUM_THREADS=str(threads))
    script = STRESS_SCRIPT.format(tests=os.path.join(REPO, "tests"), run=str(tmp_path / "runs"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("thread stress:", json.dumps(out))
    for mode in ("lsh", "random", "all"):
        many, one = out[f"{mode}-max"], out[f"{mode}-1"]
        assert many["threads"] == threads and one["threads"] == 1
        assert many["finite"] and one["finite"], out
        assert many["steps"] == one["steps"] == 8 * 10
        assert abs(many["P@1"] - one["P@1"]) < 0.1, out
        assert many["P@1"] > 0.2, out
