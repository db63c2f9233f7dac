"""Data-parallel training on Ray (slidepy/distributed.py).

The sync is tested without Ray against a naive per-row mean; the Ray runs are small local groups
(2 workers x 1 thread) on generated data. Ray is optional: those tests skip without it.
"""

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY, interrupt_at_step
from slidepy import Trainer, load_config
from slidepy.checkpoint import load_checkpoint
from slidepy.rundir import list_checkpoints
from slidepy.configfile import config_from_dict
from slidepy.distributed import (apply_merged, dense_sync_bytes, new_touched_log, payload_bytes, reduce_shard,
                                 scatter_touched)
from slidepy.errors import ConfigError
from slidepy.network import init_params

ROOT = Path(__file__).resolve().parent.parent


def _have_ray() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("ray") is not None
    except ValueError:
        return False


needs_ray = pytest.mark.skipif(not _have_ray(), reason="Ray is not installed (pip install -e '.[ray]')")

# Sparse enough that a sync ships a fraction of the model: 3,000 features, 2,000 labels, global
# batches of 24 (12 per worker), a sync every 4 steps; 50 steps per epoch.
SPARSE = copy.deepcopy(TINY)
SPARSE["data"]["synthetic"].update(n_train=1200, n_test=400, n_features=3000, n_labels=2000, nnz_per_sample=10)
SPARSE["model"]["output"]["selection"]["budget"] = 40
SPARSE["training"].update(epochs=2, batch_size=24, log_every=10)
SPARSE["output"].update(checkpoint_every=20, keep_last=2)
SPARSE["distributed"] = {"workers": 2, "sync_every": 4}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# -- without Ray ----------------------------------------------------------------------------------


def test_config_section_defaults_and_ranges():
    cfg = config_from_dict({})
    assert (cfg.distributed.workers, cfg.distributed.ray_address, cfg.distributed.sync_every) == (0, None, 50)
    with pytest.raises(ConfigError, match="distributed.sync_every"):
        config_from_dict({"distributed": {"sync_every": 0}})
    with pytest.raises(ConfigError, match="distributed.workers"):
        config_from_dict({"distributed": {"workers": -1}})


def test_no_ray_import_without_workers(tmp_path):
    """`import slidepy.cli` and a normal `slidepy train` never import Ray."""
    cfg = copy.deepcopy(TINY)
    cfg["training"]["epochs"] = 1
    cfg["output"]["run_dir"] = str(tmp_path / "run")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = ("import sys\nimport slidepy.cli\nassert 'ray' not in sys.modules\n"
            "from click.testing import CliRunner\n"
            f"r = CliRunner().invoke(slidepy.cli.main, ['train', '--config', {str(tmp_path / 'c.yaml')!r}, "
            "'--no-progress'])\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_ray_address_needs_workers(tmp_path):
    from click.testing import CliRunner

    from slidepy.cli import main

    cfg = copy.deepcopy(TINY)
    cfg["output"]["run_dir"] = str(tmp_path / "run")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "c.yaml"), "--ray-address", "auto"])
    assert r.exit_code == 2 and "--workers" in r.output


def _replica(seed):
    return init_params([(50, 8), (8, 30)], optimizer="adam", seed=seed)


@pytest.mark.parametrize("n_workers", [2, 3])
def test_sync_averages_touched_rows_over_the_workers_that_touched_them(n_workers):
    """After a sync every replica holds, for each row any worker touched, the mean over those
    workers of (weights, m, v) (same for biases); other rows are as they were; all replicas equal."""
    rng = np.random.default_rng(n_workers)
    base = _replica(0)
    replicas, logs = [], []
    for w in range(n_workers):
        layers = _replica(0)
        log = new_touched_log(layers)
        for layer, (rows_seen, biases_seen) in zip(layers, log):
            rows_seen[:] = rng.random(rows_seen.shape[0]) < 0.3
            biases_seen[:] = rng.random(biases_seen.shape[0]) < 0.3
            for arrays, seen in (((layer.weights, layer.weight_m, layer.weight_v), rows_seen),
                                 ((layer.bias, layer.bias_m, layer.bias_v), biases_seen)):
                for a in arrays:
                    a[seen.astype(bool)] = rng.standard_normal(a[seen.astype(bool)].shape).astype(np.float32)
        replicas.append(layers)
        logs.append(log)
    # naive expectation
    expected = []
    for l in range(2):
        per = {}
        for name, flag in (("weights", 0), ("weight_m", 0), ("weight_v", 0), ("bias", 1), ("bias_m", 1),
                           ("bias_v", 1)):
            out = getattr(base[l], name).copy()
            for r in range(out.shape[0]):
                touchers = [w for w in range(n_workers) if logs[w][l][flag][r]]
                if touchers:
                    out[r] = np.mean([getattr(replicas[w][l], name)[r] for w in touchers], axis=0)
            per[name] = out
        expected.append(per)
    sent = [scatter_touched(replicas[w], logs[w], n_workers) for w in range(n_workers)]
    merged = [reduce_shard([sent[w][j] for w in range(n_workers)]) for j in range(n_workers)]
    for w in range(n_workers):
        apply_merged(replicas[w], logs[w], merged)
        assert all(not r.any() and not b.any() for r, b in logs[w])
        for l in range(2):
            for name, want in expected[l].items():
                np.testing.assert_allclose(getattr(replicas[w][l], name), want, rtol=1e-6, atol=1e-7,
                                           err_msg=f"worker {w} layer {l} {name}")
    for w in range(1, n_workers):
        for l in range(2):
            assert np.array_equal(replicas[w][l].weights, replicas[0][l].weights)
    # what travels scales with the touched rows: ~30% here, against the dense figure
    nbytes = sum(payload_bytes(sent[i][j]) for i in range(n_workers) for j in range(n_workers) if i != j) + \
        sum(payload_bytes(m) * (n_workers - 1) for m in merged)
    assert 0 < nbytes < dense_sync_bytes(replicas[0], n_workers)


def test_sync_with_nothing_touched_and_sgd():
    layers = init_params([(20, 4), (4, 6)], optimizer="sgd", seed=1)
    log = new_touched_log(layers)
    before = [l.weights.copy() for l in layers]
    sent = scatter_touched(layers, log, 2)
    merged = [reduce_shard([sent[j], sent[j]]) for j in range(2)]
    apply_merged(layers, log, merged)
    assert all(np.array_equal(a, l.weights) for a, l in zip(before, layers))
    log[1][0][3] = 1
    sent = scatter_touched(layers, log, 2)
    assert len(sent[1][1][1]) == 1  # SGD: weights only, no moments
    merged = reduce_shard([sent[1], sent[1]])
    np.testing.assert_array_equal(merged[1][1][0], layers[1].weights[[3]])


def test_replicas_hold_nothing_out_with_worker_0_after_a_resume_under_another_slice_rule(
        sliced_config, monkeypatch, one_thread):
    """Worker 0 resumes a checkpoint whose run held out 120 samples where this slidepy's rule would
    hold out 60: it holds nothing out from then on (reranker.validation_rows), and the replica it
    hands its state to does the same, with the epoch's batch count that both then step by. The
    workers run here without Ray: they are plain classes that the driver wraps."""
    from slidepy import reranker
    from slidepy.distributed import Worker
    from slidepy.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        Trainer(load_config(sliced_config), progress=False, callbacks=[interrupt_at_step(5)]).fit()
    monkeypatch.setattr(reranker, "VALIDATION_SHARE", 0.05)  # a later version's rule: 60 of the 1,200
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # a worker ignores SIGINT: not this process
    run_dir = sliced_config["output"]["run_dir"]
    lead, replica = (Worker(sliced_config, rank, 2, 1, run_dir, os.getcwd(), None) for rank in (0, 1))
    assert lead.trainer.held_out.shape == replica.trainer.held_out.shape == (60,)
    with pytest.warns(UserWarning, match="held out 120 training samples"):
        position = lead.prepare(resume=True, overwrite=False)
    lead.trainer.run.unlock()
    every_row = -(-1200 // 64)  # 19 batches of 64 (18 with 60 held out)
    assert position["resumed"] and position["held_out"] == 0 and position["local_batches"] == every_row
    assert replica.load(lead.state()) == lead.position()
    assert replica.trainer.held_out is None and replica.local_batches == every_row
    assert replica.trainer.schedule.n_train == 1200


# -- with Ray -------------------------------------------------------------------------------------


def _loopback_only_listeners():
    """Listening TCP sockets of this process and its descendants (GCS, raylet, Ray workers) that
    are not on a loopback address."""
    import psutil

    me = psutil.Process()
    pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
    bad = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            ip = c.laddr.ip.removeprefix("::ffff:")
            if not (ip.startswith("127.") or ip == "::1"):
                bad.append((c.pid, c.laddr))
    return bad, len(pids)


@needs_ray
def test_two_workers_train_sync_checkpoint_and_resume_with_other_worker_counts(tmp_path):
    """2 local workers: metrics carry workers / sync figures, a sync ships less than the dense
    model, Ray listens on loopback only, worker 0's checkpoint is a normal model file; then the
    run resumes with 1 worker and with 3 workers."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(SPARSE)
    raw["output"]["run_dir"] = str(tmp_path / "run")
    listeners = []

    def probe(record):
        if not listeners:
            try:
                listeners.append(_loopback_only_listeners())
            except ImportError:  # psutil is not a dependency: that check is skipped, visibly
                warnings.warn("psutil is not installed: the loopback-only check of Ray's sockets was not made")
                listeners.append(([], 3))

    switch_before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    result = train_distributed(load_config(raw), progress=False, callbacks=(probe,))
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == switch_before  # restored after the run
    assert result["step"] == 2 * 50  # the global batch: as many steps per epoch as one process
    # Two epochs of 1,200 samples over 2,000 labels teach little beyond the frequent labels: P@1
    # is whichever one the model ranks first (0.03 or 0.17, depending on the random streams), so
    # learning is checked by the loss falling (below) and P@1 only against chance.
    assert result["P@1"] > 10 / 2000
    bad, n_procs = listeners[0]
    assert n_procs > 2 and not bad, f"Ray listens beyond loopback: {bad}"
    records = _records(tmp_path / "run")
    start = records[0]
    assert start["event"] == "start" and start["workers"] == 2 and start["threads"] >= 1
    logs = [r for r in records if r["event"] == "log"]
    assert logs and all(r["workers"] == 2 and r["sync_seconds"] > 0 for r in logs)
    assert logs[-1]["loss"] < 0.8 * logs[0]["loss"]
    assert all(0 < r["sync_bytes"] < start["dense_sync_bytes"] for r in logs)
    assert [r["event"] for r in records].count("eval") == 2
    # a normal checkpoint, loadable and scoring like the run's last eval
    last = list_checkpoints(tmp_path / "run")[-1]
    assert last[0] == result["step"]
    _, meta = load_checkpoint(last[1])
    assert meta["engine"]["lr"] == pytest.approx(raw["training"]["lr"])  # workers ran at lr * sqrt(2)
    assert start["lr_scale"] == pytest.approx(2 ** 0.5)
    model = Trainer.load(last[1], load_data_from_config=True)
    assert model.evaluate()["P@1"] == pytest.approx(result["P@1"])

    # resume with 1 worker for one more epoch, then with 3 workers for one more
    raw["training"]["epochs"] = 3
    raw["distributed"]["workers"] = 1
    r1 = train_distributed(load_config(raw), resume=True, progress=False)
    assert r1["step"] == result["step"] + 50
    raw["training"]["epochs"] = 4
    raw["distributed"]["workers"] = 3
    r3 = train_distributed(load_config(raw), resume=True, progress=False)
    assert r3["step"] == r1["step"] + 50
    records = _records(tmp_path / "run")
    assert [r["event"] for r in records].count("resume") == 2
    steps = [r["step"] for r in records if r["event"] == "log"]
    assert steps == sorted(set(steps))


def _write_config(tmp_path, raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "slidepy.cli", "train", *args, "--no-progress"],
                          env=env or _env(), capture_output=True, text=True, timeout=timeout)


@needs_ray
def test_dead_worker_stops_the_run_naming_it_and_the_run_resumes(tmp_path):
    """Worker 1 SIGKILLs itself at step 27: the run ends with one error line naming worker 1 and
    the step, the step-20 checkpoint is intact, and --resume finishes the run from it. The step
    named is the first whose result the driver did not get: 27, or on a loaded machine one or two
    earlier, whose replies were still in flight when the process died (seen once: step 25)."""
    raw = copy.deepcopy(SPARSE)
    raw["output"]["run_dir"] = str(tmp_path / "run")
    config = _write_config(tmp_path, raw)
    env = _env()
    env["SLIDEPY_TEST_KILL_WORKER"] = "1:27"
    out = _cli(["--config", str(config)], env=env)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1, out.stderr[-3000:]
    assert len(errors) == 1 and "worker 1" in errors[0], out.stderr[-3000:]
    assert re.search(r"died at step 2[1-7] ", errors[0]), errors[0]
    assert "step-000000020.npz" in errors[0] and "--resume" in errors[0]
    found = list_checkpoints(tmp_path / "run")
    assert [s for s, _ in found] == [20]
    load_checkpoint(found[-1][1])  # whole and readable
    out = _cli(["--config", str(config), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed" in out.stderr or "step 100" in out.stdout
    records = _records(tmp_path / "run")
    resume = [r for r in records if r["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["step"] == 20
    assert list_checkpoints(tmp_path / "run")[-1][0] == 2 * 50


@needs_ray
@pytest.mark.slow
def test_sigterm_on_the_driver_saves_and_stops_the_group(tmp_path):
    raw = copy.deepcopy(SPARSE)
    raw["training"]["epochs"] = 40
    raw["output"]["run_dir"] = str(tmp_path / "run")
    raw["output"]["checkpoint_every"] = 0
    config = _write_config(tmp_path, raw)
    log = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "slidepy.cli", "train", "--config", str(config), "--no-progress"],
                            env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 500
    while time.time() < deadline and not (metrics.exists() and '"log"' in metrics.read_text()):
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=300)
    log.close()
    text = (tmp_path / "out.txt").read_text()
    assert rc == 128 + signal.SIGTERM, text[-3000:]
    assert "stopped by SIGTERM" in text and "--workers 2" in text
    step = list_checkpoints(tmp_path / "run")[-1][0]
    assert 0 < step < 40 * 50
    raw["training"]["epochs"] = 1 + step // 50
    config = _write_config(tmp_path, raw)
    out = _cli(["--config", str(config), "--resume"])
    assert out.returncode == 0, out.stderr[-3000:]


@needs_ray
@pytest.mark.slow
def test_one_deterministic_worker_matches_the_single_process_run(tmp_path):
    """With one worker the group is the plain trainer plus Ray plumbing: bit-identical weights,
    the learning-rate schedule (warm-up, linear decay) included, and the same re-ranking leaves
    fitted at the end and saved beside them."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(TINY)
    raw["training"].update(deterministic=True, epochs=2, lr_schedule="linear", warmup_steps=5)
    raw["model"]["reranker"] = {"weight": 0.3, "shortlist": 20}
    raw["eval"]["subset"] = 40  # the epoch-end evaluations score a subset; the final one all of it
    raw["output"]["run_dir"] = str(tmp_path / "single")
    single = Trainer(config_from_dict(raw), progress=False)
    single_result = single.fit()
    raw["output"]["run_dir"] = str(tmp_path / "ray")
    raw["distributed"] = {"workers": 1, "sync_every": 7}
    result = train_distributed(load_config(raw), progress=False)
    assert result["step"] == single.step
    assert result["complete"] and single_result["complete"]
    # the same evaluations: a subset at the first epoch's end, the whole set once at the last step
    evals = [(r["step"], r["complete"]) for r in _records(tmp_path / "ray") if r["event"] == "eval"]
    assert evals == [(r["step"], r["complete"]) for r in single.history if r["event"] == "eval"]
    assert evals == [(single.step // 2, False), (single.step, True)]
    assert {k: result[k] for k in ("P@1", "P@3", "P@5")} == {k: single_result[k] for k in ("P@1", "P@3", "P@5")}
    arrays, _ = load_checkpoint(list_checkpoints(tmp_path / "ray")[-1][1])
    for l, layer in enumerate(single.engine.layers):
        np.testing.assert_array_equal(arrays[f"layer{l}.weights"], layer.weights)
    fitted = [(r["event"], r["step"]) for r in _records(tmp_path / "ray") if r["event"] == "reranker"]
    assert fitted == [("reranker", single.step)] and single.model.leaves is not None
    np.testing.assert_array_equal(arrays["reranker.weights"], single.model.leaves.weights)


@needs_ray
@pytest.mark.slow
def test_the_group_skips_evaluations_past_their_share_as_the_trainer_does(tmp_path):
    """eval.max_share on Ray workers: at a share no evaluation fits in, the first one along the run
    (none before it) and the final one run, every other scheduled one is skipped, as in one process."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(TINY)
    raw["training"].update(epochs=2)
    raw["eval"].update(every=1, subset=40, max_share=1e-9)
    raw["output"]["run_dir"] = str(tmp_path / "ray")
    raw["distributed"] = {"workers": 1, "sync_every": 1}
    result = train_distributed(load_config(raw), progress=False)
    evals = [(r["step"], r["complete"]) for r in _records(tmp_path / "ray") if r["event"] == "eval"]
    assert evals == [(1, False), (result["step"], True)]


@needs_ray
def test_a_time_budget_stops_the_group_after_the_round_that_spent_it(tmp_path, capsys):
    """training.time_budget_s ends a distributed run as it ends a single process: the round in
    which the budget ran out is the last, then the final evaluation and checkpoint. Its progress
    bar counts the budget's seconds, not the 2,500 steps planned as a cap."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(SPARSE)
    raw["training"].update(epochs=50, time_budget_s=1e-3, lr_schedule="linear")
    raw["distributed"] = {"workers": 1, "sync_every": 4}
    raw["output"]["run_dir"] = str(tmp_path / "run")
    result = train_distributed(load_config(raw), progress=True)
    assert result["step"] == 4  # one round of sync_every steps, of 50 epochs x 50 planned
    assert result["complete"] and "P@1" in result
    assert list_checkpoints(tmp_path / "run")[-1][0] == 4
    err = capsys.readouterr().err
    assert "s of the time budget" in err and "/2500" not in err


@needs_ray
def test_checkpoints_by_training_seconds_at_round_ends(tmp_path):
    """output.checkpoint_every_s in a distributed run: checked at each round's end (every
    sync_every steps here), as the single process checks it after each step."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(SPARSE)
    raw["training"].update(epochs=1, max_steps=12)
    raw["distributed"] = {"workers": 1, "sync_every": 4}
    raw["output"].update(run_dir=str(tmp_path / "run"), checkpoint_every=0, checkpoint_every_s=1e-9, keep_last=10)
    train_distributed(load_config(raw), progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [4, 8, 12]


def test_a_stop_signal_gets_the_workers_a_grace_then_stops_without_them(tmp_path, monkeypatch):
    """A worker that never answers (a stall, or actors a cluster cannot place) does not hold a
    scheduler's SIGTERM off: after STOP_GRACE_SECONDS the driver stops, naming what the run
    directory keeps; without a signal it waits, and says what for once START_NOTE_SECONDS pass."""
    import slidepy.distributed as dist
    from slidepy.errors import TrainingInterrupted

    class NeverReady:
        calls = 0

        @classmethod
        def wait(cls, refs, num_returns, timeout):
            cls.calls += 1
            if cls.calls == 3:
                stop.append(signal.SIGTERM)
            return [], list(refs)

    monkeypatch.setattr(dist, "STOP_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(dist, "START_NOTE_SECONDS", 0.0)
    stop: list = []
    group = dist._Group(NeverReady, [], tmp_path, "resume with: ...", stop)
    with pytest.raises(TrainingInterrupted, match=r"^stopped by SIGTERM while starting: the workers did not answer "
                                                  r"within 0 s; no checkpoint was written yet; resume with") as info:
        group.get(["ref"], [0], "while starting", waiting="2 workers to start")
    assert info.value.signum == signal.SIGTERM and info.value.checkpoint is None and NeverReady.calls == 3

    class ReadyOnTheFifth:  # a checkpoint being written: it takes what it takes, stop or no stop
        calls = 0

        @classmethod
        def wait(cls, refs, num_returns, timeout):
            cls.calls += 1
            return (list(refs), []) if cls.calls >= 5 else ([], list(refs))

        @staticmethod
        def get(ref):
            return "checkpoints/step-000000040.npz"

    group = dist._Group(ReadyOnTheFifth, [], tmp_path, "resume with: ...", [signal.SIGTERM])
    assert group.get(["ref"], [0], "saving at step 40", grace=False) == ["checkpoints/step-000000040.npz"]


@needs_ray
def test_a_cluster_without_the_cpus_for_the_workers_is_refused_before_any_waits(tmp_path):
    from slidepy.distributed import init_ray, stop_ray, train_distributed

    raw = copy.deepcopy(SPARSE)
    raw["output"]["run_dir"] = str(tmp_path / "run")
    raw["distributed"] = {"workers": 3, "sync_every": 4, "ray_address": "127.0.0.1:1"}  # never dialled: Ray is up
    raw["training"]["threads"] = 1
    ray, started = init_ray(None, num_cpus=2)
    try:
        with pytest.raises(ConfigError, match=r"3 workers of 1 CPU\(s\) each need 3 CPUs; the Ray cluster at "
                                              r"127.0.0.1:1 has 2"):
            train_distributed(load_config(raw), progress=False)
    finally:
        if started:
            stop_ray(ray, local=True)


@needs_ray
def test_a_workers_bad_data_is_the_data_error_not_a_dead_worker(tmp_path):
    from slidepy.distributed import train_distributed
    from slidepy.errors import DataError

    bad = tmp_path / "bad.txt"
    bad.write_text("2 5 3\n0 1:1.0\n1 7:1.0\n")  # feature 7 of 5
    raw = copy.deepcopy(SPARSE)
    raw["data"] = {"train": str(bad), "cache": False}
    raw["distributed"] = {"workers": 1, "sync_every": 4}
    raw["output"]["run_dir"] = str(tmp_path / "run")
    with pytest.raises(DataError, match=rf"^{bad}:3: "):
        train_distributed(load_config(raw), progress=False)


@needs_ray
def test_a_budgeted_run_keeps_its_clocks_and_is_saved_before_its_final_evaluation(tmp_path):
    """The checkpoint holds the driver's clock (rounds' wall time) and the evaluations' seconds,
    so a finished budgeted run resumed trains nothing and does not evaluate again; and a run's
    last checkpoint exists when its final evaluation is reported."""
    from slidepy.distributed import train_distributed

    raw = copy.deepcopy(SPARSE)
    raw["training"].update(epochs=500, time_budget_s=2.0, batch_size=240)  # epochs of 5 steps
    raw["distributed"] = {"workers": 1, "sync_every": 5}
    raw["output"].update(run_dir=str(tmp_path / "run"), checkpoint_every=0)
    raw["eval"].update(every=0, max_share=None, subset=100)  # at every epoch end, on 100 test samples
    first = train_distributed(load_config(raw), progress=False)
    step, path = list_checkpoints(tmp_path / "run")[-1]
    assert step == first["step"]
    meta = load_checkpoint(path)[1]
    assert meta["round_seconds"] >= 2.0  # the budget's clock: spent, which is why the run stopped
    evals_along = [r for r in _records(tmp_path / "run") if r["event"] == "eval" and not r.get("complete")]
    assert evals_along and meta["eval_seconds_along"] == pytest.approx(
        sum(r["eval_seconds"] for r in evals_along), abs=1e-3)
    before = _records(tmp_path / "run")
    again = train_distributed(load_config(raw), resume=True, progress=False)
    assert again["step"] == first["step"] and again["P@1"] == first["P@1"]
    after = _records(tmp_path / "run")[len(before):]
    assert [r["event"] for r in after] == ["resume", "start"]  # no step trained, no evaluation again

    raw["training"].update(epochs=1, time_budget_s=None)  # ends at an epoch end: its final evaluation there
    raw["output"]["run_dir"] = str(tmp_path / "whole")
    saved_at_eval = []

    def on_record(record):
        if record.get("event") == "eval" and record.get("complete"):
            saved_at_eval.append((record["step"], [s for s, _ in list_checkpoints(tmp_path / "whole")]))

    train_distributed(load_config(raw), progress=False, callbacks=(on_record,))
    assert saved_at_eval == [(5, [5])]


@needs_ray
def test_a_local_ray_that_fails_to_start_leaves_the_environment_as_it_was(monkeypatch):
    import ray

    from slidepy.distributed import init_ray

    before = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}

    def no_start(*args, **kwargs):
        raise RuntimeError("no room for Ray here")

    monkeypatch.setattr(ray, "init", no_start)
    had_pyarrow = sys.modules.get("pyarrow", "absent")
    with pytest.raises(RuntimeError, match="no room"):
        init_ray(None, num_cpus=1)
    assert {k: os.environ.get(k) for k in before} == before
    # nor does the broken-pyarrow guard stay: scikit-learn reads sys.modules["pyarrow"] as a module
    assert sys.modules.get("pyarrow", "absent") is had_pyarrow or sys.modules.get("pyarrow") is not None


def test_a_local_start_without_ray_installed_leaves_the_environment_as_it_was(monkeypatch):
    from slidepy.distributed import init_ray
    from slidepy.errors import SlidepyError

    keys = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")
    before = {k: os.environ.get(k) for k in keys}
    had_pyarrow = sys.modules.get("pyarrow", "absent")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SlidepyError, match=r"--workers needs Ray: pip install -e '\.\[ray\]'"):
        init_ray(None)
    assert {k: os.environ.get(k) for k in keys} == before
    assert sys.modules.get("pyarrow", "absent") is had_pyarrow or sys.modules.get("pyarrow") is not None
