"""scripts/bench.py end to end on a tiny generated dataset: results.json fields and results.md.

Runs the real subprocess workers (one per system) with a few short segments; torch joins only
where it imports. About a minute on 2 cores (JIT-cached kernels), hence `slow`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
_spec = importlib.util.spec_from_file_location("bench", _SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

import benchkit  # noqa: E402  (importable once bench.py has put scripts/ on the path)
from benchkit import coldstart, curves, datasets, machine, matrix, processes, report, throughput, worker  # noqa: E402
from benchkit.systems import has_module, shipped_config  # noqa: E402
from benchkit.targets import compute_targets  # noqa: E402


def test_time_to_p1_is_the_first_measured_point_that_reaches_it():
    # no line drawn between evals: 0.4 is first measured at 3 s, not at an interpolated 2 s
    curve = [{"train_seconds": 1.0, "P@1": 0.2}, {"train_seconds": 3.0, "P@1": 0.6}, {"train_seconds": 5.0, "P@1": 0.5}]
    assert curves.time_to_p1(curve, 0.4) == 3.0
    assert curves.time_to_p1(curve, 0.1) == 1.0
    assert curves.time_to_p1(curve, 0.55) == 3.0
    assert curves.time_to_p1(curve, 0.7) is None
    assert curves.time_to_p1(curve, 0.0) is None  # nothing learnt is no target to reach


def test_row_traffic_bytes():
    # 10 active rows x 4 passes + 3 optimizer rows x 8 passes, 128 floats of 4 bytes each
    assert worker.row_traffic_bytes(10, 3) == (10 * 4 + 3 * 8) * 512


def test_traffic_counts_union_rows_on_the_batch_products_path():
    """Per-sample steps stream a row per (sample, neuron) pair; batch-product steps one per union
    row, however many samples share it."""
    import numpy as np

    from slidepy import make_synthetic
    from slidepy.engine import StepStats

    data, _ = make_synthetic(n_train=8, n_test=1, n_features=20, n_labels=30, nnz_per_sample=3,
                             labels_per_sample=(1, 1), seed=0)
    rows = np.arange(8)
    feats = np.unique(data.x_indices).shape[0]
    per_sample = StepStats(loss=0.0, active_mean=np.array([4.0, 10.0]), rows_updated=feats + 12)
    products = StepStats(loss=0.0, active_mean=np.array([4.0, 10.0]), rows_updated=feats + 12, output_union_rows=12)
    got = {}
    for name, stats in (("per_sample", per_sample), ("products", products)):
        traffic = {"bytes": 0.0, "seconds": 0.0, "steps": 0}
        worker.traffic_add(traffic, data, rows, stats, 1.0)
        got[name] = traffic["bytes"]
    opt = worker.row_traffic_bytes(0, 12)
    assert got["per_sample"] == worker.row_traffic_bytes(10 * 8, 0) + opt
    assert got["products"] == worker.row_traffic_bytes(12, 0) + opt


def test_the_bench_knows_every_environment_default_slidepy_sets():
    """Dense PyTorch and the trees run with the user's thread-pool settings: the bench undoes
    exactly the variables slidepy/__init__.py defaults (SLIDEPY_ENV_DEFAULTS)."""
    import re

    init = (Path(benchkit.REPO) / "slidepy" / "__init__.py").read_text()
    assert set(re.findall(r'os\.environ\.setdefault\("([A-Z_]+)"', init)) == set(benchkit.SLIDEPY_ENV_DEFAULTS)


def test_workers_start_with_the_users_environment_plus_slidepys_defaults_for_slidepy(monkeypatch):
    monkeypatch.setattr(processes, "USER_ENV", {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"})
    lsh, torch = processes.worker_env("lsh"), processes.worker_env("torch")
    assert torch == {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"}
    assert lsh["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's value wins
    assert lsh["OPENBLAS_THREAD_TIMEOUT"] == "4"


def test_time_to_p1_single_point():
    # a tree is ready only at the end of its training: no interpolation from zero
    curve = [{"train_seconds": 4.0, "P@1": 0.6}]
    assert curves.time_to_p1(curve, 0.3) == 4.0
    assert curves.time_to_p1(curve, 0.7) is None


def test_p1_at_epoch():
    r = {"epochs": 2.0, "curve": [{"epoch": 0.5, "P@1": 0.2}, {"epoch": 1.0, "P@1": 0.3}, {"epoch": 2.0, "P@1": 0.5}]}
    assert curves.p1_at_epoch(r, 1.0) == (0.3, None)
    v, note = curves.p1_at_epoch(r, 1.5)
    assert v == pytest.approx(0.4) and "interpolated" in note
    v, note = curves.p1_at_epoch(r, 3.0)
    assert v is None and "fewer than 3" in note


def test_time_to_matrix():
    systems = {"lsh": {"P@1": 0.5, "curve": [{"train_seconds": 1.0, "P@1": 0.3}, {"train_seconds": 2.0, "P@1": 0.5}]},
               "pecos": {"P@1": 0.4, "single_point": True, "curve": [{"train_seconds": 3.0, "P@1": 0.4}]},
               "torch": {"error": "boom"}}
    m = curves.time_to_matrix(systems)
    assert set(m) == {"lsh", "pecos"}
    assert m["lsh"]["pecos"] == 2.0  # first measured at 2 s (0.5), not between (1 s, 0.3) and (2 s, 0.5)
    assert m["lsh"]["lsh"] == pytest.approx(2.0)
    assert m["pecos"]["lsh"] is None and m["pecos"]["pecos"] == 3.0


def _curve(points, spe=10):
    """[(epoch, seconds, P@1)] -> eval records."""
    return [{"step": int(round(e * spe)), "epoch": e, "train_seconds": t, "P@1": p, "P@3": p / 2, "P@5": p / 3}
            for e, t, p in points]


def _run(system, points, **kw):
    c = _curve(points)
    last = c[-1]
    return {"system": system, "curve": c, "epochs": last["epoch"], "train_seconds": last["train_seconds"],
            "samples_per_s": kw.pop("sps", 1000.0), "peak_rss_mb": 100.0,
            **{k: last[k] for k in ("P@1", "P@3", "P@5")}, **kw}


def _tree(system, seconds, p1, p5):
    return {"system": system, "single_point": True, "train_seconds": seconds, "epochs": None, "peak_rss_mb": 50.0,
            "samples_per_s": 1e4, "P@1": p1, "P@3": p1 / 2, "P@5": p5,
            "curve": [{"train_seconds": seconds, "P@1": p1, "P@3": p1 / 2, "P@5": p5}]}


def _by_name(targets, fragment, dataset=None):
    rows = [t for t in targets if fragment in t["name"] and (dataset is None or t["dataset"] == dataset)]
    assert len(rows) == 1, (fragment, [t["name"] for t in targets])
    return rows[0]


def test_targets_not_run_when_nothing_ran():
    targets = compute_targets({"datasets": {}})
    assert targets and all(t["status"] == "not run" and t["pass"] is None for t in targets)
    for t in targets:
        assert {"name", "measured", "target", "pass"} <= set(t)


def test_the_quick_starts_recorded_figures_are_read(tmp_path):
    records = [{"event": "start", "compile_seconds": 21.0}, {"event": "eval", "P@1": 0.70},
               {"event": "train", "loss": 3.6}, {"event": "eval", "P@1": 0.743}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert coldstart.quick_start_figures(tmp_path) == {"compile_s": 21.0, "p1": 0.743}
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "train", "loss": 3.6}) + "\n")
    assert coldstart.quick_start_figures(tmp_path) == {"compile_s": None, "p1": None}


@pytest.mark.parametrize("cold, status", [({"wall_s": 24.4, "compile_s": 20.0, "p1": 0.74, "commit": "abc"}, "pass"),
                                          ({"wall_s": 31.5, "compile_s": 26.0, "p1": 0.74, "commit": "abc"}, "fail"),
                                          ({"error": "the quick start failed: boom", "commit": "abc"}, "fail"),
                                          (None, "not run")])
def test_targets_cold_start(cold, status):
    results = {"datasets": {}, **({"cold_start": cold} if cold else {})}
    t = _by_name(compute_targets(results), "Cold quick start")
    assert t["status"] == status and t["goal"] == coldstart.GOAL_SECONDS
    if cold and "wall_s" in cold:
        assert t["measured"] == cold["wall_s"] and "compiling" in t["note"]


@pytest.mark.slow
def test_cold_quick_start_times_a_clean_checkout():
    """The real thing: HEAD exported, the quick start run with an empty JIT cache (every kernel
    compiles: ~25 s on 2 cores)."""
    import subprocess

    cold = coldstart.cold_quick_start()
    assert "error" not in cold, cold
    head = subprocess.run(["git", "-C", str(benchkit.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert cold["commit"] == head
    assert cold["wall_s"] > cold["compile_s"] > 1.0 and cold["p1"] > 0.5


def test_targets_debian_deps():
    # torch: 10 epochs reaching 0.72 at 100 s; slidepy first measures 0.72 or more at 20 s (0.74)
    torch = _run("torch", [(e, 10.0 * e, 0.5 + 0.022 * e) for e in range(1, 11)])
    lsh = _run("lsh", [(1, 10.0, 0.70), (2, 20.0, 0.74)])
    results = {"datasets": {"debian-deps": {"primary": "lsh", "systems": {
        "lsh": lsh, "torch": torch, "omikuji": _tree("omikuji", 30.0, 0.76, 0.41),
        "pecos": _tree("pecos", 10.0, 0.73, 0.42), "random": {"system": "random", "error": "worker exit 1"}}}}}
    targets = compute_targets(results)
    t = _by_name(targets, "DebianDeps: slidepy reaches")
    assert t["status"] == "pass" and t["measured"] == pytest.approx(100.0 / 20.0)
    p1 = _by_name(targets, "P@1 >= max", "debian-deps")
    assert p1["status"] == "fail" and p1["goal"] == 0.76 and p1["measured"] == pytest.approx(0.74)
    p5 = _by_name(targets, "P@5 >= max", "debian-deps")
    assert p5["goal"] == 0.42 and p5["pass"] is False
    tt = _by_name(targets, "training time", "debian-deps")
    assert tt["measured"] == pytest.approx(2.0) and tt["pass"] is True  # 20 s against PECOS's 10 s
    assert _by_name(targets, "DebianNextWord: slidepy reaches")["status"] == "not run"
    # without torch: not run, never pass
    del results["datasets"]["debian-deps"]["systems"]["torch"]
    t = _by_name(compute_targets(results), "DebianDeps: slidepy reaches")
    assert t["status"] == "not run" and t["pass"] is None and "torch did not run" in t["note"]
    # a failed torch run is "not run" too
    results["datasets"]["debian-deps"]["systems"]["torch"] = {"system": "torch", "error": "timed out"}
    t = _by_name(compute_targets(results), "DebianDeps: slidepy reaches")
    assert t["status"] == "not run" and "torch failed" in t["note"]


def test_targets_slidepy_never_reaches():
    torch = _run("torch", [(5, 50.0, 0.6), (10, 100.0, 0.8)])
    lsh = _run("lsh", [(5, 5.0, 0.5), (10, 10.0, 0.7)])
    results = {"datasets": {"debian-deps": {"primary": "lsh", "systems": {"lsh": lsh, "torch": torch}}}}
    t = _by_name(compute_targets(results), "DebianDeps: slidepy reaches")
    assert t["status"] == "fail" and t["measured"] is None and "never reached" in t["note"]
    # by how much: torch first measures lsh's final 0.7 or more at 100 s, lsh at 10 s
    assert "10.00x" in t["note"]
    assert _by_name(compute_targets(results), "P@1 >= max", "debian-deps")["status"] == "not run"


def test_targets_debian_nextword():
    torch = _run("torch", [(0.5, 300.0, 0.10), (1.0, 600.0, 0.15)], sps=700.0)
    lsh = _run("lsh", [(0.5, 20.0, 0.12), (1.0, 40.0, 0.16), (2.0, 80.0, 0.18)], sps=12000.0)
    results = {"datasets": {"debian-nextword": {"primary": "lsh", "systems": {
        "lsh": lsh, "torch": torch, "pecos": _tree("pecos", 70.0, 0.17, 0.3)}}}}
    targets = compute_targets(results)
    t = _by_name(targets, "DebianNextWord: slidepy reaches")
    # torch reaches its own 1-epoch 0.15 at 600 s; slidepy first measures it (0.16) at 40 s
    assert t["measured"] == pytest.approx(600.0 / 40.0) and t["status"] == "pass"
    s = _by_name(targets, "samples/s >= 15x")
    assert s["measured"] == pytest.approx(12000.0 / 700.0) and s["pass"] is True and "accuracy runs" in s["note"]
    # interleaved medians win over the accuracy runs when both systems were measured there
    results["datasets"]["debian-nextword"]["throughput"] = {"threads": [2], "systems": {
        "lsh": {"median_samples_per_s": {"2": 7000.0}}, "torch": {"median_samples_per_s": {"2": 700.0}}}}
    s = _by_name(compute_targets(results), "samples/s >= 15x")
    assert s["measured"] == pytest.approx(10.0) and s["pass"] is False
    assert "accuracy runs 12,000 vs 700 = 17.14x" in s["note"]  # the whole runs, as a cross-check
    pe = _by_name(targets, "1-epoch P@1 > PECOS")
    assert pe["measured"] == pytest.approx(0.16) and pe["pass"] is False  # 0.16 after 1 epoch < PECOS 0.17
    tr = _by_name(targets, "1-epoch P@1 > dense")
    assert tr["goal"] == pytest.approx(0.15) and tr["pass"] is True
    # torch capped before one epoch: its 1-epoch P@1 was never measured, so neither target is
    results["datasets"]["debian-nextword"]["systems"]["torch"] = _run("torch", [(0.5, 300.0, 0.10)])
    capped = compute_targets(results)
    for row in (_by_name(capped, "DebianNextWord: slidepy reaches"), _by_name(capped, "1-epoch P@1 > dense")):
        assert row["status"] == "not run" and "not measured" in row["note"], row


def test_tree_targets_need_both_trees_and_slidepys_whole_run():
    """"The better tree" and "the faster tree" are not measured against one tree alone, nor is a
    slidepy run cut at --max-seconds its whole run: not run, never a pass."""
    lsh = _run("lsh", [(1, 2.0, 0.60), (2, 5.0, 0.64)])
    systems = {"lsh": lsh, "omikuji": _tree("omikuji", 6.0, 0.62, 0.30), "pecos": _tree("pecos", 1.0, 0.66, 0.31)}
    results = {"datasets": {"bibtex": {"primary": "lsh", "systems": systems}}}
    rows = [_by_name(compute_targets(results), f, "bibtex") for f in ("P@1 >= max", "P@5 >= max", "training time")]
    assert [r["status"] for r in rows] == ["fail", "fail", "fail"]  # 0.64 < 0.66, 5 s > 3 x 1 s
    for gone in ({"system": "pecos", "error": "worker exit 1"}, None):
        if gone is None:
            del systems["pecos"]
        else:
            systems["pecos"] = gone
        rows = [_by_name(compute_targets(results), f, "bibtex") for f in ("P@1 >= max", "P@5 >= max", "training time")]
        assert [r["status"] for r in rows] == ["not run"] * 3 and all("pecos" in r["note"] for r in rows), rows
    systems["pecos"] = _tree("pecos", 1.0, 0.66, 0.31)
    systems["lsh"] = dict(lsh, stopped="stopped at 5 training seconds (step 10 of 40)")
    rows = [_by_name(compute_targets(results), f, "bibtex") for f in ("P@1 >= max", "P@5 >= max", "training time")]
    assert [r["status"] for r in rows] == ["not run"] * 3 and all("stopped at 5" in r["note"] for r in rows)


def test_a_slidepy_run_cut_short_that_never_got_there_is_not_measured():
    torch = _run("torch", [(0.5, 300.0, 0.10), (1.0, 600.0, 0.15)], sps=700.0)
    cut = _run("lsh", [(0.25, 20.0, 0.08), (0.5, 40.0, 0.12)], stopped="stopped at 40 training seconds (step 5 of 20)")
    results = {"datasets": {"debian-nextword": {"primary": "lsh", "systems": {"lsh": cut, "torch": torch}}}}
    targets = compute_targets(results)
    for fragment in ("DebianNextWord: slidepy reaches", "1-epoch P@1 > dense"):
        row = _by_name(targets, fragment)
        assert row["status"] == "not run" and "stopped at 40" in row["note"], row
    # reached before the cut: measured all the same
    results["datasets"]["debian-nextword"]["systems"]["lsh"] = _run(
        "lsh", [(0.5, 20.0, 0.12), (1.0, 40.0, 0.16)], stopped="stopped at 40 training seconds (step 20 of 40)")
    row = _by_name(compute_targets(results), "DebianNextWord: slidepy reaches")
    assert row["status"] == "pass" and row["measured"] == pytest.approx(600.0 / 40.0)


def test_figures_that_are_not_numbers_are_not_run_and_null_in_results_json():
    torch = _run("torch", [(5, 50.0, float("nan")), (10, 100.0, float("nan"))], sps=float("nan"))
    lsh = _run("lsh", [(5, 5.0, 0.5), (10, 10.0, 0.7)])
    results = {"datasets": {"debian-deps": {"primary": "lsh", "systems": {"lsh": lsh, "torch": torch}},
                            "debian-nextword": {"primary": "lsh", "systems": {"lsh": lsh, "torch": torch}}}}
    targets = compute_targets(results)
    assert _by_name(targets, "DebianDeps: slidepy reaches")["status"] == "not run"
    assert _by_name(targets, "samples/s >= 15x")["status"] == "not run"
    results["targets"] = targets
    results["datasets"]["debian-deps"]["systems"]["lsh"]["rss"] = np.float32("inf")
    results["datasets"]["debian-deps"]["systems"]["lsh"]["series"] = np.array([1.0, np.nan])
    text = report.results_json(results)
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["datasets"]["debian-deps"]["systems"]["torch"]["P@1"] is None
    assert back["datasets"]["debian-deps"]["systems"]["lsh"]["series"] == [1.0, None]


def test_the_torch_baseline_trains_the_configs_network(tmp_path):
    """The dense baseline gets every hidden layer, dropout, init, the resolved input scale, Adam's
    settings and the learning rate's warm-up and schedule of the config it stands beside."""
    from slidepy import load_config, make_synthetic
    from slidepy.model import input_scale_for

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model:\n  hidden: [32, 16]\n  dropout: 0.2\n  init: he\n  input_scale: auto\n"
                        "training:\n  lr: 0.004\n  warmup_steps: 7\n  lr_schedule: linear\n  beta2: 0.99\n"
                        "  weight_decay: 0.01\n")
    cfg = load_config(str(cfg_file))
    train, _ = make_synthetic(50, 5, 30, 20, nnz_per_sample=4, seed=0)
    train = dataclasses.replace(train, x_values=train.x_values * np.float32(0.05))  # rows of norm 0.05
    runner = worker.TorchRunner.__new__(worker.TorchRunner)
    runner.train = train
    runner.params = set(inspect.signature(_torch_baseline_signature()).parameters)
    runner.spec = {"batch_size": 16, "lr": 0.004, "hidden": [32, 16], "dropout": 0.2, "lr_schedule": "linear",
                   "network": matrix.network_settings(cfg)}
    kw = runner._kwargs(epochs=1)
    assert kw["hidden"] == [32, 16] and kw["dropout"] == 0.2 and kw["init"] == "he"
    assert kw["lr_warmup_steps"] == 7 and kw["lr_schedule"] == "linear" and kw["betas"] == [0.9, 0.99]
    assert kw["weight_decay"] == 0.01 and kw["input_scale"] == input_scale_for(train) != 1.0
    json.dumps(runner.spec)  # the spec travels to the worker as JSON


def _torch_baseline_signature():
    spec = importlib.util.spec_from_file_location("torch_baseline", benchkit.REPO / "scripts" / "torch_baseline.py")
    tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tb)
    return tb.train_torch


def test_throughput_segments_keep_the_learning_rate_of_the_runs_start(tmp_path):
    """A throughput worker's runner plans no end: past the config's planned steps a linear
    schedule would otherwise have decayed to 0."""
    from slidepy import make_synthetic

    train, test = make_synthetic(64, 8, 50, 40, nnz_per_sample=4, seed=0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  hidden: [8]\ntraining:\n  epochs: 1\n  batch_size: 32\n  lr: 0.002\n"
                   "  lr_schedule: linear\n")
    runner = worker.serve_runner("lsh", train, test, {"threads": 1, "config_path": str(cfg)})
    try:
        assert runner.trainer.schedule.planned_steps == 2
        for _ in range(6):
            runner.step()
        assert runner.trainer.engine.lr == pytest.approx(0.002, rel=1e-6)
    finally:
        runner.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_a_workers_peak_rss_is_its_own_not_its_parents():
    """On Linux ru_maxrss survives fork+exec: a worker started by a process that had grown larger
    would report the parent's peak. peak_rss_mb reads the worker's own high-water mark."""
    import subprocess
    import sys

    ballast = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    assert worker.peak_rss_mb() >= 400
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from benchkit.worker import peak_rss_mb; "
            "print(peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code, str(benchkit.REPO / "scripts")], capture_output=True,
                         text=True, check=True)
    assert float(out.stdout.strip()) < 300, out.stdout
    del ballast


def test_torch_segment_skips_the_cold_steps():
    # A fresh dense model per segment: its first TORCH_COLD_STEPS steps are untimed, and the
    # segment's size comes from a calibration run that skips them too.
    calls = []

    class FakeBaseline:
        @staticmethod
        def train_torch(train, test, *, epochs, max_steps, threads, eval_every_steps, time_budget_s, warmup_steps,
                        hidden, batch_size, lr, seed):
            calls.append((max_steps, warmup_steps))
            return {"samples_per_s": 640.0, "steps": max_steps}

    runner = worker.TorchRunner.__new__(worker.TorchRunner)
    runner.tb, runner.train, runner.test, runner.step_time = FakeBaseline, None, None, {}
    runner.spec = {"batch_size": 128, "lr": 1e-3, "hidden": [64]}
    runner.params = {"epochs", "max_steps", "threads", "eval_every_steps", "time_budget_s", "warmup_steps",
                     "hidden", "batch_size", "lr", "seed"}
    res = runner.segment(2, seconds=2.0, min_steps=1)
    cold = worker.TORCH_COLD_STEPS
    assert cold >= 3 and all(w == cold for _, w in calls)
    # 640 samples/s at batch 128 is 0.2 s a step: 2 s of segment is 10 timed steps after the cold ones
    assert calls[-1][0] == cold + 10 and res["steps"] == 10 and res["samples_per_s"] == 640.0


def test_throughput_rounds_run_every_thread_count(monkeypatch):
    # Each round runs every thread count, so 1 and 2 threads meet the same phase of training.
    asked = []

    class FakeServer:
        error = None

        def __init__(self, spec, spec_dir):
            self.system, self.hello = spec["system"], {"n_labels": 10, "compile_seconds": 0.0}

        def ask(self, req):
            asked.append((self.system, req["threads"]))
            return {"samples_per_s": 100.0 * req["threads"] * (2 if self.system == "lsh" else 1), "steps": 3}

        def close(self):
            return {"peak_rss_mb": 1.0}

    monkeypatch.setattr(throughput, "Server", FakeServer)
    out = throughput.run_throughput({"name": "x"}, ["lsh", "torch"], {}, [1, 2], 2, 0.1, "", None)
    assert asked == [("lsh", 1), ("torch", 1), ("lsh", 2), ("torch", 2)] * 2
    segs = out["systems"]["lsh"]["segments"]
    assert [g["round"] for g in segs["1"]] == [1, 2] and [g["order"] for g in segs["2"]] == [2, 6]
    assert out["ratios"]["lsh/torch"] == pytest.approx(2.0)
    assert out["scaling"]["lsh"]["efficiency_1_2"] == pytest.approx(1.0)


def _segment(samples, step_s, rebuild_s, rebuilds):
    seconds = step_s + rebuild_s
    return {"samples_per_s": samples / seconds, "seconds": seconds, "steps": samples // 128,
            "timings": {"step": step_s, "rebuild": rebuild_s}, "rebuilds": rebuilds}


def test_amortised_scaling_charges_rebuilds_at_the_runs_rate():
    # Steps cost 10 us a sample at 1 thread and 6 at 2; a rebuild 2 s at 1 thread and 1.25 at 2.
    # The rebuilds fall unevenly (two in the 2-thread segments, one in the 1-thread ones), so the
    # medians of segment rates mislead; priced at the run's 3 rebuilds per 2.2M samples they do not.
    one = [_segment(400_000, 4.0, 2.0, 1), _segment(400_000, 4.0, 0.0, 0), _segment(400_000, 4.0, 0.0, 0)]
    two = [_segment(200_000, 1.2, 1.25, 1), _segment(400_000, 2.4, 1.25, 1), _segment(400_000, 2.4, 0.0, 0)]
    got = throughput.amortised_scaling({"1": one, "2": two})
    assert got["rebuilds"] == "priced"
    per_sample = 3 / 2_200_000
    cost1, cost2 = 10e-6 + per_sample * 2.0, 6e-6 + per_sample * 1.25
    assert got["samples_per_s"]["1"] == pytest.approx(1 / cost1)
    assert got["samples_per_s"]["2"] == pytest.approx(1 / cost2)
    assert got["speedup"]["steps"]["2"] == pytest.approx(10 / 6) and got["speedup"]["rebuild"]["2"] == pytest.approx(1.6)
    assert got["rebuilds_per_1k_samples"] == pytest.approx(per_sample * 1000)

    # no rebuild in the 1-thread segments: nothing to price them with, so the steps' costs alone
    unpriced = throughput.amortised_scaling({"1": one[1:], "2": two})
    assert unpriced["rebuilds"].startswith("unpriced") and "1-thread" in unpriced["rebuilds"]
    assert unpriced["samples_per_s"]["2"] == pytest.approx(1 / 6e-6)
    # no rebuild anywhere: index seconds without one (refreshes) are charged per sample
    none = throughput.amortised_scaling({"1": [_segment(100_000, 1.0, 0.1, 0)], "2": [_segment(100_000, 0.5, 0.1, 0)]})
    assert none["rebuilds"] == "none" and none["samples_per_s"]["2"] == pytest.approx(100_000 / 0.6)
    # dense PyTorch's segments carry no timings: the medians stand
    assert throughput.amortised_scaling({"1": [{"samples_per_s": 5.0, "steps": 3}]}) is None


def test_throughput_efficiency_is_amortised_where_segments_count_rebuilds(monkeypatch):
    class FakeServer:
        error = None

        def __init__(self, spec, spec_dir):
            self.hello, self.n = {"n_labels": 10, "compile_seconds": 0.0}, 0

        def ask(self, req):
            self.n += 1
            # steps scale perfectly and so do rebuilds (8 s at 1 thread, 4 at 2), but every 2-thread
            # segment holds one and only the first 1-thread segment does: the medians read 0.11
            if req["threads"] == 1:
                return _segment(1000, 1.0, 8.0 if self.n == 1 else 0.0, 1 if self.n == 1 else 0)
            return _segment(1000, 0.5, 4.0, 1)

        def close(self):
            return {"peak_rss_mb": 1.0}

    monkeypatch.setattr(throughput, "Server", FakeServer)
    out = throughput.run_throughput({"name": "x"}, ["lsh"], {}, [1, 2], 3, 0.1, "", None)
    sc = out["scaling"]["lsh"]
    rate = 4 / 6000  # 4 rebuilds in 6,000 samples
    assert sc["efficiency_1_2"] == pytest.approx((1e-3 + rate * 8.0) / (0.5e-3 + rate * 4.0) / 2)
    assert sc["steps_efficiency_1_2"] == pytest.approx(1.0) and sc["rebuild_efficiency_1_2"] == pytest.approx(1.0)
    assert sc["median_efficiency_1_2"] == pytest.approx(1000 / 4.5 / (1000 / 1.0) / 2)
    assert sc["rebuilds"] == "priced"
    targets = compute_targets({"memory_bandwidth": {}, "datasets": {"amazon670k": {"systems": {}, "throughput": out}}})
    note = _by_name(targets, "efficiency")["note"]
    assert "ratio of median segment rates" in note and "rebuilds charged at the run's rate" in note
    out["scaling"]["lsh"]["rebuilds"] = "unpriced: no rebuild in the 1-thread segments"
    targets = compute_targets({"memory_bandwidth": {}, "datasets": {"amazon670k": {"systems": {}, "throughput": out}}})
    assert "steps alone, no rebuild charged" in _by_name(targets, "efficiency")["note"]


def test_targets_amazon670k():
    results = {"memory_bandwidth": {"copy_GBps": 10.0}, "datasets": {"amazon670k": {"primary": "lsh", "systems": {
        "lsh": {"P@1": 0.1, "peak_rss_mb": 3000.0, "curve": []}}, "throughput": {
        "threads": [1, 2], "scaling": {"lsh": {"sps1": 1000.0, "sps2": 1800.0, "efficiency_1_2": 0.9}},
        "systems": {"lsh": {"median_samples_per_s": {"1": 1000.0, "2": 1800.0}, "row_traffic_GBps": 4.0},
                    "torch": {"median_samples_per_s": {"1": 40.0, "2": 60.0}}}}}}}
    targets = compute_targets(results)
    assert _by_name(targets, "at 1 thread")["measured"] == pytest.approx(25.0)
    assert _by_name(targets, "at 1 thread")["pass"] is False
    assert _by_name(targets, "efficiency")["pass"] is True
    bw = _by_name(targets, "copy bandwidth")
    assert bw["measured"] == pytest.approx(40.0) and bw["pass"] is False and "one-thread copy" in bw["note"]
    # the traffic was measured at 2 threads: a copy on 2 threads is what it is set against
    results["memory_bandwidth"]["copy_GBps_by_threads"] = {"1": 10.0, "2": 16.0}
    bw = _by_name(compute_targets(results), "copy bandwidth")
    assert bw["measured"] == pytest.approx(25.0) and "a copy on 2 thread(s)" in bw["note"]
    assert _by_name(targets, "peak RSS")["pass"] is True
    del results["datasets"]["amazon670k"]["throughput"]["systems"]["torch"]
    assert _by_name(compute_targets(results), "at 1 thread")["status"] == "not run"


def test_csr_helpers():
    sp = pytest.importorskip("scipy.sparse")
    import numpy as np

    class D:
        n_samples, n_features, n_labels = 3, 4, 5
        x_indptr = np.array([0, 2, 2, 3], np.int64)
        x_indices = np.array([0, 3, 1], np.int32)
        x_values = np.array([3.0, 4.0, 2.0], np.float32)
        y_indptr = np.array([0, 1, 3, 3], np.int64)
        y_indices = np.array([4, 0, 2], np.int32)

    x = worker.csr_features(D, normalize=True).toarray()
    np.testing.assert_allclose(x, [[0.6, 0, 0, 0.8], [0, 0, 0, 0], [0, 1, 0, 0]], rtol=1e-6)
    y = worker.csr_labels(D).toarray()
    assert y.sum() == 3 and y[0, 4] == 1 and y[1, 0] == 1 and y[1, 2] == 1
    top = worker.top5_from_csr(sp.csr_matrix(np.array([[0.1, 0.9, 0, 0.5, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0.2]])))
    assert top[0].tolist() == [1, 3, 0, -1, -1] and top[1].tolist() == [6, -1, -1, -1, -1]


def test_real_path_walks_up(tmp_path):
    assert datasets._real_path("../shared/data/X/train.txt", data_root=str(tmp_path)) == tmp_path / "X" / "train.txt"
    p = datasets._real_path("configs/quickstart.yaml")
    assert p == benchkit.REPO / "configs" / "quickstart.yaml"


def test_config_overrides_keep_the_shipped_config():
    from slidepy import load_config

    path = str(benchkit.REPO / "configs" / "debian-deps.yaml")
    base = load_config(path)
    cfg = shipped_config(path, base.model.output.selection.mode, threads=2)
    assert cfg.model == base.model  # as shipped: only threads, eval and checkpoints change
    assert cfg.training.lr == base.training.lr and cfg.training.threads == 2
    assert cfg.output.checkpoint_every == 0
    rnd = shipped_config(path, "random", threads=1)
    assert rnd.model.output.selection.mode == "random"
    assert rnd.model.output.selection.budget == base.model.output.selection.budget


def _tiny_accuracy_run(tmp_path, model_extra: str = "", tail: str = "") -> dict:
    """The bench's accuracy run of a 16-unit `all` network, one epoch on 64 generated samples of
    12 labels; `model_extra` joins the config's model section, `tail` its end."""
    from slidepy import make_synthetic

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model:\n  hidden: [16]\n  output:\n    selection:\n      mode: all\n" + model_extra
                   + "training:\n  epochs: 1\n  batch_size: 32\n  lr: 0.01\n  log_every: 5\n" + tail)
    train, test = make_synthetic(n_train=64, n_test=16, n_features=30, n_labels=12, nnz_per_sample=4,
                                 labels_per_sample=(1, 2), seed=0)
    return worker._accuracy_slidepy("all", train, test, {"threads": 1, "config_path": str(cfg), "epochs": 1,
                                                         "evals": 1})


def test_the_bench_scores_p_at_1_3_and_5_whatever_the_config_asks(tmp_path):
    """configs/mnist.yaml evaluates P@1 alone (10 classes); the bench reports P@1 / P@3 / P@5 for
    every system, so a shipped config's run must score all three (its runs once failed on P@3)."""
    mnist = shipped_config(str(benchkit.REPO / "configs" / "mnist.yaml"), "all", threads=1)
    assert list(mnist.eval.k) == [1, 3, 5]
    out = _tiny_accuracy_run(tmp_path, tail="eval:\n  k: [1]\n")
    assert sorted(out["curve"][-1]) == ["P@1", "P@3", "P@5", "epoch", "step", "train_seconds"]
    # on 1-2 labels a sample, P@3 is at most 2/3 and P@5 at most 2/5
    assert 0.0 < out["P@3"] <= 2 / 3 and 0.0 < out["P@5"] <= 2 / 5


def test_the_bench_ends_a_run_with_its_leaves_on_the_clock(tmp_path):
    """A config with model.reranker ends as `slidepy train` ends it: the leaves are fitted for the
    final weights, their seconds join the training time, and the last curve point is re-ranked."""
    out = _tiny_accuracy_run(tmp_path, model_extra="  reranker:\n    weight: 0.3\n")
    before, last = out["curve"][-2], out["curve"][-1]
    assert last["reranked"] and last["step"] == before["step"] and out["leaves_seconds"] > 0
    assert last["train_seconds"] == pytest.approx(before["train_seconds"] + out["leaves_seconds"])
    assert out["train_seconds"] == last["train_seconds"] and out["P@1"] == last["P@1"]


@pytest.mark.slow
def test_bench_tiny_end_to_end(tmp_path):
    # lsh from a config file (the path a shipped config takes), random and all from the bench's
    # own settings; the trees and torch join where they import
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model:\n  hidden: [32]\n  output:\n    selection:\n      mode: lsh\n      budget: 128\n"
        "training:\n  epochs: 2\n  batch_size: 64\n  lr: 0.002\n  log_every: 5\n")
    systems = ["lsh", "all", "random"] + [s for s in ("omikuji", "pecos") if has_module(s)]
    opts = bench.build_parser().parse_args([
        "--out", str(tmp_path / "out"), "--datasets", "tiny", "--systems", ",".join(systems), "--n-train", "600",
        "--evals", "2", "--repeats", "2", "--segment-seconds", "0.2", "--threads", "1,2",
        "--no-bandwidth", "--no-cold-start", "--config", f"tiny={cfg}"])
    matrix.run_benchmark(opts)
    out = tmp_path / "out"
    res = json.loads((out / "results.json").read_text())
    entry = res["datasets"]["tiny"]
    assert entry["primary"] == "lsh" and entry["run"]["epochs"] == 2 and entry["run"]["hidden"] == [32]
    # the floor every P@1 is read against: always predicting the most frequent training label
    train, test = datasets.load_bench_data(entry["spec"])
    popular = np.bincount(train.y_indices, minlength=train.n_labels).argmax()
    popularity = np.mean([popular in test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]]
                          for i in range(test.n_samples)])
    md = (out / "results.md").read_text()

    def in_table(system, cell):  # a row of the systems' table shows this cell
        return any(line.startswith(f"| {system} ") and f" | {cell} | " in line for line in md.splitlines())

    for s in systems:
        r = entry["systems"][s]
        assert "error" not in r, r
        for key in ("P@1", "P@3", "P@5", "train_seconds", "samples_per_s", "peak_rss_mb", "curve"):
            assert key in r, (s, key)
        assert r["popularity_P@1"] == pytest.approx(popularity, abs=1e-12) and r["peak_rss_mb"] > 0 and r["curve"]
        # the headline is the last evaluation's, on every sample of the (cut) test set, and the table shows it
        assert r["P@1"] == r["curve"][-1]["P@1"] and in_table(s, f"{r['P@1']:.4f}")
    for s in ("lsh", "all", "random"):
        r = entry["systems"][s]
        # slidepy's systems time their kernels' compile (torch and the trees have none): in the table
        assert isinstance(r["compile_seconds"], float) and len(r["active_mean"]) == 2
        assert in_table(s, f"{r['compile_seconds']:.1f}")
        assert set(r["time_share"]) == {"kernel", "optimizer", "rebuild", "index_build", "other"}
        assert r["epochs"] == pytest.approx(2.0) and r["curve"][-1]["epoch"] == pytest.approx(2.0)
        assert any(abs(p["epoch"] - 1.0) < 1e-9 for p in r["curve"])  # every epoch end is evaluated
    assert entry["systems"]["lsh"]["active_mean"][1] <= 128  # the config's budget, not the bench's
    assert "tiny.yaml as shipped" in entry["configs"]["lsh"]
    for t in ("omikuji", "pecos"):
        if t in systems:
            assert entry["systems"][t]["single_point"] and len(entry["systems"][t]["curve"]) == 1
            # the trees learn this set in their one pass (measured 0.60 / 0.57 against popularity 0.25;
            # the networks' 2 short epochs stay near popularity, 0.20-0.22, so no floor for them)
            assert entry["systems"][t]["P@1"] > popularity + 0.15
    assert set(entry["time_to_p1"]) == set(systems)
    tp = entry["throughput"]
    neural = ["lsh", "all", "random"]
    for s in neural:
        med = tp["systems"][s]["median_samples_per_s"]
        assert set(med) == {"1", "2"} and all(v > 0 for v in med.values())
        assert len(tp["systems"][s]["segments"]["2"]) == 2
    assert {"lsh/all", "lsh/random"} <= set(tp["ratios"])
    assert "efficiency_1_2" in tp["scaling"]["lsh"]
    assert tp["systems"]["lsh"]["row_traffic_GBps"] > 0
    targets = res["targets"]
    assert targets and all(t["status"] == "not run" for t in targets)  # tiny is none of the targets' datasets
    assert "## Targets" in md and "| target |" in md and "not run" in md
    assert "| system |" in md and "## tiny" in md and "reach each system's final P@1" in md
    for s in systems:
        assert f"| {s}" in md
    if has_module("matplotlib"):
        assert (out / "curve-tiny.png").stat().st_size > 0 and entry["curve_png"] == "curve-tiny.png"


def test_ceiling_vector_probe_adds_the_rows_it_names():
    import numpy as np

    rng = np.random.default_rng(1)
    rows = rng.random((30, 16), dtype=np.float32)
    ids = rng.integers(0, 30, (2, 7))
    scale = rng.random(7, dtype=np.float32)
    outs = np.zeros((2, 16), np.float32)
    vector_work, _ = machine.ceiling_kernels()
    vector_work(rows, ids, scale, outs, 3)
    expect = 3 * np.stack([(scale[:, None] * rows[ids[t]]).sum(axis=0) for t in range(2)])
    np.testing.assert_allclose(outs, expect, rtol=1e-5)


def test_machine_ceiling_is_relative_to_the_first_count_and_reported():
    ceiling = machine.machine_ceiling([1, 2], seconds=0.02)
    assert set(ceiling) == {"vector_fma", "scalar"}
    for effs in ceiling.values():
        assert effs["1"] == 1.0 and set(effs) == {"1", "2"} and 0.0 < effs["2"] < 10.0
    md = report.render_markdown({
        "settings": {"threads": [1, 2], "repeats": 1, "segment_seconds": 1.0, "quick": True},
        "machine": {"platform": "test", "python": "3", "cpus": 2, "numba_threads": 2}, "started": "now",
        "datasets": {}, "machine_ceiling": {**ceiling, "wall_seconds": 1.0}})
    line = next(x for x in md.splitlines() if x.startswith("Machine ceiling"))
    assert f"vector_fma 1 thr 1.00, 2 thr {ceiling['vector_fma']['2']:.2f}" in line and "wall_seconds" not in line


def test_ceiling_worker_answers_on_the_protocol(capsys):
    assert worker.worker_main(json.dumps({"system": "ceiling", "mode": "ceiling", "threads": [1]})) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(benchkit.MARK))
    assert json.loads(line[len(benchkit.MARK):])["result"] == {"vector_fma": {"1": 1.0}, "scalar": {"1": 1.0}}


def test_memory_bandwidth_copies_on_each_thread_count():
    bw = machine.memory_bandwidth(8 * 2**20, repeats=2, threads=(1, 2))
    assert set(bw["copy_GBps_by_threads"]) == {"1", "2"} and all(v > 0 for v in bw["copy_GBps_by_threads"].values())
    assert bw["copy_GBps"] > 0 and bw["bytes"] == 8 * 2**20


def test_slidepy_training_seconds_hold_its_first_index_build():
    """The trees' timings hold their index builds; slidepy's hold the index's first build too."""
    from slidepy import make_synthetic

    train, test = make_synthetic(200, 50, 100, 300, nnz_per_sample=5, seed=0)
    runner = worker.SlidepyRunner("lsh", train, test, {"threads": 1, "lr": 0.001, "batch_size": 32, "hidden": [16]})
    try:
        assert runner.engine.index_build_seconds > 0
        assert runner.train_seconds == runner.engine.index_build_seconds  # before any step
        runner.step()
        assert runner.train_seconds > runner.engine.index_build_seconds
    finally:
        runner.close()
    # the result's seconds are the curve's clock: the last point is the run's end
    out = worker._accuracy_slidepy("lsh", train, test, {"threads": 1, "lr": 0.001, "batch_size": 32, "hidden": [16],
                                                        "epochs": 1, "evals": 1})
    assert out["train_seconds"] == out["curve"][-1]["train_seconds"]
    assert out["time_share"]["index_build"] > 0 and sum(out["time_share"].values()) == pytest.approx(1.0)
