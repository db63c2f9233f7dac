#!/usr/bin/env python
"""slidepy benchmark suite: slidepy LSH / all / random against a dense PyTorch baseline.

    python scripts/bench.py --out bench                 # the full matrix (make bench)
    python scripts/bench.py --out bench --quick         # tiny sizes, checks the plumbing (make bench-quick)
    python scripts/bench.py --datasets amazon670k,bibtex --systems lsh,all,torch --n-train 20000

Writes <out>/results.json (every number), <out>/results.md (Markdown tables, pass/fail against the
targets) and <out>/curve.png (P@1 against training seconds; skipped with a note if matplotlib is
missing).

How each figure is measured
---------------------------
* Every system runs in its own subprocess (`bench.py --worker SPEC.json`), so the peak RSS
  (getrusage ru_maxrss) is that system's alone.
* Accuracy runs (one worker per system and dataset, one after another): a fixed number of epochs
  (or steps), exact evaluation (every label scored) on the same first `eval_subset` test samples
  for every system, at `evals` points along the run. They give P@1/P@5, the P@1-vs-training-time
  curve (time to a stated P@1), the JIT compile seconds, peak RSS and, for slidepy, the mean
  active neurons per layer and the share of training time in the kernel (select + hash + forward
  + backward), the optimizer, and LSH table rebuilds. Training time excludes evaluation and JIT
  compilation and includes table rebuilds. The slidepy loop is Trainer.fit's own: the runner
  calls Trainer.train_step (epoch order, train step, scheduled rebuild) and Trainer.evaluate.
* Throughput (samples/s) is measured interleaved: one long-lived worker per system, and the
  parent asks them in turn (A, B, C, A, B, C, ...) for a timed segment of `segment_seconds` of
  training, `repeats` rounds per thread count. Reported: the median per system and the ratios of
  the medians. Other jobs on a shared machine slow every system alike within a round.
* Memory bandwidth: a large NumPy copy (median of a few) against slidepy lsh's achieved
  output-layer weight-row traffic during its throughput segments (see `row_traffic_bytes`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import inspect
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MARK = "@@BENCH "  # prefix of the worker's protocol lines on stdout
HIDDEN = 128
NEURAL = ("lsh", "all", "random", "torch")
ALL_SYSTEMS = NEURAL + ("omikuji",)

# -------------------------------------------------------------------------------------------------
# Datasets
# -------------------------------------------------------------------------------------------------

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
}
DEFAULT_DATASETS = ("amazon670k", "delicious200k", "bibtex", "delicious", "mnist")


def _real_path(rel: str) -> Path:
    return (REPO / rel).resolve()


def dataset_available(name: str) -> str | None:
    """None if the dataset can be used, else the reason it cannot."""
    if name in SYNTHETIC_SHAPES:
        return None
    if name not in REAL_PATHS:
        return f"unknown dataset {name!r}"
    for rel in REAL_PATHS[name]:
        if not _real_path(rel).exists():
            return f"{rel} not found"
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
        tr, te = REAL_PATHS[name]
        cache_dir = dspec.get("cache_dir")
        train = slidepy.load_dataset(_real_path(tr), cache_dir=cache_dir)
        test = slidepy.load_dataset(_real_path(te), cache_dir=cache_dir, n_features=train.n_features,
                                    n_labels=train.n_labels)
        if dspec.get("n_train") and dspec["n_train"] < train.n_samples:
            train = train.subset(np.arange(int(dspec["n_train"])))
    subset = dspec.get("eval_subset")
    if subset and subset < test.n_samples:
        test = test.subset(np.arange(int(subset)))
    return train, test


# -------------------------------------------------------------------------------------------------
# System configs
# -------------------------------------------------------------------------------------------------

def lsh_settings(n_labels: int) -> dict:
    """The output-layer selection used by `lsh` (and the budget `random` gets).

    Large label sets: configs/amazon670k.yaml's choice: 512 active (0.08% of 670,091; the optimizer
    cost grows with the rows a batch touches), SRP K=12, L=50, 2^12 buckets of 64, reservoir
    inserts. Small label sets: 1/8 of the labels (at least 32), K from the label count, L=16.
    Both keep lsh.random_share at its default (a quarter of the non-label budget to uniform
    negatives).
    """
    if n_labels >= 50_000:
        return {"budget": 512, "min_active": 0,
                "lsh": {"family": "srp", "k": 12, "l": 50, "range_pow": 12, "bucket_capacity": 64,
                        "insert": "reservoir",
                        "rebuild": {"initial_interval": 100, "decay": 1.3, "max_interval": 2000}}}
    budget = min(n_labels, max(32, n_labels // 8))
    k = int(min(10, max(4, round(math.log2(max(2, n_labels / 16))))))
    l, cap = 16, 64
    return {"budget": budget, "min_active": min(500, budget // 4),
            "lsh": {"family": "srp", "k": k, "l": l, "range_pow": k, "bucket_capacity": cap,
                    "rebuild": {"initial_interval": 50, "decay": 1.1, "max_interval": 1000}}}


def slidepy_config(system: str, n_labels: int, *, lr: float, batch_size: int, threads: int, seed: int):
    from slidepy.config import config_from_dict

    s = lsh_settings(n_labels)
    if system == "lsh":
        sel = {"mode": "lsh", "budget": s["budget"], "min_active": s["min_active"], "inference": "exact",
               "lsh": s["lsh"]}
    elif system == "random":  # sampled softmax: labels + uniform negatives, same budget as lsh
        sel = {"mode": "random", "budget": s["budget"], "min_active": s["min_active"]}
    elif system == "all":
        sel = {"mode": "all"}
    else:
        raise ValueError(system)
    return config_from_dict({
        "model": {"hidden": [HIDDEN], "output": {"selection": sel}, "loss": "softmax"},
        "training": {"batch_size": batch_size, "lr": lr, "optimizer": "adam", "seed": seed, "threads": threads,
                     "epochs": 1, "log_every": 10**6},
        "eval": {"every": 10**9, "subset": None, "k": [1, 3, 5], "recall_samples": 0},
        "output": {"checkpoint_every": 0, "keep_last": 1},
    })


def describe_system(system: str, n_labels: int) -> str:
    s = lsh_settings(n_labels)
    if system == "lsh":
        l = s["lsh"]
        return (f"srp K={l['k']} L={l['l']} 2^{l['range_pow']}x{l['bucket_capacity']} budget {s['budget']} "
                f"min {s['min_active']}, rebuild {l['rebuild']['initial_interval']}x{l['rebuild']['decay']}, "
                f"{int(l.get('random_share', 0.25) * 100)}% uniform negatives, corrected")
    if system == "random":
        return f"uniform negatives, budget {s['budget']} min {s['min_active']}, corrected"
    if system == "all":
        return "exact (every label)"
    if system == "torch":
        return "dense full softmax (scripts/torch_baseline.py)"
    if system == "omikuji":
        return "omikuji default (Parabel-like trees)"
    return ""


def _import_torch_baseline():
    spec = importlib.util.spec_from_file_location("torch_baseline", REPO / "scripts" / "torch_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def peak_rss_mb() -> float:
    """Peak RSS of this process in MiB: getrusage(RUSAGE_SELF).ru_maxrss, except that on Linux
    ru_maxrss survives fork+exec (a worker would report its parent's peak if that was higher), so
    there the per-address-space high-water mark VmHWM from /proc/self/status is used."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024.0


def _set_threads(n: int) -> int:
    import numba

    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


# -------------------------------------------------------------------------------------------------
# Worker side
# -------------------------------------------------------------------------------------------------

class SlidepyRunner:
    """A slidepy Trainer driven one `Trainer.train_step` at a time: the loop of Trainer.fit (same
    epoch order, train step, scheduled rebuild), with no checkpoints, logs or evaluations of its
    own (checkpoint_every 0, log_every and eval.every beyond any run)."""

    def __init__(self, system: str, train, test, spec: dict):
        from slidepy import Trainer

        self.system, self.train, self.test = system, train, test
        self.batch = int(spec["batch_size"])
        threads = _set_threads(spec["threads"])
        cfg = slidepy_config(system, train.n_labels, lr=spec["lr"], batch_size=self.batch, threads=threads,
                             seed=int(spec.get("seed", 0)))
        self.tmp = tempfile.mkdtemp(prefix="slidepy-bench-")
        t0 = time.perf_counter()
        self.trainer = Trainer(cfg, train=train, test=test, run_dir=self.tmp, progress=False)
        self.build_seconds = time.perf_counter() - t0
        self.engine = self.trainer.engine
        self.compile_seconds = self.engine.warmup(train)
        self.steps = 0
        self.samples = 0
        self.active_sum = np.zeros(self.engine.n_layers)

    def step(self, traffic: dict | None = None) -> float:
        """One training step + scheduled rebuild; returns its seconds (step + rebuild)."""
        rebuild_before = self.trainer.rebuild_seconds
        done = self.trainer.train_step()  # a non-finite loss raises NumericalError (on_nan: stop)
        self.steps += 1
        self.samples += done.rows.shape[0]
        self.active_sum += np.asarray(done.stats.active_mean, dtype=np.float64)
        if traffic is not None:
            traffic_add(traffic, self.train, done.rows, done.stats, done.seconds)
        return done.seconds + self.trainer.rebuild_seconds - rebuild_before

    def evaluate(self) -> dict:
        """Exact P@k on the whole (cut) test set (Trainer.evaluate: every label scored, the output
        layer as one BLAS product per block of samples)."""
        return self.trainer.evaluate(self.test, subset=None)

    def timings(self) -> dict:
        return {"kernel": self.engine.timings["kernel"], "optimizer": self.engine.timings["optimizer"],
                "rebuild": self.trainer.rebuild_seconds, "step": self.trainer.train_seconds}

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# The exact `all` system at this many labels is too slow to waste an untimed step on.
SLOW_ALL_LABELS = 50_000


def traffic_add(traffic: dict, data, rows: np.ndarray, stats, seconds: float) -> None:
    """Output-layer weight-row bytes of one step (see row_traffic_bytes)."""
    y = data.y_indptr
    n_lab = int(((y[rows + 1] - y[rows]) > 0).sum())
    active_rows = float(stats.active_mean[-1]) * max(1, n_lab)
    # rows_updated counts every layer; layer 0 (input-major) updates one row per input feature seen.
    feats = np.unique(np.concatenate([data.x_indices[data.x_indptr[r]:data.x_indptr[r + 1]] for r in rows]))
    opt_rows = max(0.0, float(stats.rows_updated) - feats.shape[0])
    traffic["bytes"] += row_traffic_bytes(active_rows, opt_rows)
    traffic["seconds"] += seconds
    traffic["steps"] += 1


def row_traffic_bytes(active_rows: float, optimizer_rows: float, width: int = HIDDEN) -> float:
    """Bytes of output-layer weight rows one step touches: each active (sample, neuron) pair reads
    its W row in forward and in backward and reads+writes its gradient row (4 row passes); each
    row the optimizer updates reads+writes param, grad, m and v (8 row passes). float32."""
    row = width * 4
    return active_rows * row * 4 + optimizer_rows * row * 8


class TorchRunner:
    def __init__(self, train, test, spec: dict):
        self.tb = _import_torch_baseline()
        self.train, self.test, self.spec = train, test, spec
        self.params = set(inspect.signature(self.tb.train_torch).parameters)
        self.step_time: dict = {}

    def _kwargs(self, **kw) -> dict:
        s = self.spec
        base = dict(hidden=HIDDEN, batch_size=int(s["batch_size"]), lr=float(s["lr"]), seed=int(s.get("seed", 0)))
        base.update(kw)
        return {k: v for k, v in base.items() if k in self.params}

    def segment(self, threads: int, seconds: float, min_steps: int) -> dict:
        # A fresh model per segment (train_torch has no stepping API). Its first step (allocation
        # and page faults of the logits buffer, Adam state) is warm-up and not timed; then about
        # `seconds` of timed steps, sized from the previous segment's step time (at least min_steps).
        est = self.step_time.get(threads) or self.step_time.get("any")
        timed = max(min_steps, 1, int(round(seconds / est)) if est else 1)
        kw = self._kwargs(epochs=10**6, max_steps=1 + timed, threads=int(threads), eval_every_steps=None,
                          time_budget_s=None, warmup_steps=1)
        res = self.tb.train_torch(self.train, None, **kw)
        sps = res["samples_per_s"]
        if sps and math.isfinite(sps):
            self.step_time[threads] = self.step_time["any"] = int(self.spec["batch_size"]) / sps
        return {"samples_per_s": sps, "steps": res["steps"] - 1,
                "samples_per_s_median_step": res.get("samples_per_s_median_step")}


def _accuracy_slidepy(system, train, test, spec) -> dict:
    runner = SlidepyRunner(system, train, test, spec)
    total = spec["epochs"] * -(-train.n_samples // runner.batch)
    if spec.get("max_steps"):
        total = min(total, int(spec["max_steps"]))
    evals = max(1, int(spec.get("evals", 4)))
    eval_at = sorted({max(1, round(total * (i + 1) / evals)) for i in range(evals)})
    curve, eval_seconds = [], 0.0
    for s in range(1, total + 1):
        runner.step()
        if s in eval_at:
            t0 = time.perf_counter()
            m = runner.evaluate()
            eval_seconds += time.perf_counter() - t0
            curve.append({"step": s, "epoch": s / -(-train.n_samples // runner.batch),
                          "train_seconds": runner.trainer.train_seconds + runner.trainer.rebuild_seconds,
                          **{k: m[k] for k in ("P@1", "P@3", "P@5")}})
    tm = runner.timings()
    train_s = tm["step"] + tm["rebuild"]
    out = {"system": system, "steps": runner.steps, "epochs": runner.steps / -(-train.n_samples // runner.batch),
           "train_seconds": train_s, "samples_per_s": runner.samples / train_s if train_s else float("nan"),
           "compile_seconds": runner.compile_seconds, "build_seconds": runner.build_seconds,
           "eval_seconds": eval_seconds, "curve": curve,
           "active_mean": (runner.active_sum / max(1, runner.steps)).tolist(),
           "time_share": {k: tm[k] / train_s for k in ("kernel", "optimizer", "rebuild")} if train_s else {},
           **{k: curve[-1][k] for k in ("P@1", "P@3", "P@5")}}
    out["time_share"]["other"] = max(0.0, 1.0 - sum(out["time_share"].values()))
    runner.close()
    return out


def _accuracy_torch(train, test, spec) -> dict:
    runner = TorchRunner(train, test, spec)
    spe = -(-train.n_samples // int(spec["batch_size"]))
    total = spec["epochs"] * spe
    if spec.get("max_steps"):
        total = min(total, int(spec["max_steps"]))
    evals = max(1, int(spec.get("evals", 4)))
    every = max(1, math.ceil(total / evals))
    res = runner.tb.train_torch(train, test, **runner._kwargs(
        epochs=int(spec["epochs"]), max_steps=int(total), threads=int(spec["threads"]), eval_every_steps=every,
        eval_subset=None))
    curve = [{"step": p["step"], "epoch": p["step"] / spe, "train_seconds": p["train_seconds"],
              **{k: p.get(k) for k in ("P@1", "P@3", "P@5")}} for p in res.get("curve", [])]
    return {"system": "torch", "steps": res["steps"], "epochs": res["steps"] / spe,
            "train_seconds": res["train_seconds"], "samples_per_s": res["samples_per_s"],
            "compile_seconds": None, "curve": curve, "P@1": res["P@1"], "P@3": res["P@3"], "P@5": res["P@5"]}


def _accuracy_omikuji(train, test, spec) -> dict:
    import omikuji

    tmp = tempfile.mkdtemp(prefix="omikuji-bench-")
    try:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w") as f:
            f.write(f"{train.n_samples} {train.n_features} {train.n_labels}\n")
            for i in range(train.n_samples):
                labs = train.y_indices[train.y_indptr[i]:train.y_indptr[i + 1]]
                lo, hi = train.x_indptr[i], train.x_indptr[i + 1]
                feats = " ".join(f"{a}:{b:.6g}" for a, b in zip(train.x_indices[lo:hi], train.x_values[lo:hi]))
                f.write(",".join(map(str, labs)) + " " + feats + "\n")
        hp = omikuji.Model.default_hyper_param()
        t0 = time.perf_counter()
        model = omikuji.Model.train_on_data(path, hp, n_threads=int(spec["threads"]))
        train_s = time.perf_counter() - t0
        top = np.full((test.n_samples, 5), -1, np.int64)
        for i in range(test.n_samples):
            lo, hi = test.x_indptr[i], test.x_indptr[i + 1]
            pred = model.predict(list(zip(test.x_indices[lo:hi].tolist(), test.x_values[lo:hi].tolist())), top_k=5)
            for j, (lab, _) in enumerate(pred[:5]):
                top[i, j] = lab
        from slidepy.metrics import evaluate_topk

        m = evaluate_topk(top, test.y_indptr, test.y_indices, (1, 3, 5))
        return {"system": "omikuji", "train_seconds": train_s, "curve": [],
                **{k: m[k] for k in ("P@1", "P@3", "P@5")}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _emit(obj: dict) -> None:
    sys.stdout.write(MARK + json.dumps(obj, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def worker_main(spec_text: str) -> int:
    spec = json.loads(spec_text)
    if "_file" in spec:  # the spec may also be given as {"_file": path}
        spec = json.loads(Path(spec["_file"]).read_text())
    sys.path.insert(0, str(REPO))
    system = spec["system"]
    if spec["mode"] == "bandwidth":
        _emit({"result": memory_bandwidth(int(spec["bytes"]))})
        return 0
    t0 = time.perf_counter()
    train, test = load_bench_data(spec["dataset"])
    load_seconds = time.perf_counter() - t0
    if spec["mode"] == "accuracy":
        if system == "torch":
            out = _accuracy_torch(train, test, spec)
        elif system == "omikuji":
            out = _accuracy_omikuji(train, test, spec)
        else:
            out = _accuracy_slidepy(system, train, test, spec)
        out["load_seconds"] = load_seconds
        out["popularity_P@1"] = popularity_p1(train, test)
        out["n_labels"], out["n_features"], out["n_train"] = train.n_labels, train.n_features, train.n_samples
        out["config"] = describe_system(system, train.n_labels)
        out["peak_rss_mb"] = peak_rss_mb()
        _emit({"result": out})
        return 0
    # serve: answer segment requests on stdin until "exit"
    runner = TorchRunner(train, test, spec) if system == "torch" else SlidepyRunner(system, train, test, spec)
    threads_now = None
    _emit({"ready": True, "compile_seconds": getattr(runner, "compile_seconds", None), "load_seconds": load_seconds,
           "n_labels": train.n_labels})
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "exit":
            _emit({"peak_rss_mb": peak_rss_mb()})
            break
        threads, seconds, min_steps = int(req["threads"]), float(req["seconds"]), int(req.get("min_steps", 2))
        if system == "torch":
            _emit(runner.segment(threads, seconds, min_steps))
            continue
        if threads != threads_now:  # new thread count: new scratch; one untimed step allocates it
            _set_threads(threads)
            threads_now = threads
            if system != "all" or runner.train.n_labels < SLOW_ALL_LABELS:  # too slow to waste there
                runner.step()
        tm0 = dict(runner.timings())
        traffic = {"bytes": 0.0, "seconds": 0.0, "steps": 0}
        spent, steps, samples = 0.0, 0, 0
        while spent < seconds or steps < min_steps:
            before = runner.samples
            spent += runner.step(traffic if system == "lsh" else None)
            samples += runner.samples - before
            steps += 1
        tm1 = runner.timings()
        _emit({"samples_per_s": samples / spent, "steps": steps, "seconds": spent,
               "timings": {k: tm1[k] - tm0[k] for k in tm1}, "traffic": traffic})
    if hasattr(runner, "close"):
        runner.close()
    return 0


# -------------------------------------------------------------------------------------------------
# Parent side
# -------------------------------------------------------------------------------------------------

def _worker_cmd(spec: dict, spec_dir: str) -> list[str]:
    path = os.path.join(spec_dir, f"spec-{spec['system']}-{spec['mode']}-{time.monotonic_ns()}.json")
    Path(path).write_text(json.dumps(spec))
    return [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps({"_file": path})]


def _log(msg: str, log) -> None:
    line = f"[bench {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if log is not None:
        log.write(line + "\n")
        log.flush()


def run_accuracy(spec: dict, spec_dir: str, timeout: float, log) -> dict:
    cmd = _worker_cmd(spec, spec_dir)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"system": spec["system"], "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            msg = json.loads(line[len(MARK):])
            if "result" in msg:
                msg["result"]["wall_seconds"] = time.perf_counter() - t0
                return msg["result"]
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"system": spec["system"], "error": f"worker exit {proc.returncode}: " + " | ".join(tail)}


class Server:
    """A long-lived worker answering timed-segment requests."""

    def __init__(self, spec: dict, spec_dir: str):
        self.system = spec["system"]
        self.proc = subprocess.Popen(_worker_cmd(spec, spec_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=str(REPO))
        self.error = None
        self.hello = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read().strip().splitlines()[-8:]
                self.error = f"worker exited ({self.proc.wait()}): " + " | ".join(err)
                raise RuntimeError(self.error)
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        try:
            out = self.ask({"cmd": "exit"}) if self.error is None else {}
        except (RuntimeError, BrokenPipeError, OSError):
            out = {}
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        if self.proc.poll() is None:
            self.proc.kill()
        return out


def run_throughput(dspec: dict, systems: list[str], common: dict, threads_list: list[int], repeats: int,
                   seconds: float, spec_dir: str, log) -> dict:
    servers: dict[str, Server] = {}
    out = {"threads": threads_list, "repeats": repeats, "segment_seconds": seconds, "systems": {}}
    for system in systems:
        try:
            servers[system] = Server({**common, "dataset": dspec, "system": system, "mode": "serve",
                                      "threads": max(threads_list)}, spec_dir)
            out["n_labels"] = servers[system].hello.get("n_labels")
            out["systems"][system] = {"compile_seconds": servers[system].hello.get("compile_seconds"),
                                      "segments": {str(t): [] for t in threads_list}}
        except RuntimeError as exc:
            out["systems"][system] = {"error": str(exc)}
            _log(f"  throughput {system}: {exc}", log)
    try:
        for t in threads_list:
            for r in range(repeats):
                for system, server in servers.items():
                    if server.error:
                        continue
                    try:
                        res = server.ask({"cmd": "segment", "threads": t, "seconds": seconds, "min_steps": 1})
                    except RuntimeError as exc:
                        out["systems"][system]["error"] = str(exc)
                        continue
                    out["systems"][system]["segments"][str(t)].append(res)
                    _log(f"  round {r + 1}/{repeats} threads {t} {system:<7} {res['samples_per_s']:>10,.1f} samples/s "
                         f"({res['steps']} steps)", log)
    finally:
        for system, server in servers.items():
            out["systems"][system]["peak_rss_mb"] = server.close().get("peak_rss_mb")
    for system, s in out["systems"].items():
        med = {}
        for t, segs in s.get("segments", {}).items():
            if segs:
                med[t] = float(np.median([g["samples_per_s"] for g in segs]))
        s["median_samples_per_s"] = med
        if system == "lsh":
            tr = [g["traffic"] for segs in s.get("segments", {}).values() for g in segs
                  if g.get("traffic") and str(max(threads_list)) in s["segments"] and g in s["segments"][str(max(threads_list))]]
            b, sec = sum(x["bytes"] for x in tr), sum(x["seconds"] for x in tr)
            s["row_traffic_GBps"] = b / sec / 1e9 if sec else None
            s["row_traffic_bytes_per_step"] = b / max(1, sum(x["steps"] for x in tr))
    tmax = str(max(threads_list))
    lsh = out["systems"].get("lsh", {}).get("median_samples_per_s", {}).get(tmax)
    out["ratios"] = {}
    for other in ("torch", "all", "random"):
        o = out["systems"].get(other, {}).get("median_samples_per_s", {}).get(tmax)
        if lsh and o:
            out["ratios"][f"lsh/{other}"] = lsh / o
    out["scaling"] = {}
    if "1" in map(str, threads_list) and "2" in map(str, threads_list):
        for system, s in out["systems"].items():
            m = s.get("median_samples_per_s", {})
            if m.get("1") and m.get("2"):
                out["scaling"][system] = {"sps1": m["1"], "sps2": m["2"], "efficiency_1_2": m["2"] / m["1"] / 2}
    for system, s in out["systems"].items():
        m = s.get("median_samples_per_s", {})
        if m.get("1"):
            s["efficiency"] = {t: m[t] / m["1"] / int(t) for t in m}
    return out


def memory_bandwidth(nbytes: int, repeats: int = 5) -> dict:
    """Copy bandwidth: bytes read + written per second by np.copyto of `nbytes`, median of `repeats`."""
    n = nbytes // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    del src, dst
    return {"bytes": n * 4, "repeats": repeats, "median_seconds": med, "copy_GBps": 2 * n * 4 / med / 1e9,
            "note": "read + write bytes per second of a NumPy copy (one thread)"}


def popularity_p1(train, test) -> float:
    """P@1 of always predicting the most frequent training label: the floor a model must beat
    before its P@1 says anything (on the synthetic Zipf data a model reaches it within steps)."""
    top = int(np.argmax(np.bincount(train.y_indices, minlength=train.n_labels)))
    hits = [top in test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]] for i in range(test.n_samples)]
    return float(np.mean(hits)) if hits else float("nan")


def time_to_p1(curve: list[dict], target: float) -> float | None:
    """Training seconds at which the eval curve first reaches P@1 >= target (linear interpolation
    between eval points, from (0 s, P@1 0)); None if never."""
    prev_t, prev_p = 0.0, 0.0
    for p in curve:
        t, v = float(p["train_seconds"]), p.get("P@1")
        if v is None:
            continue
        if v >= target:
            if v == prev_p:
                return t
            return prev_t + (t - prev_t) * (target - prev_p) / (v - prev_p)
        prev_t, prev_p = t, v
    return None


# -------------------------------------------------------------------------------------------------
# The matrix
# -------------------------------------------------------------------------------------------------

def plan_dataset(name: str, opts: argparse.Namespace) -> dict:
    """Dataset spec + run lengths for one dataset."""
    quick = opts.quick
    d = {"name": name, "cache_dir": str(Path(opts.out).resolve() / "cache")}
    if name in SYNTHETIC_SHAPES:
        d["noise_fraction"] = opts.noise_fraction
        if name == "tiny":
            d.update(n_train=opts.n_train or 1500, n_test=300, eval_subset=300)
        else:
            d.update(n_train=opts.n_train or (2000 if quick else 10000), n_test=opts.eval_subset or (200 if quick else 1000))
            d["eval_subset"] = d["n_test"]
    else:
        d["n_train"] = None
        d["eval_subset"] = opts.eval_subset or (500 if quick else None)
    run = {"epochs": opts.epochs or 1, "max_steps": opts.max_steps, "evals": opts.evals}
    if name in ("amazon670k", "delicious200k") and quick and not opts.max_steps:
        run["max_steps"] = 8
    if name in ("bibtex", "delicious", "mnist", "tiny") and not opts.epochs:
        run["epochs"] = 1 if quick else {"bibtex": 10, "delicious": 5, "mnist": 1, "tiny": 2}[name]
    return {"dataset": d, "run": run}


def run_benchmark(opts: argparse.Namespace) -> dict:
    """Run the matrix `opts` describes; write results.json / results.md / curve.png into opts.out."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)
    log = open(out / "bench.log", "a")
    spec_dir = tempfile.mkdtemp(prefix="bench-specs-")
    threads_list = sorted({int(t) for t in str(opts.threads).split(",") if t.strip()})
    import numba

    cores = numba.config.NUMBA_NUM_THREADS
    notes = []
    if max(threads_list) > cores:
        notes.append(f"threads {threads_list} asked but numba has {cores}: higher counts are clipped to {cores}")
    systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    available = {"torch": has_module("torch"), "omikuji": has_module("omikuji")}
    for s in list(systems):
        if s in available and not available[s]:
            notes.append(f"{s} skipped: `import {s}` fails")
            systems.remove(s)
    results = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
               "machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "cpus": os.cpu_count(), "numba_threads": cores,
                           "load_avg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None},
               "settings": {"quick": opts.quick, "repeats": opts.repeats, "threads": threads_list,
                            "segment_seconds": opts.segment_seconds, "hidden": HIDDEN, "batch_size": opts.batch_size,
                            "lr": opts.lr, "noise_fraction": opts.noise_fraction, "systems": systems},
               "notes": notes, "datasets": {}}
    t_start = time.perf_counter()
    if not opts.no_bandwidth:
        _log("memory bandwidth ...", log)
        # in a subprocess, so the 2 x 1 GiB of buffers never count toward any peak RSS
        results["memory_bandwidth"] = run_accuracy({"system": "bandwidth", "mode": "bandwidth",
                                                    "bytes": (256 if opts.quick else 1024) * 2**20},
                                                   spec_dir, 600, log)
        _log(f"  {results['memory_bandwidth']}", log)
    for name in [s.strip() for s in opts.datasets.split(",") if s.strip()]:
        why = dataset_available(name)
        if why:
            notes.append(f"dataset {name} skipped: {why}")
            _log(f"dataset {name} skipped: {why}", log)
            continue
        plan = plan_dataset(name, opts)
        dspec, run = plan["dataset"], plan["run"]
        common = {"batch_size": opts.batch_size, "lr": opts.lr, "seed": 0}
        entry = {"spec": dspec, "run": run, "systems": {}}
        results["datasets"][name] = entry
        _log(f"dataset {name}: {json.dumps({k: v for k, v in dspec.items() if k != 'cache_dir'})} run {run}", log)
        neural = [s for s in systems if s in NEURAL]
        if neural and not opts.no_throughput:
            _log(f"{name}: interleaved throughput, systems {neural}, threads {threads_list}, "
                 f"{opts.repeats} rounds of {opts.segment_seconds:g} s", log)
            entry["throughput"] = run_throughput(dspec, neural, common, threads_list, opts.repeats,
                                                 opts.segment_seconds, spec_dir, log)
            entry["n_labels"] = entry["throughput"].get("n_labels")
        if not opts.no_accuracy:
            for system in systems:
                n_labels = SYNTHETIC_SHAPES[name][1] if name in SYNTHETIC_SHAPES else 0
                if system == "all" and n_labels >= 100_000 and not opts.all_accuracy:
                    tp_all = entry.get("throughput", {}).get("systems", {}).get("all", {}).get("median_samples_per_s", {})
                    msg = (f"{name}: no accuracy run for `all` (exact softmax over {n_labels:,} labels is too slow here"
                           + (f": {max(tp_all.values()):,.1f} samples/s" if tp_all else "")
                           + "; --all-accuracy forces it); the P@1 reference is torch")
                    notes.append(msg)
                    _log(msg, log)
                    continue
                _log(f"{name}: accuracy run {system} ...", log)
                spec = {**common, **run, "dataset": dspec, "system": system, "mode": "accuracy",
                        "threads": max(threads_list)}
                res = run_accuracy(spec, spec_dir, opts.worker_timeout, log)
                entry["systems"][system] = res
                entry["n_labels"] = entry.get("n_labels") or res.get("n_labels")
                if "error" in res:
                    _log(f"  {system}: ERROR {res['error']}", log)
                else:
                    _log(f"  {system}: P@1 {res['P@1']:.4f} P@5 {res['P@5']:.4f} after {res.get('steps')} steps, "
                         f"train {res['train_seconds']:.1f} s, {res.get('samples_per_s') or float('nan'):,.1f} samples/s, "
                         f"peak RSS {res['peak_rss_mb']:,.0f} MiB", log)
        entry["targets"] = dataset_targets(name, entry, opts)
        _write_outputs(results, out)  # partial results survive an interruption
    results["elapsed_seconds"] = time.perf_counter() - t_start
    results["targets_summary"] = summarize_targets(results)
    _write_outputs(results, out)
    curve_note = plot_curves(results, out / "curve.png")
    if curve_note:
        results["notes"].append(curve_note)
    _write_outputs(results, out)
    shutil.rmtree(spec_dir, ignore_errors=True)
    log.close()
    return results


def dataset_targets(name: str, entry: dict, opts) -> dict:
    """The issue's targets, computed on this dataset where its systems ran."""
    sysres = entry["systems"]
    ok = {s: r for s, r in sysres.items() if "error" not in r}
    tp = entry.get("throughput", {})
    ratios = tp.get("ratios", {})
    t = {}
    # the P@1 for the time-to-accuracy comparison: stated, or 90% of the lower final P@1 of lsh/reference
    ref = "torch" if "torch" in ok else ("all" if "all" in ok else None)
    target = opts.target_p1
    if target is None and "lsh" in ok and ref:
        target = 0.9 * min(ok["lsh"]["P@1"], ok[ref]["P@1"])
    t["p1_target"] = target
    t["p1_target_rule"] = ("--target-p1" if opts.target_p1 is not None else
                           f"0.9 x min(final P@1 of lsh, {ref})" if ref else None)
    t["time_to_target"] = {s: time_to_p1(r.get("curve", []), target) for s, r in ok.items()
                           if target is not None and r.get("curve")}
    if "lsh/torch" in ratios:
        t["lsh_vs_torch_sps"] = {"value": ratios["lsh/torch"], "goal": 20.0, "pass": ratios["lsh/torch"] >= 20.0}
    tt = t["time_to_target"]
    if tt.get("lsh") and tt.get("torch"):
        v = tt["torch"] / tt["lsh"]
        t["lsh_vs_torch_time_to_p1"] = {"value": v, "goal": 5.0, "pass": v >= 5.0}
    elif "lsh" in ok and "torch" in ok and target is not None:
        t["lsh_vs_torch_time_to_p1"] = {"value": None, "goal": 5.0, "pass": bool(tt.get("lsh")) and not tt.get("torch"),
                                        "note": "one system never reached the target"}
    pop = next((r["popularity_P@1"] for r in ok.values() if r.get("popularity_P@1") is not None), None)
    if pop is not None and target is not None and target <= pop and "lsh_vs_torch_time_to_p1" in t:
        t["lsh_vs_torch_time_to_p1"]["note"] = (f"target {target:.3f} <= popularity P@1 {pop:.3f}: not informative, "
                                                "train longer or use --target-p1")
    if "lsh/all" in ratios:
        t["lsh_vs_all_sps"] = {"value": ratios["lsh/all"], "goal": 5.0, "pass": ratios["lsh/all"] >= 5.0}
    ref_acc = "all" if "all" in ok else ("torch" if "torch" in ok else None)
    if "lsh" in ok and ref_acc:
        gap = ok["lsh"]["P@1"] - ok[ref_acc]["P@1"]
        t["lsh_p1_vs_reference"] = {"reference": ref_acc, "value": gap, "goal": -0.01, "pass": gap >= -0.01,
                                    "epochs": ok["lsh"].get("epochs")}
    sc = tp.get("scaling", {}).get("lsh")
    if sc:
        t["lsh_thread_efficiency_1_2"] = {"value": sc["efficiency_1_2"], "goal": 0.85, "pass": sc["efficiency_1_2"] >= 0.85}
    if name == "amazon670k" and "lsh" in ok:
        rss = ok["lsh"]["peak_rss_mb"]
        t["lsh_peak_rss_amazon670k"] = {"value": rss, "goal": 4096.0, "pass": rss < 4096.0}
    return t


def summarize_targets(results: dict) -> dict:
    out = {}
    for name, entry in results["datasets"].items():
        for k, v in entry.get("targets", {}).items():
            if isinstance(v, dict) and "pass" in v:
                out[f"{name}:{k}"] = v["pass"]
    return out


# -------------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------------

def _f(x, fmt="{:,.1f}", none="—"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return fmt.format(x)


def _pf(t: dict | None) -> str:
    if not t:
        return "n/a"
    return "PASS" if t.get("pass") else "FAIL"


TARGET_TEXT = {
    "lsh_vs_torch_sps": ("lsh samples/s >= 20x torch (full softmax)", "{:.2f}x"),
    "lsh_vs_torch_time_to_p1": ("lsh >= 5x less training time than torch to the same P@1", "{:.2f}x"),
    "lsh_vs_all_sps": ("lsh samples/s >= 5x all", "{:.2f}x"),
    "lsh_p1_vs_reference": ("lsh P@1 within 1 point of the reference after the same epochs", "{:+.4f}"),
    "lsh_thread_efficiency_1_2": ("1->2 thread efficiency of lsh >= 0.85", "{:.2f}"),
    "lsh_peak_rss_amazon670k": ("lsh peak RSS at the Amazon-670K shape < 4 GiB", "{:,.0f} MiB"),
}


def render_markdown(results: dict) -> str:
    s = results["settings"]
    L = ["# slidepy benchmark", ""]
    L.append(f"Command: `{results.get('command', '')}`  ")
    m = results["machine"]
    L.append(f"Machine: {m['platform']}, Python {m['python']}, {m['cpus']} CPUs (numba threads {m['numba_threads']}), "
             f"load average at start {m.get('load_avg_at_start')}. Started {results['started']}"
             + (f", took {results['elapsed_seconds']:.0f} s." if "elapsed_seconds" in results else "."))
    L.append(f"Model: sparse input -> {s['hidden']} ReLU -> softmax over all labels; batch {s['batch_size']}, "
             f"Adam lr {s['lr']}, same for every neural system. Throughput: {s['repeats']} interleaved rounds of "
             f"{s['segment_seconds']:g} s segments per thread count {s['threads']}; medians and ratios of medians."
             + (" **Quick mode: tiny sizes, numbers only check the plumbing.**" if s["quick"] else ""))
    L.append("")
    bw = results.get("memory_bandwidth")
    bw = bw if bw and "copy_GBps" in bw else None
    for name, e in results["datasets"].items():
        d = e["spec"]
        L.append(f"## {name}")
        L.append("")
        if name in SYNTHETIC_SHAPES:
            nf, nl, nnz, lps = SYNTHETIC_SHAPES[name]
            L.append(f"Synthetic (`make_synthetic`, seed 0): {nf:,} features, {nl:,} labels, ~{nnz} nnz and "
                     f"{lps[0]}-{lps[1]} labels per sample, {d['n_train']:,} train, **noise_fraction "
                     f"{d['noise_fraction']}** (raised from the default 0.2, at which the data is too easy for P@1 "
                     f"to separate systems); eval on {d['eval_subset']:,} test samples.")
        else:
            where = "the whole test set" if not d.get("eval_subset") else f"the first {d['eval_subset']:,} test samples"
            L.append(f"Real data (`{REAL_PATHS[name][0]}`, {e.get('n_labels') or '?'} labels); eval on {where}.")
        pops = [r.get("popularity_P@1") for r in e["systems"].values() if r.get("popularity_P@1") is not None]
        if pops:
            L.append(f"Always predicting the most frequent training label gives P@1 {pops[0]:.4f}: P@1 at or below "
                     f"that (and a time-to-P@1 target at or below it) shows no learning beyond label popularity.")
        run = e["run"]
        L.append(f"Accuracy runs: {run['epochs']} epoch(s)" + (f", at most {run['max_steps']} steps" if run.get("max_steps") else "")
                 + f", {run['evals']} eval points, exact scoring (every label).")
        L.append("")
        tp = e.get("throughput", {})
        tmax = str(max(s["threads"]))
        tg = e.get("targets", {})
        target = tg.get("p1_target")
        L.append(f"| system | config | samples/s @{tmax}t (median, interleaved) | lsh / system | JIT compile s "
                 f"| P@1 | P@5 | steps (epochs) | train s | time to P@1 >= {_f(target, '{:.3f}')} (s) | peak RSS MiB "
                 f"| active neurons per layer | kernel / optimizer / rebuild / other % |")
        L.append("|" + "---|" * 13)
        names = list(dict.fromkeys(list(tp.get("systems", {})) + list(e["systems"])))
        lsh_sps = tp.get("systems", {}).get("lsh", {}).get("median_samples_per_s", {}).get(tmax)
        for sys_name in names:
            a = e["systems"].get(sys_name, {})
            t = tp.get("systems", {}).get(sys_name, {})
            sps = t.get("median_samples_per_s", {}).get(tmax)
            ratio = lsh_sps / sps if lsh_sps and sps and sys_name != "lsh" else None
            err = a.get("error") or t.get("error")
            rss = a.get("peak_rss_mb")
            share = a.get("time_share") or {}
            share_txt = (" / ".join(_f(share.get(k, 0) * 100, "{:.0f}") for k in ("kernel", "optimizer", "rebuild", "other"))
                         if share else "—")
            comp = a.get("compile_seconds", t.get("compile_seconds"))
            cfg_txt = describe_system(sys_name, e.get("n_labels") or 0)
            active = a.get("active_mean")
            L.append("| " + " | ".join([
                sys_name + (f" (error: {err[:80]})" if err else ""), cfg_txt, _f(sps), _f(ratio, "{:.2f}x"),
                _f(comp, "{:.1f}"), _f(a.get("P@1"), "{:.4f}"), _f(a.get("P@5"), "{:.4f}"),
                f"{a['steps']} ({a['epochs']:.2f})" if a.get("steps") is not None else "—",
                _f(a.get("train_seconds")), _f(tg.get("time_to_target", {}).get(sys_name)), _f(rss, "{:,.0f}"),
                ", ".join(f"{x:,.0f}" for x in active) if active else "—", share_txt]) + " |")
        L.append("")
        if tp.get("ratios"):
            L.append("Ratios of median samples/s (interleaved, " + tmax + " threads): "
                     + ", ".join(f"{k} = {v:.2f}x" for k, v in tp["ratios"].items()) + ".")
        if tp.get("systems"):
            L.append("")
            L.append("Thread scaling (median samples/s per thread count; efficiency = (sps_n / sps_1) / n):")
            L.append("")
            L.append("| system | " + " | ".join(f"{t} thr" for t in s["threads"]) + " | efficiency |")
            L.append("|---|" + "---|" * (len(s["threads"]) + 1))
            for sys_name, t in tp["systems"].items():
                med = t.get("median_samples_per_s", {})
                eff = t.get("efficiency", {})
                L.append(f"| {sys_name} | " + " | ".join(_f(med.get(str(x))) for x in s["threads"]) + " | "
                         + ", ".join(f"{k}t {v:.2f}" for k, v in eff.items() if k != "1") + " |")
            lt = tp["systems"].get("lsh", {})
            if bw and lt.get("row_traffic_GBps") is not None:
                L.append("")
                L.append(f"Memory bandwidth: NumPy copy {bw['copy_GBps']:.2f} GB/s (read+write, {bw['bytes'] / 2**30:.2f} GiB, "
                         f"median of {bw['repeats']}); slidepy lsh output-layer weight-row traffic "
                         f"{lt['row_traffic_GBps']:.2f} GB/s ({lt['row_traffic_bytes_per_step'] / 2**20:,.1f} MiB/step: active rows x 128 x 4 B x 4 "
                         f"(W read fwd + bwd, grad read+write) + optimizer rows x 128 x 4 B x 8 (param, grad, m, v read+write), "
                         f"over kernel+optimizer step time) = {lt['row_traffic_GBps'] / bw['copy_GBps'] * 100:.0f}% of copy bandwidth.")
        L.append("")
        rows = [(k, v) for k, v in tg.items() if isinstance(v, dict) and "pass" in v]
        if rows:
            L.append("| target | measured | result |")
            L.append("|---|---|---|")
            for k, v in rows:
                text, fmt = TARGET_TEXT[k]
                if k == "lsh_p1_vs_reference":
                    text = text.replace("the reference", f"`{v['reference']}`")
                measured = _f(v.get("value"), fmt) + (f" ({v['note']})" if v.get("note") else "")
                L.append(f"| {text} | {measured} | {_pf(v)} |")
            L.append("")
    if bw and not any(e.get("throughput", {}).get("systems", {}).get("lsh", {}).get("row_traffic_GBps") for e in results["datasets"].values()):
        L.append(f"Memory bandwidth: NumPy copy {bw['copy_GBps']:.2f} GB/s (read+write).")
        L.append("")
    if results.get("notes"):
        L.append("Notes:")
        L.append("")
        for n in results["notes"]:
            L.append(f"* {n}")
        L.append("")
    return "\n".join(L)


def plot_curves(results: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "curve.png not written: matplotlib is not importable (pip install -e '.[bench]')"
    names = [n for n, e in results["datasets"].items() if any(r.get("curve") for r in e["systems"].values())]
    if not names:
        return "curve.png not written: no eval curves"
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for sys_name, r in results["datasets"][name]["systems"].items():
            c = r.get("curve") or []
            if c:
                ax.plot([0.0] + [p["train_seconds"] for p in c], [0.0] + [p["P@1"] for p in c], marker="o", label=sys_name)
        tgt = results["datasets"][name].get("targets", {}).get("p1_target")
        if tgt:
            ax.axhline(tgt, color="grey", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("P@1")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _write_outputs(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=_json_default))
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(render_markdown(results) + "\n")


# -------------------------------------------------------------------------------------------------
# CLI
# -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench", help="output directory (default bench)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check the plumbing in a few minutes")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma list of {', '.join(list(SYNTHETIC_SHAPES) + list(REAL_PATHS))}")
    p.add_argument("--systems", default="lsh,all,random,torch,omikuji")
    p.add_argument("--n-train", type=int, default=None, help="synthetic training samples (default 10000; quick 2000)")
    p.add_argument("--eval-subset", type=int, default=None, help="test samples scored (synthetic default 1000)")
    p.add_argument("--noise-fraction", type=float, default=0.55,
                   help="synthetic noise fraction (default 0.55; 0.2, the generator's default, is too easy)")
    p.add_argument("--epochs", type=int, default=None, help="accuracy-run epochs (default per dataset)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--evals", type=int, default=4, help="eval points per accuracy run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", default="1,2", help="thread counts for throughput/scaling, e.g. 1,2,4,8,16")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per thread count")
    p.add_argument("--segment-seconds", type=float, default=None, help="timed segment length (default 6; quick 1.5)")
    p.add_argument("--target-p1", type=float, default=None, help="P@1 for time-to-accuracy (default: derived)")
    p.add_argument("--worker-timeout", type=float, default=3600.0)
    p.add_argument("--all-accuracy", action="store_true",
                   help="also run `all` to the end on label sets >= 100K (skipped by default: too slow)")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--worker", metavar="JSON_SPEC", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.worker:
        return worker_main(opts.worker)
    if opts.segment_seconds is None:
        opts.segment_seconds = 1.5 if opts.quick else 6.0
    if opts.quick and opts.datasets == ",".join(DEFAULT_DATASETS):
        opts.datasets = "amazon670k,delicious,bibtex"
    results = run_benchmark(opts)
    print()
    print((Path(opts.out) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
