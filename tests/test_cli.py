"""The command line, as a user runs it: train, interrupt with a signal, resume, evaluate, predict."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from slidepy.cli import main


@pytest.fixture
def config_file(tiny_config, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    return path


def test_train_evaluate_predict(config_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                  "--set", "training.epochs=2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "config.yaml").exists() and (out / "metrics.jsonl").exists()
    checkpoint = sorted((out / "checkpoints").glob("step-*.npz"))[-1]
    # the printed line is the API's evaluation of the last checkpoint on the config's test set
    from slidepy import Trainer, load_dataset

    printed = dict(re.findall(r"(P@\d|nDCG@\d) (\d\.\d{4})", result.output.splitlines()[-1]))
    assert set(printed) == {"P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5"}, result.output
    trained = Trainer.load(checkpoint, load_data_from_config=True)
    final = trained.evaluate(subset=None)
    assert printed == {key: f"{final[key]:.4f}" for key in printed}
    assert final["P@1"] > 0.2  # a model that learnt something: a wrong checkpoint would score apart
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["event"] == "log"]
    assert len(losses) >= 2 and losses[-1] < 0.9 * losses[0], losses  # and the loss fell while it did

    test_file = tmp_path / "test.txt"
    gen = runner.invoke(main, ["datagen", "--out", str(tmp_path / "train.txt"), "--test-out", str(test_file),
                               "--n-train", "50", "--n-test", "40", "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output

    # evaluate on the config's own test set, written out: the numbers of the API's evaluation
    from slidepy import write_dataset

    eval_file = tmp_path / "eval.txt"
    write_dataset(trained.test_data, eval_file)
    ev = runner.invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(eval_file), "--json"])
    assert ev.exit_code == 0, ev.output
    got = json.loads(ev.output)
    assert set(got) == {"P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5"}
    assert got == {key: final[key] for key in got}

    pred_file = tmp_path / "pred.txt"
    pr = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(test_file), "--top-k", "3",
                              "--out", str(pred_file)])
    assert pr.exit_code == 0, pr.output
    lines = pred_file.read_text().splitlines()
    assert len(lines) == 40
    # each line is the API's top-3 for that sample, best first, as id:score (6 significant digits)
    ids, scores = trained.predict(load_dataset(test_file, n_features=400, n_labels=150, cache=False), k=3)
    for line, row_ids, row_scores in zip(lines, ids, scores):
        assert line.split() == [f"{i}:{s:.6g}" for i, s in zip(row_ids, row_scores)]
    # predict reads no labels: a file whose header counts more labels than the model predicts too
    wider = tmp_path / "wider.txt"
    wider.write_text("2 400 1000\n999 3:0.5 17:1.2\n4:1\n")
    pr = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(wider), "--top-k", "3"])
    assert pr.exit_code == 0, pr.output
    assert len(pr.stdout.splitlines()) == 2
    # evaluate says how many samples have no labels (a headerless file's blank lines are such
    # samples), since they count as zeros in its means
    blank = tmp_path / "blank.svm"
    write_dataset(trained.test_data.subset([0, 1, 2]), blank, format="libsvm")
    blank.write_text(blank.read_text() + "\n\n")
    ev = runner.invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(blank)])
    assert ev.exit_code == 0, ev.output
    assert "note: 2 of the 5 samples" in ev.stderr and "have no labels" in ev.stderr


def test_a_config_file_that_sets_nothing_says_so(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    result = CliRunner().invoke(main, ["train", "--config", str(empty), "--out", str(tmp_path / "run"),
                                       "--no-progress", "--set", "training.max_steps=2"])
    assert result.exit_code == 0, result.output
    assert f"note: {empty} sets nothing" in result.output and "generated data" in result.output


def test_bad_config_is_one_clear_line(config_file, tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--set", "training.lr_rate=0.1"])
    assert result.exit_code == 2
    assert "training.lr_rate" in result.output and "did you mean" in result.output
    assert "Traceback" not in result.output


def test_evaluate_rejects_data_of_another_shape(config_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    assert runner.invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                "--set", "training.max_steps=2"]).exit_code == 0
    checkpoint = sorted((out / "checkpoints").glob("step-*.npz"))[-1]
    wrong = tmp_path / "wrong.txt"
    runner.invoke(main, ["datagen", "--out", str(wrong), "--n-train", "20", "--features", "900", "--labels", "150"])
    result = runner.invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(wrong)])
    assert result.exit_code == 2
    assert "features" in result.output


def test_dry_run_prints_memory_estimate(config_file):
    from slidepy import load_config
    from slidepy.memory import estimate_for_config

    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "memory estimate" in result.output and "LSH tables" in result.output
    # the printed parts and total are memory.estimate_for_config's for the same config, in MiB
    printed = dict(re.findall(r"^  (\S.*?)\s+([\d,]+\.\d) MiB$", result.output, re.M))
    estimate = estimate_for_config(load_config(config_file))
    for name, size in {**estimate.parts, "total": estimate.total}.items():
        assert printed[name] == f"{size / 2**20:,.1f}", name
    # ... and the total is their sum (to the printed rounding)
    parts = [float(printed[name].replace(",", "")) for name in estimate.parts]
    assert abs(sum(parts) - float(printed["total"].replace(",", ""))) <= 0.05 * len(parts)


def test_tune_lsh_suggests_k_and_l():
    from slidepy.hashing import FAMILY_SRP, suggest_k_l

    result = CliRunner().invoke(main, ["tune-lsh", "--neurons", "670091", "--active-fraction", "0.005"])
    assert result.exit_code == 0, result.output
    k, l, range_pow, capacity = (int(v) for v in re.search(
        r"family srp: k (\d+)  l (\d+)  range_pow (\d+)  bucket_capacity (\d+)", result.output).groups())
    assert (k, l) == suggest_k_l(670091, 0.005, 0.9, FAMILY_SRP, 8)
    # by hand: SRP's collision at cosine 0.8 is p = 1 - acos(0.8) / pi = 0.7952 per hash; K = 13
    # needs L = 45 tables for recall 0.9 and retrieves 45 / 2^13 = 0.55% > 0.5%; K = 14 needs 56,
    # 56 / 2^14 = 0.34%; 56 tables of 2^14 buckets of 32 int32 ids and an int32 count: 115.5 MiB
    assert (k, l, range_pow, capacity) == (14, 56, 14, 32)
    assert 1 - (1 - 0.7952 ** 14) ** 56 >= 0.9 and 56 / 2**14 <= 0.005 < 45 / 2**13
    assert "~0.0034 (~2,290 of 670,091); tables 115.5 MiB" in result.output
    # what it suggests, a config takes: at most MAX_L tables (saying what recall that leaves), and
    # bucket capacities and bin sizes that are powers of two
    from slidepy.config import Lsh

    result = CliRunner().invoke(main, ["tune-lsh", "--neurons", "670091", "--active-fraction", "0.0001",
                                       "--recall", "0.9999"])
    assert result.exit_code == 0, result.output
    k, l = (int(v) for v in re.search(r"k (\d+)  l (\d+)", result.output).groups())
    Lsh(family="srp", k=k, l=l)  # valid
    assert "note: within lsh.l <= 512 tables, recall 0.9999 of near neurons retrieves more" in result.output
    for option in (["--capacity", "3"], ["--family", "wta", "--bin-size", "3"]):
        result = CliRunner().invoke(main, ["tune-lsh", "--neurons", "1000", *option])
        assert result.exit_code == 2 and "is not a power of two" in result.output


def _wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_checkpoint_and_resume_finishes(config_file, tmp_path, signum):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "slidepy.cli", "train", "--config", str(config_file), "--out", str(out),
           "--no-progress", "--set", "training.epochs=200", "--set", "output.checkpoint_every=0",
           "--set", "training.log_every=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    try:
        assert _wait_for(lambda: metrics.exists() and metrics.read_text().count('"log"') >= 3, 240)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "--resume" in err
    saved = sorted((out / "checkpoints").glob("step-*.npz"))
    assert saved
    step = int(saved[-1].stem.split("-")[1])
    resume = subprocess.run(cmd[:-4] + ["--set", f"training.max_steps={step + 3}", "--resume"], capture_output=True,
                            text=True, timeout=240)
    assert resume.returncode == 0, resume.stderr
    assert f"resumed from step {step}" in resume.stderr
    assert f"step {step + 3} " in resume.stdout


def test_ctrl_c_while_a_run_is_set_up_is_held_to_the_end_of_the_setup():
    """A first SIGINT while the CLI loads data and kernels waits for the block to end (raised
    inside numba's loading of a cached kernel it could crash the process); a second goes through
    at once; the previous handler comes back."""
    import os

    from slidepy.cli import _interrupts_held

    before, done = signal.getsignal(signal.SIGINT), []
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler has run by now
            done.append("the block went on")
    assert done == ["the block went on"] and signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("not reached")
    assert done == ["the block went on"] and signal.getsignal(signal.SIGINT) is before
    # a scheduler's SIGTERM waits the same way, then ends with status 143 (it killed the process
    # mid-compile, without a word)
    term_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with _interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("the block went on again")
    assert stopped.value.code == 143 and done[-1] == "the block went on again"
    assert signal.getsignal(signal.SIGTERM) is term_before


def test_ctrl_c_while_the_kernels_compile_ends_the_run_once_they_have(config_file, tmp_path, monkeypatch):
    """The kernels compile inside the held block, before fit(): a Ctrl-C then waits for the
    compile (inside numba's compiler it printed a traceback and could crash), and the run ends
    before its first step."""
    import os

    from slidepy.trainer import Trainer

    real, compiled = Trainer.compile, []

    def interrupted(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now
        compiled.append(real(self))
        return compiled[-1]

    monkeypatch.setattr(Trainer, "compile", interrupted)
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--out", str(tmp_path / "run"),
                                       "--no-progress", "--set", "training.max_steps=2"])
    assert result.exit_code == 130, result.output
    assert "interrupted before training began" in result.output and "Traceback" not in result.output
    assert len(compiled) == 1 and not (tmp_path / "run" / "checkpoints").exists()


def test_a_second_signal_stops_at_once_with_its_own_exit_status(config_file, tmp_path, monkeypatch):
    """The first SIGTERM asks the run to save and stop; a second one while it does (a scheduler
    that sends it again) stops it at once. The status names SIGTERM (143), as the first would have,
    and a second Ctrl-C still gives 130."""
    import os

    from slidepy.errors import StopNow
    from slidepy.trainer import StopRequest, Trainer

    for signum in (signal.SIGTERM, signal.SIGINT):
        request = StopRequest()
        with pytest.raises(StopNow) as stopped, request.handling():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)
            assert request.signum == signum  # the first: noted, the run goes on to save
            os.kill(os.getpid(), signum)
            time.sleep(0.05)
        assert stopped.value.signum == signum

        def stopped_twice(self, signum=signum):
            raise StopNow(signum)

        monkeypatch.setattr(Trainer, "fit", stopped_twice)
        result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--out", str(tmp_path / f"run{signum}"),
                                           "--no-progress", "--set", "training.max_steps=2"])
        assert result.exit_code == 128 + signum, result.output
        assert "interrupted before training began" in result.output and "Traceback" not in result.output
    # the second signal after steps were saved: the line says from where and how to go on
    monkeypatch.undo()

    def saved_then_stopped(self, real=Trainer.fit):
        real(self)
        raise StopNow(signal.SIGINT)

    monkeypatch.setattr(Trainer, "fit", saved_then_stopped)
    out = tmp_path / "saved"
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                       "--set", "training.max_steps=2", "--threads", "1"])
    assert result.exit_code == 130, result.output
    assert (f"interrupted at step 2; not saved (the checkpoints in {out} are intact); resume from step 2 with: "
            f"slidepy train --config {out / 'config.yaml'} --out {out} --resume") in result.output


def test_out_names_a_directory_as_given_and_k_stays_within_what_is_scored(config_file, tmp_path, monkeypatch):
    """--out is a name, not YAML ('2024' is no int, '#' starts no comment); evaluate's k stops
    where eval.k does; predict's --top-k stops at the label count; a reader that closes the pipe
    early (| head) ends predict without an error line."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for name in ("2024", "runs #1"):
        result = runner.invoke(main, ["train", "--config", str(config_file), "--out", name, "--no-progress",
                                      "--set", "training.max_steps=2"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / name / "checkpoints").is_dir() and f"(run dir {name})" in result.output
    checkpoint = str(sorted((tmp_path / "2024" / "checkpoints").glob("step-*.npz"))[-1])
    data = tmp_path / "test.txt"
    assert runner.invoke(main, ["datagen", "--out", str(tmp_path / "train.txt"), "--test-out", str(data),
                                "--n-train", "5", "--n-test", "1000", "--features", "400",
                                "--labels", "150"]).exit_code == 0
    result = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(data), "--k", "1,1000"])
    assert result.exit_code == 2 and "--k: 1000 is larger than 100" in result.output
    result = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(data), "--top-k", "10**12"])
    assert result.exit_code == 2  # not an int
    result = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(data),
                                  "--top-k", "1000000000000", "--ids"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()[0].split()) == 150  # every label, once
    # 1,000 lines of 20 predictions: past a pipe's 64 KB buffer, so the write meets the closed pipe
    piped = subprocess.run(f"{sys.executable} -m slidepy predict --checkpoint {checkpoint} --data {data} --top-k 20 "
                           "| head -1", shell=True, capture_output=True, text=True)
    assert len(piped.stdout.splitlines()) == 1 and "error" not in piped.stderr, piped.stderr


def test_arguments_are_checked_before_any_work(tmp_path):
    """Junk in --k, a --out in a missing directory, a test set without a training set and a time
    budget of nothing are refused up front, each in one line naming the option (exit 2)."""
    runner = CliRunner()
    model, data = tmp_path / "none.npz", tmp_path / "none.txt"  # never opened: the checks come first
    cases = [
        (["evaluate", "--checkpoint", str(model), "--data", str(data), "--k", "1,x"],
         "error: --k must list positive integers, e.g. 1,3,5; got '1,x'"),
        (["predict", "--checkpoint", str(model), "--data", str(data), "--out", str(tmp_path / "no" / "p.txt")],
         f"error: --out {tmp_path / 'no' / 'p.txt'}: the directory {tmp_path / 'no'} does not exist"),
        (["train", "--train", str(data), "--time-budget", "0s"], "error: --time-budget: '0s' must be longer than 0 s"),
        (["datagen", "--out", str(data), "--shape", "amazon670k", "--labels", "500"],
         "error: --shape amazon670k sets --labels itself; give one or the other"),
        (["datagen", "--out", str(data), "--test-out", str(data)],
         f"error: --test-out {data} is --out too: the test set would overwrite the training set"),
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# the defaults\n")
    test = tmp_path / "test.txt"
    test.write_text("1 3 2\n0 1:1\n")
    cases.append((["train", "--config", str(empty), "--test", str(test), "--out", str(tmp_path / "run")],
                  f"error: data.test is {test} but data.train is null (which generates synthetic data instead of "
                  "reading a file): give data.train (--train FILE) too"))
    cases.append((["train", "--config", str(empty), "--out", ""],  # an empty "$RUN": not the current directory
                  "error: --set output.run_dir=\"\": output.run_dir: must not be empty, got ''"))
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == message, result.output
    assert not (tmp_path / "run").exists()


def test_predict_from_another_directory_keeps_the_votes_and_the_label_names(tiny_config, tmp_path, monkeypatch):
    """A model file keeps its config's data paths as written, relative to where the run started;
    predicting from elsewhere finds them through the directory the model was saved in, so the
    neighbours' votes (built from the training data) and the label names are the same."""
    runner = CliRunner()
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    gen = runner.invoke(main, ["datagen", "--out", str(project / "data" / "train.txt"), "--test-out",
                               str(project / "data" / "test.txt"), "--n-train", "300", "--n-test", "20",
                               "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output
    (project / "data" / "labels.txt").write_text("".join(f"label-{i}\n" for i in range(150)))
    cfg = dict(tiny_config, data={"train": "data/train.txt", "test": "data/test.txt", "labels": "data/labels.txt"})
    cfg["model"] = dict(cfg["model"], neighbours={"k": 5, "weight": 0.5})
    (project / "c.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(project)
    trained = runner.invoke(main, ["train", "--config", "c.yaml", "--out", "run", "--no-progress", "--threads", "1",
                                   "--set", "training.epochs=1"])
    assert trained.exit_code == 0, trained.output
    checkpoint = str(sorted((project / "run" / "checkpoints").glob("step-*.npz"))[-1])
    new_data = tmp_path / "new.txt"
    new_data.write_bytes((project / "data" / "test.txt").read_bytes())
    args = ["predict", "--checkpoint", checkpoint, "--data", str(new_data), "--top-k", "3"]
    here = runner.invoke(main, args)
    assert here.exit_code == 0, here.output
    # elsewhere holds files of the same relative names: the model's own directory comes first
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere" / "data" / "labels.txt").write_text("".join(f"other-{i}\n" for i in range(150)))
    (tmp_path / "elsewhere" / "data" / "train.txt").write_bytes((project / "data" / "test.txt").read_bytes())
    monkeypatch.chdir(tmp_path / "elsewhere")
    there = runner.invoke(main, args)
    assert there.exit_code == 0, there.output
    assert "not at hand" not in there.stderr
    assert there.stdout == here.stdout and there.stdout.count("label-") == 60
    # the votes need the training set alone: a test set gone since is no matter
    (project / "data" / "test.txt").unlink()
    without_test = runner.invoke(main, args)
    assert without_test.exit_code == 0 and "not at hand" not in without_test.stderr, without_test.output
    assert without_test.stdout == here.stdout


def test_a_headerless_file_for_a_model_of_xc_data_is_noted_and_index_base_reads_it(tiny_config, tmp_path):
    """A copy of XC data with its header left off is LIBSVM, whose feature ids count from 1: the
    CLI says so when the model learnt from an XC file, and --index-base 0 reads it as the XC file."""
    runner = CliRunner()
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    gen = runner.invoke(main, ["datagen", "--out", str(train), "--test-out", str(test), "--n-train", "300",
                               "--n-test", "20", "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output
    cfg = dict(tiny_config, data={"train": str(train), "test": str(test)})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    trained = runner.invoke(main, ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"),
                                   "--no-progress", "--threads", "1", "--set", "training.epochs=1"])
    assert trained.exit_code == 0, trained.output
    checkpoint = str(sorted((tmp_path / "run" / "checkpoints").glob("step-*.npz"))[-1])
    # without feature 0 the shift raises no error: the case where only the note tells
    header, *lines = test.read_text().splitlines()
    lines = [" ".join(t for t in line.split(" ") if not t.startswith("0:")) for line in lines]
    test.write_text("\n".join([header, *lines]) + "\n")
    headerless = tmp_path / "new.txt"
    headerless.write_text("\n".join(lines) + "\n")

    def predict(path, *extra):
        result = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(path), "--ids", *extra])
        assert result.exit_code == 0, result.output
        return result

    as_xc, as_libsvm, as_zero_based = predict(test), predict(headerless), predict(headerless, "--index-base", "0")
    assert "note:" not in as_xc.stderr and "note:" not in as_zero_based.stderr
    assert "--index-base 0" in as_libsvm.stderr and str(headerless) in as_libsvm.stderr
    assert as_zero_based.stdout == as_xc.stdout != as_libsvm.stdout
    train.rename(tmp_path / "moved.txt")  # the model file knows its training file's format
    assert "--index-base 0" in predict(headerless).stderr
    unlabelled = tmp_path / "unlabelled.txt"  # features alone: predict's input, nothing for evaluate
    unlabelled.write_text(header + "\n" + "".join(" ".join(line.split(" ")[1:]) + "\n" for line in lines))
    assert predict(unlabelled).stdout == as_xc.stdout
    nothing = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(unlabelled)])
    assert nothing.exit_code == 2 and "no sample has a label" in nothing.stderr
    scored = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(headerless), "--json",
                                  "--index-base", "0"])
    direct = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(test), "--json"])
    assert scored.exit_code == direct.exit_code == 0 and json.loads(scored.stdout) == json.loads(direct.stdout)
    binary = tmp_path / "binary.txt"  # its error is the only line: no note on the ids of a file that has none
    binary.write_bytes(b"\x00\x01\x02 not text")
    refused = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(binary)])
    assert refused.exit_code == 2 and "binary file" in refused.stderr and "note:" not in refused.stderr
    # train says it too, for a headerless test file beside an XC training file
    cfg["data"] = {"train": str(tmp_path / "moved.txt"), "test": str(headerless)}
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(cfg))
    told = runner.invoke(main, ["train", "--config", str(tmp_path / "c2.yaml"), "--out", str(tmp_path / "run2"),
                                "--no-progress", "--threads", "1", "--set", "training.max_steps=1"])
    assert told.exit_code == 0 and f"{headerless} has no header line" in told.stderr, told.output
    untold = runner.invoke(main, ["train", "--config", str(tmp_path / "c2.yaml"), "--out", str(tmp_path / "run3"),
                                  "--no-progress", "--threads", "1", "--set", "training.max_steps=1",
                                  "--set", "data.test=" + str(test)])
    assert untold.exit_code == 0 and "no header line" not in untold.stderr, untold.output


def test_a_headerless_file_for_a_model_of_generated_data_is_noted_too(config_file, tmp_path):
    """Generated data (and arrays handed in from Python) count feature ids from 0 as XC files do."""
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "--config", str(config_file), "--out", str(tmp_path / "run"),
                                   "--no-progress", "--threads", "1", "--set", "training.max_steps=1"])
    assert trained.exit_code == 0, trained.output
    checkpoint = str(sorted((tmp_path / "run" / "checkpoints").glob("step-*.npz"))[-1])
    headerless = tmp_path / "new.txt"
    headerless.write_text("3 1:1 7:0.5\n")
    result = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(headerless), "--ids"])
    assert result.exit_code == 0 and "the model learnt from generated data" in result.stderr, result.output
    result = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(headerless), "--ids",
                                  "--index-base", "0"])
    assert result.exit_code == 0 and "note:" not in result.stderr, result.output
    one_thread = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--data", str(headerless), "--ids",
                                      "--index-base", "0", "--threads", "1"])  # as evaluate takes it
    assert one_thread.exit_code == 0 and one_thread.stdout == result.stdout, one_thread.output


def test_a_zero_based_libsvm_training_set_is_refused_with_the_way_to_read_it(tiny_config, tmp_path):
    """LIBSVM ids count from 1, so a 0-based LIBSVM training file stops at its first feature 0 with
    a message naming --index-base 0; with it, train reads the files as they are, and evaluate and
    predict read the model's files the same way without being told again (data.index_base)."""
    runner = CliRunner()
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    gen = runner.invoke(main, ["datagen", "--out", str(train), "--test-out", str(test), "--n-train", "300",
                               "--n-test", "30", "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output
    for path in (train, test):  # the same data, its XC header left off, ids as they were (0-based)
        lines = path.read_text().splitlines()[1:]
        path.write_text("\n".join(lines + ["0 0:1"]) + "\n")  # feature 0 at least once, as the refusal needs
    cfg = dict(tiny_config, data={"train": str(train), "test": str(test)})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress",
            "--threads", "1", "--set", "training.epochs=1"]
    refused = runner.invoke(main, args)
    first_zero = next(i for i, line in enumerate(train.read_text().splitlines(), 1) if " 0:" in f" {line}")
    assert refused.exit_code != 0 and f"{train}:{first_zero}: feature id in '0:" in refused.stderr, refused.output
    assert "--index-base 0" in refused.stderr and "data.index_base: 0" in refused.stderr
    trained = runner.invoke(main, [*args, "--index-base", "0"])
    assert trained.exit_code == 0, trained.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["index_base"] == 0
    checkpoint = str(sorted((tmp_path / "run" / "checkpoints").glob("step-*.npz"))[-1])
    told = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(test), "--json",
                                "--index-base", "0"])
    untold = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(test), "--json"])
    assert told.exit_code == untold.exit_code == 0, untold.output
    assert json.loads(untold.stdout) == json.loads(told.stdout) and "note:" not in untold.stderr
    # the model's default is no more than a default: --index-base 1 still reads 1-based ids
    as_one_based = runner.invoke(main, ["evaluate", "--checkpoint", checkpoint, "--data", str(test), "--index-base", "1"])
    assert as_one_based.exit_code != 0 and "below the index base 1" in as_one_based.stderr
    auto = runner.invoke(main, ["train", "--train", str(train), "--test", str(test), "--index-base", "0",
                                "--out", str(tmp_path / "auto"), "--no-progress", "--threads", "1",
                                "--set", "training.epochs=1"])  # the automatic recipe reads them the same way
    assert auto.exit_code == 0, auto.output
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["data"]["index_base"] == 0
    # and so does --set data.index_base=0, which the recipe's own first reading follows too
    by_set = runner.invoke(main, ["train", "--train", str(train), "--test", str(test), "--set", "data.index_base=0",
                                  "--out", str(tmp_path / "by-set"), "--no-progress", "--threads", "1",
                                  "--set", "training.epochs=1"])
    assert by_set.exit_code == 0, by_set.output
    assert yaml.safe_load((tmp_path / "by-set" / "config.yaml").read_text())["data"]["index_base"] == 0


def test_ctrl_c_while_the_command_loads_is_an_interruption_not_a_traceback(monkeypatch, capsys):
    """The console script (slidepy.__main__:run) imports the CLI inside a function: a Ctrl-C while
    click and the CLI load ends with exit status 130 and one line, as an interrupted run does."""
    import builtins

    from slidepy.__main__ import run

    real_import = builtins.__import__

    def interrupted(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "cli" and level == 1:
            raise KeyboardInterrupt
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_the_console_script_is_the_guarded_entry_point():
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^\[project\.scripts\]\nslidepy = "slidepy\.__main__:run"$', pyproject, re.M)
    help_text = subprocess.run([sys.executable, "-m", "slidepy", "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "train" in help_text.stdout
    import shutil

    installed = shutil.which("slidepy")  # the script pip wrote (CI installs the package first)
    if installed is not None:
        script = subprocess.run([installed, "--help"], capture_output=True, text=True, timeout=60)
        assert script.returncode == 0 and script.stdout.startswith("Usage: slidepy ") and "train" in script.stdout, \
            script.stderr


def test_a_used_run_dir_and_a_bad_test_file_are_refused_before_the_set_up(config_file, tmp_path, monkeypatch):
    """A fresh run into a directory holding a run is refused before the data, the index and the
    kernels are set up (minutes on large data); the automatic recipe's test file is read before
    its timing trial, so its errors come first too."""
    import slidepy.calibrate
    from slidepy.trainer import Trainer

    runner = CliRunner()
    out = str(tmp_path / "run")
    args = ["train", "--config", str(config_file), "--out", out, "--no-progress", "--threads", "1",
            "--set", "training.max_steps=1"]
    assert runner.invoke(main, args).exit_code == 0

    def no_set_up(*args, **kwargs):
        raise AssertionError("set up before the refusal")

    monkeypatch.setattr(Trainer, "__init__", no_set_up)
    monkeypatch.setattr(slidepy.calibrate, "trial_rate", no_set_up)
    again = runner.invoke(main, args)
    assert again.exit_code == 2 and "already holds checkpoints of an earlier run" in again.stderr, again.output
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("3 6 3\n0 1:1\n1 2:1\n2 3:1\n")
    test.write_text("1 9 3\n0 8:1\n")  # wider than the training set
    auto = runner.invoke(main, ["train", "--train", str(train), "--test", str(test), "--time-budget", "5s",
                                "--out", str(tmp_path / "auto"), "--no-progress", "--threads", "1"])
    assert auto.exit_code == 2 and f"{test}:1: header has n_features=9" in auto.stderr, auto.output
    assert "timing a" not in auto.stderr


def test_a_budgeted_run_that_ends_at_its_epochs_first_says_so(config_file, tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--out", str(tmp_path / "run"),
                                       "--no-progress", "--threads", "1", "--set", "training.epochs=1",
                                       "--set", "training.time_budget_s=600"])
    assert result.exit_code == 0, result.output
    assert "note: the run ended at training.epochs (1), after " in result.stderr
    assert "s of its 600 s budget" in result.stderr
