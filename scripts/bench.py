#!/usr/bin/env python
"""slidepy benchmark suite: slidepy against dense PyTorch and the tree classifiers Omikuji and PECOS.

    python scripts/bench.py --out bench                 # the full matrix (make bench)
    python scripts/bench.py --out bench --quick         # small sizes, checks the plumbing (make bench-quick)
    python scripts/bench.py --datasets debian-deps --systems lsh,random,torch,omikuji,pecos --threads 2
    python scripts/bench.py --datasets amazon670k --systems lsh,torch --threads 1,2 --no-accuracy

Writes into <out>: results.json (every number, and the `targets` list), results.md (the same as
Markdown tables) and curve-<dataset>.png (P@1 against training seconds, one per dataset; skipped
with a note if matplotlib is missing). Parsed data is cached under <out>/cache, never beside the
data files.

Systems
-------
* lsh / random / all: slidepy. On a dataset with a shipped config (configs/<dataset>.yaml, see
  SHIPPED_CONFIGS; `--config NAME=PATH` names another), each is that config as users run it
  (loaded with load_config), with only the output layer's selection mode overridden where it
  differs; the one whose mode the config ships is "slidepy" in the targets. On the synthetic
  shapes they use the bench's own settings (lsh_settings). Evaluation is always exact (every label
  scored), whatever `inference` the config asks for.
* torch: the same network in dense PyTorch (scripts/torch_baseline.py's train_torch): hidden size,
  learning rate and batch size from the config.
* omikuji: Omikuji 0.5 with its default hyper-parameters.
* pecos: PECOS XR-Linear with its defaults: rows of X L2-normalised (as PECOS's own text
  featurizer gives them), PIFA label embeddings, hierarchical k-means, XLinearModel.train, top-5
  by model.predict(only_topk=5).

How each figure is measured
---------------------------
* Every system runs in its own subprocess (`bench.py --worker SPEC.json`), so the peak RSS
  (VmHWM) is that system's alone.
* Accuracy runs (one worker per system and dataset, one after another): a number of epochs (the
  config's, or --epochs; torch its own, --torch-epochs), capped by --max-steps / --max-seconds,
  exact evaluation on the whole test split (or its first --eval-subset samples, the same for every
  system) at every epoch end and `ceil(evals / epochs)` points per epoch. They give P@1/P@3/P@5,
  the P@1-against-training-seconds curve, the time each system takes to reach each other system's
  final P@1, training samples/s, JIT compile seconds and peak RSS. Training time excludes
  evaluation and JIT compilation and includes LSH table rebuilds. A tree has one point (its
  training time, its P@1); its training time includes its clustering. The slidepy loop is
  Trainer.fit's own: Trainer.train_step (epoch order, train step, scheduled rebuild) and
  Trainer.evaluate.
* Throughput (samples/s) is also measured interleaved: one long-lived worker per neural system,
  and the parent asks them in turn (A, B, C, A, B, C, ...) for a timed segment of
  `segment_seconds` of training; each of the `repeats` rounds runs every thread count in turn.
  Reported: the median per system and the ratios of the medians. Other jobs on a shared machine
  slow every system alike within a round.
* Memory bandwidth: a large NumPy copy (median of a few) against slidepy lsh's achieved
  output-layer weight-row traffic during its throughput segments (see `row_traffic_bytes`).
* Targets (compute_targets): the issues' goals, as ratios measured in this one run; a target
  whose systems did not run is "not run", never a pass.
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
# The environment the user started the bench in. Importing slidepy sets thread-pool defaults
# (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT); the workers start from this copy (worker_env), so
# dense PyTorch, Omikuji and PECOS run with their own defaults and slidepy with slidepy's.
USER_ENV = dict(os.environ)
SLIDEPY_ENV_DEFAULTS = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")  # slidepy/__init__.py sets them
MARK = "@@BENCH "  # prefix of the worker's protocol lines on stdout
HIDDEN = 128
SLIDEPY = ("lsh", "all", "random")
NEURAL = SLIDEPY + ("torch",)
TREES = ("omikuji", "pecos")
ALL_SYSTEMS = NEURAL + TREES
# `all` (exact softmax in slidepy) trains no accuracy run at or above this many labels unless
# --all-accuracy (torch is the dense reference there); on real data it also skips throughput.
ALL_MAX_LABELS = 20_000

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


# -------------------------------------------------------------------------------------------------
# System configs
# -------------------------------------------------------------------------------------------------

def lsh_settings(n_labels: int) -> dict:
    """The output-layer selection used by `lsh` (and the budget `random` gets) on the synthetic
    shapes and on datasets without a config.

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


def slidepy_config(system: str, n_labels: int, *, lr: float, batch_size: int, threads: int, seed: int,
                   hidden: int = HIDDEN):
    """The bench's own config for `system` (no shipped config)."""
    from slidepy.configfile import config_from_dict

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
        "model": {"hidden": [int(hidden)], "output": {"selection": sel}, "loss": "softmax"},
        "training": {"batch_size": batch_size, "lr": lr, "optimizer": "adam", "seed": seed, "threads": threads,
                     "epochs": 1, "log_every": 10**6},
        "eval": {"every": 10**9, "subset": None, "k": [1, 3, 5], "recall_samples": 0},
        "output": {"checkpoint_every": 0, "keep_last": 1},
    })


def config_overrides(cfg, system: str, *, threads: int, lr: float | None = None,
                     batch_size: int | None = None) -> list[str]:
    """`--set` overrides that turn a shipped config into `system`'s bench config: the output
    layer's selection mode (only where it differs), the thread count, exact evaluation, no
    checkpoints and no evaluations of its own (the bench evaluates on the whole test split);
    lr / batch size only where the bench command line asks for them."""
    out = [f"training.threads={int(threads)}", "output.checkpoint_every=0", "eval.every=1000000000",
           "eval.subset=null"]
    if cfg.model.output.selection.mode != system:
        out.append(f"model.output.selection.mode={system}")
    if cfg.model.output.selection.inference != "exact":
        out.append("model.output.selection.inference=exact")
    for i, layer in enumerate(cfg.model.hidden):
        if layer.selection.inference != "exact":
            out.append(f"model.hidden.{i}.selection.inference=exact")
    if lr is not None:
        out.append(f"training.lr={lr}")
    if batch_size is not None:
        out.append(f"training.batch_size={int(batch_size)}")
    return out


def shipped_config(path: str, system: str, *, threads: int, lr=None, batch_size=None):
    from slidepy import load_config

    base = load_config(path)
    return load_config(path, config_overrides(base, system, threads=threads, lr=lr, batch_size=batch_size))


def describe_config(cfg_path: str, system: str) -> str:
    """One line on what a config-based system trains."""
    from slidepy import load_config

    cfg = load_config(_config_file(cfg_path))
    sel = cfg.model.output.selection
    rel = os.path.relpath(_config_file(cfg_path), REPO)
    head = f"{rel} as shipped" if sel.mode == system else f"{rel} with output mode {system}"
    t = cfg.training
    hidden = [h.size for h in cfg.model.hidden]
    parts = [head, f"hidden {hidden}", f"batch {t.batch_size}", f"lr {t.lr:g}"]
    if system == "lsh":
        l = sel.lsh
        parts.append(f"budget {sel.budget}, {l.family}" + (f" K={l.k} L={l.l}" if l.family != "kmeans" else ""))
    elif system == "random":
        parts.append(f"budget {sel.budget} uniform negatives")
    return ", ".join(parts)


def describe_system(system: str, n_labels: int, run: dict | None = None) -> str:
    run = run or {}
    if system in SLIDEPY and run.get("config_path"):
        try:
            return describe_config(run["config_path"], system)
        except Exception as exc:  # a broken config is reported by the worker itself
            return f"{run['config_path']} ({exc})"
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
        h = run.get("hidden", [HIDDEN])
        return (f"dense full softmax (scripts/torch_baseline.py), hidden {h[0]}, dropout {run.get('dropout', 0.0):g}, "
                f"lr {run.get('lr', 1e-3):g} {run.get('lr_schedule', 'constant')}, batch {run.get('batch_size', 128)}"
                + (" (first hidden layer only)" if len(h) > 1 else ""))
    if system == "omikuji":
        return "omikuji defaults (Parabel-like trees)"
    if system == "pecos":
        return "PECOS XR-Linear defaults (L2-normalised X, PIFA, hierarchical k-means)"
    return ""


def _config_file(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (REPO / p))


def _import_torch_baseline():
    spec = importlib.util.spec_from_file_location("torch_baseline", REPO / "scripts" / "torch_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


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

    from slidepy.threads import use_threads

    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    use_threads(n)  # numba's kernels and the BLAS products
    return n


# -------------------------------------------------------------------------------------------------
# Worker side
# -------------------------------------------------------------------------------------------------

class SlidepyRunner:
    """A slidepy Trainer driven one `Trainer.train_step` at a time: the loop of Trainer.fit (same
    epoch order, train step, scheduled rebuild), with no checkpoints or evaluations of its own
    (checkpoint_every 0, eval.every beyond any run)."""

    def __init__(self, system: str, train, test, spec: dict):
        from slidepy import Trainer

        self.system, self.train, self.test = system, train, test
        threads = _set_threads(spec["threads"])
        if spec.get("config_path"):
            cfg = shipped_config(_config_file(spec["config_path"]), system, threads=threads,
                                 lr=spec.get("lr_override"), batch_size=spec.get("batch_size_override"))
        else:
            cfg = slidepy_config(system, train.n_labels, lr=spec["lr"], batch_size=int(spec["batch_size"]),
                                 threads=threads, seed=int(spec.get("seed", 0)), hidden=spec.get("hidden", [HIDDEN])[0])
        self.config = cfg
        self.batch = int(cfg.training.batch_size)
        self.width = int(cfg.model.hidden[-1].size)  # the output layer's row width
        self.tmp = tempfile.mkdtemp(prefix="slidepy-bench-")
        t0 = time.perf_counter()
        self.trainer = Trainer(cfg, train=train, test=test, run_dir=self.tmp, progress=False)
        self.build_seconds = time.perf_counter() - t0
        self.engine = self.trainer.engine
        self.compile_seconds = self.engine.warmup(train)
        self.steps = 0
        self.samples = 0
        self.active_sum = np.zeros(self.engine.n_layers)

    def plan(self, total_steps: int) -> None:
        """Tell the trainer how many steps this run will take, as Trainer.fit does before its loop:
        a learning-rate schedule (training.lr_schedule: linear) decays over them. Trainer.fit keeps
        the figure in `_total_steps`; a trainer without it has no schedule to feed."""
        if hasattr(self.trainer, "_total_steps"):
            self.trainer._total_steps = int(total_steps)

    @property
    def train_seconds(self) -> float:
        """Training seconds so far: steps plus table rebuilds (what a time budget counts)."""
        return self.trainer.budget_seconds

    def step(self, traffic: dict | None = None) -> float:
        """One training step + scheduled rebuild; returns its seconds (step + rebuild)."""
        rebuild_before = self.trainer.rebuild_seconds
        done = self.trainer.train_step()  # a non-finite loss raises NumericalError (on_nan: stop)
        self.steps += 1
        self.samples += done.rows.shape[0]
        self.active_sum += np.asarray(done.stats.active_mean, dtype=np.float64)
        if traffic is not None:
            traffic_add(traffic, self.train, done.rows, done.stats, done.seconds, self.width)
        return done.seconds + self.trainer.rebuild_seconds - rebuild_before

    def evaluate(self) -> dict:
        """Exact P@k on the whole (cut) test set (Trainer.evaluate: every label scored), with the
        neighbours' votes where the config asks for them, as `slidepy train` evaluates
        (model.neighbours): the bank comes from the weights of the moment, built in the
        evaluation's time, and is dropped before training goes on."""
        self.trainer.model.attach_neighbours(self.train)
        try:
            return self.trainer.evaluate(self.test, subset=None)
        finally:
            self.trainer.model.detach_neighbours()

    def timings(self) -> dict:
        return {"kernel": self.engine.timings["kernel"], "optimizer": self.engine.timings["optimizer"],
                "rebuild": self.trainer.rebuild_seconds, "step": self.trainer.train_seconds}

    def rebuilds(self) -> int:
        """Whole-index rebuilds completed so far, over every LSH layer (amortised_scaling prices them)."""
        return sum(index.rebuilds for index in self.engine.lsh if index is not None)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# The exact `all` system at this many labels is too slow to waste an untimed step on.
SLOW_ALL_LABELS = 50_000


def traffic_add(traffic: dict, data, rows: np.ndarray, stats, seconds: float, width: int = HIDDEN) -> None:
    """Output-layer weight-row bytes of one step (see row_traffic_bytes)."""
    y = data.y_indptr
    n_lab = int(((y[rows + 1] - y[rows]) > 0).sum())
    active_rows = float(stats.active_mean[-1]) * max(1, n_lab)
    if stats.output_union_rows:  # batch products: each union row is gathered and streamed once per product
        active_rows = float(stats.output_union_rows)
    # rows_updated counts every layer; layer 0 (input-major) updates one row per input feature seen.
    feats = np.unique(np.concatenate([data.x_indices[data.x_indptr[r]:data.x_indptr[r + 1]] for r in rows]))
    opt_rows = max(0.0, float(stats.rows_updated) - feats.shape[0])
    traffic["bytes"] += row_traffic_bytes(active_rows, opt_rows, width)
    traffic["seconds"] += seconds
    traffic["steps"] += 1


def row_traffic_bytes(active_rows: float, optimizer_rows: float, width: int = HIDDEN) -> float:
    """Bytes of output-layer weight rows one step touches: each active (sample, neuron) pair reads
    its W row in forward and in backward and reads+writes its gradient row (4 row passes; on the
    batch-products path each union row instead: the gather, two products' reads, dW's write); each
    row the optimizer updates reads+writes param, grad, m and v (8 row passes). float32."""
    row = width * 4
    return active_rows * row * 4 + optimizer_rows * row * 8


# Untimed steps at the start of each dense-PyTorch throughput segment. A fresh model's first steps
# are cold: on DebianNextWord (hidden 512, 50,000 labels, 2 threads) the second to fourth took
# 1.3-1.9 s against 0.2 s from the fifth on, so one warm-up step left segments of ~25 steps at
# 130-300 samples/s where the whole epoch ran at ~465 (2026-12-05); at the 670K shape every step
# took the same 0.8 s from the second on.
TORCH_COLD_STEPS = 4


class TorchRunner:
    def __init__(self, train, test, spec: dict):
        self.tb = _import_torch_baseline()
        self.train, self.test, self.spec = train, test, spec
        self.params = set(inspect.signature(self.tb.train_torch).parameters)
        self.step_time: dict = {}

    def _kwargs(self, **kw) -> dict:
        s = self.spec
        base = dict(hidden=int(s.get("hidden", [HIDDEN])[0]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
                    seed=int(s.get("seed", 0)), dropout=float(s.get("dropout", 0.0)),
                    lr_schedule=s.get("lr_schedule", "constant"))
        base.update(kw)
        return {k: v for k, v in base.items() if k in self.params}

    def segment(self, threads: int, seconds: float, min_steps: int) -> dict:
        # A fresh model per segment (train_torch has no stepping API). Its first TORCH_COLD_STEPS
        # steps are warm-up and not timed; then about `seconds` of timed steps, sized from the
        # previous segment's step time (at least min_steps).
        est = self.step_time.get(threads) or self.step_time.get("any")
        if est is None:  # first segment: an untimed short run sizes it (else it would time 1 step)
            cal = self.tb.train_torch(self.train, None, **self._kwargs(
                epochs=10**6, max_steps=TORCH_COLD_STEPS + 2, threads=int(threads), eval_every_steps=None,
                time_budget_s=None, warmup_steps=TORCH_COLD_STEPS))
            if cal["samples_per_s"] and math.isfinite(cal["samples_per_s"]):
                est = int(self.spec["batch_size"]) / cal["samples_per_s"]
        timed = max(min_steps, 1, int(round(seconds / est)) if est else 1)
        kw = self._kwargs(epochs=10**6, max_steps=TORCH_COLD_STEPS + timed, threads=int(threads),
                          eval_every_steps=None, time_budget_s=None, warmup_steps=TORCH_COLD_STEPS)
        res = self.tb.train_torch(self.train, None, **kw)
        sps = res["samples_per_s"]
        if sps and math.isfinite(sps):
            self.step_time[threads] = self.step_time["any"] = int(self.spec["batch_size"]) / sps
        return {"samples_per_s": sps, "steps": res["steps"] - TORCH_COLD_STEPS,
                "samples_per_s_median_step": res.get("samples_per_s_median_step")}


def eval_every_steps(steps_per_epoch: int, epochs: float, evals: int) -> int:
    """Steps between evaluation points: `ceil(evals / epochs)` points per epoch (at least one)."""
    per_epoch = max(1, math.ceil(max(1, int(evals)) / max(1e-9, float(epochs))))
    return max(1, math.ceil(steps_per_epoch / per_epoch))


def _accuracy_slidepy(system, train, test, spec) -> dict:
    runner = SlidepyRunner(system, train, test, spec)
    spe = -(-train.n_samples // runner.batch)
    epochs = float(spec["epochs"])
    total = int(math.ceil(epochs * spe))
    t = runner.config.training
    if spec.get("max_steps"):
        total = min(total, int(spec["max_steps"]))
    if t.max_steps:
        total = min(total, int(t.max_steps))
    caps = [c for c in (spec.get("max_seconds"), t.time_budget_s) if c]
    max_seconds = min(caps) if caps else None
    runner.plan(total)
    every = eval_every_steps(spe, epochs, spec.get("evals", 4))
    curve, eval_seconds, stopped = [], 0.0, None
    for s in range(1, total + 1):
        runner.step()
        in_epoch = s - (s - 1) // spe * spe  # 1..spe
        over = max_seconds is not None and runner.train_seconds >= max_seconds
        if over or s == total or in_epoch == spe or in_epoch % every == 0:
            t0 = time.perf_counter()
            m = runner.evaluate()
            eval_seconds += time.perf_counter() - t0
            curve.append({"step": s, "epoch": s / spe, "train_seconds": runner.train_seconds,
                          **{k: m[k] for k in ("P@1", "P@3", "P@5")}})
        if over:
            stopped = f"stopped at {max_seconds:g} training seconds (step {s} of {total})"
            break
    tm = runner.timings()
    train_s = tm["step"] + tm["rebuild"]
    out = {"system": system, "steps": runner.steps, "epochs": runner.steps / spe, "steps_per_epoch": spe,
           "train_seconds": train_s, "samples_per_s": runner.samples / train_s if train_s else float("nan"),
           "compile_seconds": runner.compile_seconds, "build_seconds": runner.build_seconds,
           "eval_seconds": eval_seconds, "curve": curve, "stopped": stopped,
           "active_mean": (runner.active_sum / max(1, runner.steps)).tolist(),
           "time_share": {k: tm[k] / train_s for k in ("kernel", "optimizer", "rebuild")} if train_s else {},
           **{k: curve[-1][k] for k in ("P@1", "P@3", "P@5")}}
    out["time_share"]["other"] = max(0.0, 1.0 - sum(out["time_share"].values()))
    runner.close()
    return out


def _accuracy_torch(train, test, spec) -> dict:
    runner = TorchRunner(train, test, spec)
    spe = -(-train.n_samples // int(spec["batch_size"]))
    epochs = float(spec["epochs"])
    total = int(math.ceil(epochs * spe))
    if spec.get("max_steps"):
        total = min(total, int(spec["max_steps"]))
    every = eval_every_steps(spe, epochs, spec.get("evals", 4))
    res = runner.tb.train_torch(train, test, **runner._kwargs(
        epochs=int(math.ceil(epochs)), max_steps=int(total), threads=int(spec["threads"]), eval_every_steps=every,
        eval_subset=None, time_budget_s=spec.get("max_seconds")))
    curve = [{"step": p["step"], "epoch": p["step"] / spe, "train_seconds": p["train_seconds"],
              **{k: p.get(k) for k in ("P@1", "P@3", "P@5")}} for p in res.get("curve", [])]
    stopped = None
    if res["steps"] < total:
        stopped = (f"stopped at {spec['max_seconds']:g} training seconds" if spec.get("max_seconds") else "stopped early") \
            + f" (step {res['steps']} of {total})"
    return {"system": "torch", "steps": res["steps"], "epochs": res["steps"] / spe, "steps_per_epoch": spe,
            "train_seconds": res["train_seconds"], "samples_per_s": res["samples_per_s"], "stopped": stopped,
            "compile_seconds": None, "curve": curve, "P@1": res["P@1"], "P@3": res["P@3"], "P@5": res["P@5"]}


def _score_top5(top: np.ndarray, test) -> dict:
    from slidepy.metrics import evaluate_topk

    m = evaluate_topk(top, test.y_indptr, test.y_indices, (1, 3, 5))
    return {k: float(m[k]) for k in ("P@1", "P@3", "P@5")}


def _tree_result(system: str, train, train_s: float, predict_s: float, m: dict) -> dict:
    return {"system": system, "train_seconds": train_s, "predict_seconds": predict_s, "epochs": None,
            "samples_per_s": train.n_samples / train_s if train_s else float("nan"),
            # one point: a tree is ready (at its final P@1) only when its training ends
            "curve": [{"step": None, "epoch": None, "train_seconds": train_s, **m}], "single_point": True, **m}


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
        t0 = time.perf_counter()  # includes omikuji's own parse of the file
        model = omikuji.Model.train_on_data(path, hp, n_threads=int(spec["threads"]))
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        top = np.full((test.n_samples, 5), -1, np.int64)
        for i in range(test.n_samples):
            lo, hi = test.x_indptr[i], test.x_indptr[i + 1]
            pred = model.predict(list(zip(test.x_indices[lo:hi].tolist(), test.x_values[lo:hi].tolist())), top_k=5)
            for j, (lab, _) in enumerate(pred[:5]):
                top[i, j] = lab
        return _tree_result("omikuji", train, train_s, time.perf_counter() - t0, _score_top5(top, test))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def csr_features(data, normalize: bool = False):
    """The dataset's X as a scipy CSR float32 matrix; `normalize`: each row scaled to unit L2 norm
    (all-zero rows stay zero)."""
    import scipy.sparse as sp

    x = sp.csr_matrix((np.asarray(data.x_values, np.float32), data.x_indices, data.x_indptr),
                      shape=(data.n_samples, data.n_features))
    if normalize:
        sq = np.add.reduceat(np.square(x.data, dtype=np.float64), x.indptr[:-1]) if x.nnz else np.zeros(0)
        counts = np.diff(x.indptr)
        norms = np.zeros(data.n_samples)
        norms[counts > 0] = np.sqrt(sq[counts > 0]) if x.nnz else 0.0
        norms[norms == 0] = 1.0
        x.data = (x.data / np.repeat(norms, counts)).astype(np.float32)
    return x


def csr_labels(data):
    """The dataset's label matrix Y as a scipy CSR float32 0/1 matrix (samples x labels)."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(data.y_indices.shape[0], np.float32), data.y_indices, data.y_indptr),
                         shape=(data.n_samples, data.n_labels))


def top5_from_csr(pred) -> np.ndarray:
    """(n, 5) label ids, best first (-1 pads), from a CSR matrix of scores per sample."""
    pred = pred.tocsr()
    top = np.full((pred.shape[0], 5), -1, np.int64)
    for i in range(pred.shape[0]):
        lo, hi = pred.indptr[i], pred.indptr[i + 1]
        order = np.argsort(-pred.data[lo:hi], kind="stable")[:5]
        top[i, :order.shape[0]] = pred.indices[lo:hi][order]
    return top


def _accuracy_pecos(train, test, spec) -> dict:
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    threads = int(spec["threads"])
    t0 = time.perf_counter()
    x, y = csr_features(train, normalize=True), csr_labels(train)
    label_feat = LabelEmbeddingFactory.create(y, x, method="pifa")
    chain = Indexer.gen(label_feat, threads=threads)
    model = XLinearModel.train(x, y, C=chain, threads=threads)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(csr_features(test, normalize=True), only_topk=5, threads=threads)
    top = top5_from_csr(pred)
    return _tree_result("pecos", train, train_s, time.perf_counter() - t0, _score_top5(top, test))


ACCURACY = {"torch": _accuracy_torch, "omikuji": _accuracy_omikuji, "pecos": _accuracy_pecos}


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
    if spec["mode"] == "ceiling":
        _emit({"result": machine_ceiling([int(t) for t in spec["threads"]])})
        return 0
    t0 = time.perf_counter()
    train, test = load_bench_data(spec["dataset"])
    load_seconds = time.perf_counter() - t0
    if system not in SLIDEPY:  # loading imported slidepy: give torch (imported next) the user's pools
        for key in SLIDEPY_ENV_DEFAULTS:
            if key in USER_ENV:
                os.environ[key] = USER_ENV[key]
            else:
                os.environ.pop(key, None)
    if spec["mode"] == "accuracy":
        if system in ACCURACY:
            out = ACCURACY[system](train, test, spec)
        else:
            out = _accuracy_slidepy(system, train, test, spec)
        out["load_seconds"] = load_seconds
        out["popularity_P@1"] = popularity_p1(train, test)
        out["n_labels"], out["n_features"], out["n_train"] = train.n_labels, train.n_features, train.n_samples
        out["n_test"] = test.n_samples
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
        tm0, rebuilds0 = dict(runner.timings()), runner.rebuilds()
        traffic = {"bytes": 0.0, "seconds": 0.0, "steps": 0}
        spent, steps, samples = 0.0, 0, 0
        while spent < seconds or steps < min_steps:
            before = runner.samples
            spent += runner.step(traffic if system == "lsh" else None)
            samples += runner.samples - before
            steps += 1
        tm1 = runner.timings()
        _emit({"samples_per_s": samples / spent, "steps": steps, "seconds": spent,
               "timings": {k: tm1[k] - tm0[k] for k in tm1}, "rebuilds": runner.rebuilds() - rebuilds0,
               "traffic": traffic})
    if hasattr(runner, "close"):
        runner.close()
    return 0


# -------------------------------------------------------------------------------------------------
# Parent side
# -------------------------------------------------------------------------------------------------

def worker_env(system: str) -> dict:
    """The environment a worker starts in: the user's (USER_ENV), plus slidepy's thread-pool
    defaults for a slidepy worker. They must be there from the start: the worker imports numpy,
    whose OpenBLAS reads OPENBLAS_THREAD_TIMEOUT as it loads, before it imports slidepy."""
    env = dict(USER_ENV)
    if system in SLIDEPY:
        import slidepy  # noqa: F401  (sets the defaults in this process's environment)

        for key in SLIDEPY_ENV_DEFAULTS:
            env.setdefault(key, os.environ[key])
    return env


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
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO),
                              env=worker_env(spec["system"]))
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
                                     stderr=subprocess.PIPE, text=True, cwd=str(REPO),
                                     env=worker_env(spec["system"]))
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
        # Rounds outermost: each round runs every thread count, so the counts meet the same phase
        # of training (index rebuilds come often early in a run and rarely later; with the thread
        # counts outermost every 1-thread segment fell in the early phase, every 2-thread one later).
        order = 0  # the segment's place in the run, all systems and thread counts
        for r in range(repeats):
            for t in threads_list:
                for system, server in servers.items():
                    if server.error:
                        continue
                    try:
                        res = server.ask({"cmd": "segment", "threads": t, "seconds": seconds, "min_steps": 1})
                    except RuntimeError as exc:
                        out["systems"][system]["error"] = str(exc)
                        continue
                    out["systems"][system]["segments"][str(t)].append({**res, "round": r + 1, "order": order})
                    order += 1
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
    for system, s in out["systems"].items():
        m = s.get("median_samples_per_s", {})
        priced = amortised_scaling(s.get("segments", {}))
        if priced:
            s["amortised"] = priced
            m = priced["samples_per_s"]
        if m.get("1"):
            s["efficiency"] = {t: m[t] / m["1"] / int(t) for t in m}
        if m.get("1") and m.get("2"):
            sc = out["scaling"][system] = {"sps1": m["1"], "sps2": m["2"], "efficiency_1_2": m["2"] / m["1"] / 2}
            med = s["median_samples_per_s"]
            if priced:
                sc["median_efficiency_1_2"] = med["2"] / med["1"] / 2
                sc.update({f"{part}_efficiency_1_2": e["2"] / 2 for part, e in priced["speedup"].items() if "2" in e})
                sc["rebuilds"] = priced["rebuilds"]
    return out


def amortised_scaling(segments: dict[str, list[dict]]) -> dict | None:
    """Samples/s per thread count with the index rebuilds charged at the run's own rate.

    Why. One trainer serves every thread count in turn, and a rebuild (seconds at the 670K shape)
    lands in whichever segment runs when the schedule calls it. On 2026-12-05 the last three
    rounds' 2-thread segments held one rebuild each and their 1-thread segments none, so the ratio
    of median samples/s read 0.67 where the steps alone scaled 0.80. Here a thread count's cost
    per sample is the median of its segments' step seconds per sample, plus the rebuilds per
    sample of the whole run (every thread count's segments) times its own seconds per rebuild.

    segments: thread count -> the segments of one system ({samples_per_s, seconds, timings:
    {step, rebuild}, rebuilds}). Returns None where they lack the timings (dense PyTorch) or a
    thread count has none; else {samples_per_s: {t: 1 / cost}, speedup: {"steps": {t: x},
    "rebuild": {t: x}} over 1 thread, rebuilds: "priced" | "none" | "unpriced: ..."}. A run whose
    rebuilds all fell in some thread counts' segments cannot price them in the others: the costs
    are then the steps' alone ("unpriced"); seconds of index work without a whole rebuild (a
    cluster index's refreshes) are charged per sample where the run had no rebuild at all."""
    segs = {t: [g for g in gs if "rebuilds" in g and "timings" in g] for t, gs in segments.items()}
    if not segs or any(not gs or len(gs) != len(segments[t]) for t, gs in segs.items()):
        return None

    def samples(g):
        return g["samples_per_s"] * g["seconds"]

    total_samples = sum(samples(g) for gs in segs.values() for g in gs)
    per_sample_rebuilds = sum(g["rebuilds"] for gs in segs.values() for g in gs) / total_samples
    step_cost = {t: float(np.median([g["timings"]["step"] / samples(g) for g in gs])) for t, gs in segs.items()}
    rebuild_seconds = {t: sum(g["timings"]["rebuild"] for g in gs) for t, gs in segs.items()}
    events = {t: sum(g["rebuilds"] for g in gs) for t, gs in segs.items()}
    if per_sample_rebuilds == 0:
        rebuild_cost = {t: rebuild_seconds[t] / sum(samples(g) for g in segs[t]) for t in segs}
        status, per_rebuild = "none", {}
    elif all(events.values()):
        per_rebuild = {t: rebuild_seconds[t] / events[t] for t in segs}
        rebuild_cost = {t: per_sample_rebuilds * per_rebuild[t] for t in segs}
        status = "priced"
    else:
        missing = sorted((t for t, n in events.items() if not n), key=int)
        rebuild_cost, per_rebuild = {t: 0.0 for t in segs}, {}
        status = f"unpriced: no rebuild in the {', '.join(missing)}-thread segments"
    cost = {t: step_cost[t] + rebuild_cost[t] for t in segs}
    speedup = {"steps": {t: step_cost["1"] / step_cost[t] for t in segs}} if "1" in segs else {}
    if per_rebuild and "1" in per_rebuild:
        speedup["rebuild"] = {t: per_rebuild["1"] / per_rebuild[t] for t in per_rebuild}
    return {"samples_per_s": {t: 1.0 / c for t, c in cost.items()}, "speedup": speedup, "rebuilds": status,
            "rebuilds_per_1k_samples": per_sample_rebuilds * 1000}


_CEILING_KERNELS = None  # (vector_work, scalar_work) once ceiling_kernels has built them


def ceiling_kernels():
    """machine_ceiling's probes, (vector_work, scalar_work), built on first use and uncached: they
    compile in a second, and bench.py's tree and torch workers never import numba.
    vector_work(rows, ids, scale, outs, reps): outs[t] += reps x sum_j scale[j] rows[ids[t, j]];
    scalar_work(outs, reps): outs[t, 0] = a chain of reps dependent multiply-adds."""
    global _CEILING_KERNELS
    if _CEILING_KERNELS is None:
        from numba import njit, prange

        @njit(fastmath=True)
        def axpy_rows(rows, ids, scale, out):
            for j in range(ids.shape[0]):
                row = rows[ids[j]]
                v = scale[j]
                for a in range(out.shape[0]):
                    out[a] += v * row[a]

        @njit(parallel=True, fastmath=True)
        def vector_work(rows, ids, scale, outs, reps):
            for t in prange(outs.shape[0]):
                for _ in range(reps):
                    axpy_rows(rows, ids[t], scale, outs[t])

        @njit(parallel=True)
        def scalar_work(outs, reps):
            for t in prange(outs.shape[0]):
                x = 1.0
                for _ in range(reps):
                    x = x * 1.0000001 + 1e-9
                outs[t, 0] = x

        _CEILING_KERNELS = (vector_work, scalar_work)
    return _CEILING_KERNELS


def machine_ceiling(threads: list[int], seconds: float = 0.5) -> dict:
    """The machine's own thread scaling, for reading slidepy's against: {probe: {n: efficiency}},
    efficiency = time at threads[0] / time at n for the same work per thread (1.0 is perfect).

    Two probes: "vector_fma", each thread multiply-adding 64 cache-resident 512-float rows into its
    own output (the shape of the kernels' dot products and row updates), and "scalar", a chain of
    dependent multiply-adds (latency-bound). Where the vector probe does not scale while the scalar
    one does, the cores share their vector units (hyperthread siblings, or a VM's vCPUs that are):
    on the 2-vCPU development VM the vector probe ran at 14.7 GMAC/s on one thread and 6.7 per
    thread on two (0.36-0.53 over six runs) while the scalar one scaled 1.0, so Bibtex's step, bound by
    multiply-adds, gains nothing from a second thread there."""
    from slidepy.threads import use_threads

    vector_work, scalar_work = ceiling_kernels()
    rng = np.random.default_rng(0)
    rows = rng.random((400, 512), dtype=np.float32)  # 800 KB: in L2, as a layer's hot rows
    ids = rng.integers(0, rows.shape[0], (max(threads), 64))
    scale = rng.random(64, dtype=np.float32)
    outs = np.zeros((max(threads), 512), np.float32)
    jobs = {"vector_fma": lambda n, reps: vector_work(rows, ids[:n], scale, outs[:n], reps),
            "scalar": lambda n, reps: scalar_work(outs[:n], reps * 4096)}
    result = {}
    for name, run in jobs.items():
        use_threads(1)
        run(1, 1)  # compile
        started = time.perf_counter()
        run(1, 100)
        reps = max(1, int(100 * seconds / max(time.perf_counter() - started, 1e-6)))
        times = {}
        for n in threads:
            use_threads(n)
            started = time.perf_counter()
            run(n, reps)
            times[n] = time.perf_counter() - started
        result[name] = {str(n): times[threads[0]] / times[n] for n in threads}
    return result


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


def time_to_p1(curve: list[dict], target: float, single_point: bool = False) -> float | None:
    """Training seconds at which the eval curve first reaches P@1 >= target (linear interpolation
    between eval points, from (0 s, P@1 0)); None if never. `single_point` (a tree: ready only
    when its training ends): its training seconds if its P@1 reaches the target, else None."""
    if target is None:
        return None
    if single_point:
        hit = [float(p["train_seconds"]) for p in curve if p.get("P@1") is not None and p["P@1"] >= target]
        return min(hit) if hit else None
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


def p1_at_epoch(result: dict, epoch: float) -> tuple[float | None, str | None]:
    """(P@1 after `epoch` epochs, a note or None) from a run's curve: the eval point at that epoch,
    else linear interpolation between the points either side; None if the run stopped before."""
    pts = [p for p in result.get("curve", []) if p.get("epoch") is not None and p.get("P@1") is not None]
    for p in pts:
        if abs(p["epoch"] - epoch) < 1e-9:
            return p["P@1"], None
    before = [p for p in pts if p["epoch"] < epoch]
    after = [p for p in pts if p["epoch"] > epoch]
    if not after:
        return None, f"ran {result.get('epochs') or 0:.2f} epochs, fewer than {epoch:g}"
    a = before[-1] if before else {"epoch": 0.0, "P@1": 0.0}
    b = after[0]
    v = a["P@1"] + (b["P@1"] - a["P@1"]) * (epoch - a["epoch"]) / (b["epoch"] - a["epoch"])
    return v, f"P@1 at epoch {epoch:g} interpolated between epochs {a['epoch']:.2f} and {b['epoch']:.2f}"


def time_to_matrix(systems: dict) -> dict:
    """{A: {B: training seconds A takes to reach B's final P@1, or None}} over the systems that
    ran (the diagonal: when A first reached its own final P@1)."""
    ok = {s: r for s, r in systems.items() if "error" not in r and r.get("curve")}
    return {a: {b: time_to_p1(ra["curve"], rb["P@1"], bool(ra.get("single_point"))) for b, rb in ok.items()}
            for a, ra in ok.items()}


# -------------------------------------------------------------------------------------------------
# The matrix
# -------------------------------------------------------------------------------------------------

def plan_dataset(name: str, opts: argparse.Namespace) -> dict:
    """Dataset spec + run settings for one dataset."""
    quick = opts.quick
    d = {"name": name, "cache_dir": str(Path(opts.out).resolve() / "cache")}
    n_labels = None
    if name in SYNTHETIC_SHAPES:
        d["noise_fraction"] = opts.noise_fraction
        n_labels = SYNTHETIC_SHAPES[name][1]
        if name == "tiny":
            d.update(n_train=opts.n_train or 1500, n_test=300, eval_subset=300)
        else:
            d.update(n_train=opts.n_train or (2000 if quick else 10000), n_test=opts.eval_subset or (200 if quick else 1000))
            d["eval_subset"] = d["n_test"]
    else:
        tr, te = dataset_paths(name, opts.data_root)
        d["train_path"], d["test_path"] = str(tr), str(te)
        d["n_train"] = opts.n_train or (4000 if quick and name.startswith("debian") else None)
        d["eval_subset"] = opts.eval_subset or (500 if quick else None)
        shape = header_shape(tr)
        n_labels = shape[2] if shape else None
    cfg_path = opts.config_map.get(name)
    if cfg_path is None and name in SHIPPED_CONFIGS and (REPO / SHIPPED_CONFIGS[name]).exists():
        cfg_path = SHIPPED_CONFIGS[name]
    run = {"synthetic": name in SYNTHETIC_SHAPES, "config_path": cfg_path, "max_steps": opts.max_steps, "max_seconds": opts.max_seconds,
           "evals": opts.evals, "lr_override": opts.lr, "batch_size_override": opts.batch_size, "n_labels": n_labels}
    if cfg_path:
        from slidepy import load_config

        cfg = load_config(_config_file(cfg_path))
        run.update(hidden=[int(h.size) for h in cfg.model.hidden], lr=opts.lr or cfg.training.lr,
                   dropout=cfg.model.dropout, lr_schedule=cfg.training.lr_schedule,
                   batch_size=opts.batch_size or cfg.training.batch_size, config_epochs=cfg.training.epochs,
                   primary=cfg.model.output.selection.mode)
    else:
        run.update(hidden=[HIDDEN], lr=opts.lr or 1e-3, batch_size=opts.batch_size or 128, config_epochs=None,
                   primary="lsh")
    run["epochs"] = opts.epochs or (1 if quick else (run["config_epochs"] or DEFAULT_EPOCHS.get(name, 1)))
    run["torch_epochs"] = opts.torch_epochs or opts.epochs or (1 if quick else TORCH_EPOCHS.get(name, run["epochs"]))
    if name in ("amazon670k", "delicious200k") and quick and not opts.max_steps:
        run["max_steps"] = 8
    return {"dataset": d, "run": run}


def n_labels_big(run: dict) -> bool:
    """A synthetic shape with 10^5 labels or more (amazon670k, delicious200k)."""
    return run.get("synthetic", False) and (run.get("n_labels") or 0) >= 100_000


def dataset_systems(systems: list[str], run: dict) -> list[str]:
    """The systems to run on one dataset: `slidepy` stands for the mode the config ships."""
    out = [run["primary"] if s == "slidepy" else s for s in systems]
    return list(dict.fromkeys(out))


def run_benchmark(opts: argparse.Namespace) -> dict:
    """Run the matrix `opts` describes; write results.json / results.md / curve-*.png into opts.out."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)
    # Parsed copies of the data sets: never part of a committed result folder.
    (out / "cache" / ".gitignore").write_text("*\n")
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 3
    if not hasattr(opts, "config_map"):
        opts.config_map = parse_config_map(getattr(opts, "config", None) or [])
    log = open(out / "bench.log", "a")
    spec_dir = tempfile.mkdtemp(prefix="bench-specs-")
    threads_list = sorted({int(t) for t in str(opts.threads).split(",") if t.strip()})
    import numba

    cores = numba.config.NUMBA_NUM_THREADS
    notes = []
    if max(threads_list) > cores:
        notes.append(f"threads {threads_list} asked but numba has {cores}: higher counts are clipped to {cores}")
    opts.systems_given = opts.systems is not None
    systems = [s.strip() for s in (opts.systems or ",".join(ALL_SYSTEMS)).split(",") if s.strip()]
    unknown = [s for s in systems if s not in ALL_SYSTEMS + ("slidepy",)]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}: choose from {', '.join(ALL_SYSTEMS + ('slidepy',))}")
    available = {"torch": "torch", "omikuji": "omikuji", "pecos": "pecos"}
    for s in list(systems):
        if s in available and not has_module(available[s]):
            notes.append(f"{s} skipped: `import {available[s]}` fails (pip install -e '.[bench]'"
                         + (", and torch==2.13.0" if s == "torch" else "") + ")")
            systems.remove(s)
    results = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
               "machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "cpus": os.cpu_count(), "numba_threads": cores,
                           "load_avg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None},
               "settings": {"quick": opts.quick, "repeats": opts.repeats, "threads": threads_list,
                            "segment_seconds": opts.segment_seconds, "batch_size": opts.batch_size,
                            "lr": opts.lr, "noise_fraction": opts.noise_fraction, "systems": systems,
                            "epochs": opts.epochs, "torch_epochs": opts.torch_epochs, "max_steps": opts.max_steps,
                            "max_seconds": opts.max_seconds},
               "notes": notes, "datasets": {}}
    t_start = time.perf_counter()
    if not opts.no_bandwidth:
        _log("memory bandwidth ...", log)
        # in a subprocess, so the 2 x 1 GiB of buffers never count toward any peak RSS
        results["memory_bandwidth"] = run_accuracy({"system": "bandwidth", "mode": "bandwidth",
                                                    "bytes": (256 if opts.quick else 1024) * 2**20},
                                                   spec_dir, 600, log)
        _log(f"  {results['memory_bandwidth']}", log)
        if len(threads_list) > 1:
            _log("machine ceiling (vector and scalar probes at each thread count) ...", log)
            results["machine_ceiling"] = run_accuracy({"system": "ceiling", "mode": "ceiling", "threads": threads_list},
                                                      spec_dir, 600, log)
            _log(f"  {results['machine_ceiling']}", log)
    acc_threads = max(threads_list)
    for name in [s.strip() for s in opts.datasets.split(",") if s.strip()]:
        why = dataset_available(name, opts.data_root)
        if why:
            notes.append(f"dataset {name} skipped: {why}")
            _log(f"dataset {name} skipped: {why}", log)
            continue
        plan = plan_dataset(name, opts)
        dspec, run = plan["dataset"], plan["run"]
        common = {"batch_size": run["batch_size"], "lr": run["lr"], "hidden": run["hidden"], "seed": 0,
                  "dropout": run.get("dropout", 0.0), "lr_schedule": run.get("lr_schedule", "constant"),
                  "config_path": run["config_path"], "lr_override": run["lr_override"],
                  "batch_size_override": run["batch_size_override"]}
        entry = {"spec": dspec, "run": run, "primary": run["primary"], "n_labels": run["n_labels"], "systems": {},
                 "configs": {}}
        results["datasets"][name] = entry
        ds_systems = dataset_systems(systems, run)
        if not opts.systems_given and n_labels_big(run):
            # Trees on the synthetic 10^5-10^6-label shapes take minutes and answer no target: only
            # when --systems names them.
            dropped = [s for s in ds_systems if s in TREES]
            ds_systems = [s for s in ds_systems if s not in TREES]
            if dropped:
                notes.append(f"{name}: {', '.join(dropped)} not run on this synthetic shape (name them in --systems to)")
        n_labels = run["n_labels"] or 0
        if "all" in ds_systems and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy and run["primary"] != "all":
            msg = (f"{name}: no accuracy run for `all` (exact softmax over {n_labels:,} labels is too slow here; "
                   "--all-accuracy forces it); the dense reference is torch")
            notes.append(msg)
            _log(msg, log)
        for s in ds_systems:
            entry["configs"][s] = describe_system(s, n_labels, run)
        _log(f"dataset {name}: {json.dumps({k: v for k, v in dspec.items() if k != 'cache_dir'})} "
             f"run {json.dumps({k: v for k, v in run.items()})}", log)
        neural = [s for s in ds_systems if s in NEURAL]
        if (name not in SYNTHETIC_SHAPES or opts.quick) and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy:
            neural = [s for s in neural if s != "all"]  # quick: a step of `all` at 670K labels takes ~10 s
        if neural and not opts.no_throughput:
            _log(f"{name}: interleaved throughput, systems {neural}, threads {threads_list}, "
                 f"{opts.repeats} rounds of {opts.segment_seconds:g} s", log)
            entry["throughput"] = run_throughput(dspec, neural, common, threads_list, opts.repeats,
                                                 opts.segment_seconds, spec_dir, log)
            entry["n_labels"] = entry["n_labels"] or entry["throughput"].get("n_labels")
        if not opts.no_accuracy:
            for system in ds_systems:
                if system == "all" and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy and run["primary"] != "all":
                    continue
                _log(f"{name}: accuracy run {system} ...", log)
                spec = {**common, **run, "dataset": dspec, "system": system, "mode": "accuracy",
                        "threads": acc_threads, "epochs": run["torch_epochs"] if system == "torch" else run["epochs"]}
                res = run_accuracy(spec, spec_dir, opts.worker_timeout, log)
                entry["systems"][system] = res
                entry["n_labels"] = entry["n_labels"] or res.get("n_labels")
                if "error" in res:
                    _log(f"  {system}: ERROR {res['error']}", log)
                else:
                    ep = res.get("epochs")
                    _log(f"  {system}: P@1 {res['P@1']:.4f} P@3 {res['P@3']:.4f} P@5 {res['P@5']:.4f}"
                         + (f" after {ep:.2f} epochs" if ep is not None else "")
                         + f", train {res['train_seconds']:.1f} s, {res.get('samples_per_s') or float('nan'):,.1f} "
                         f"samples/s, peak RSS {res['peak_rss_mb']:,.0f} MiB"
                         + (f" ({res['stopped']})" if res.get("stopped") else ""), log)
                _write_outputs(results, out)
        entry["time_to_p1"] = time_to_matrix(entry["systems"])
        results["targets"] = compute_targets(results)
        _write_outputs(results, out)  # partial results survive an interruption
    results["elapsed_seconds"] = time.perf_counter() - t_start
    results["targets"] = compute_targets(results)
    for name, entry in results["datasets"].items():
        png = out / f"curve-{name}.png"
        note = plot_dataset_curve(name, entry, png)
        if note:
            if note not in results["notes"]:
                results["notes"].append(note)
        else:
            entry["curve_png"] = png.name
    _write_outputs(results, out)
    shutil.rmtree(spec_dir, ignore_errors=True)
    log.close()
    return results


# -------------------------------------------------------------------------------------------------
# Targets
# -------------------------------------------------------------------------------------------------

def _target(name: str, dataset: str, goal_text: str, goal: float, *, measured=None, passed=None, fmt="{:.2f}",
            note: str | None = None) -> dict:
    """One row of the targets list. `passed` None means the systems it needs did not run."""
    return {"name": name, "dataset": dataset, "target": goal_text, "goal": goal, "measured": measured,
            "measured_text": _f(measured, fmt), "pass": passed,
            "status": "not run" if passed is None else ("pass" if passed else "fail"), "note": note}


def _get(results: dict, dataset: str, system: str):
    """(result, None) for a system that ran on a dataset, else (None, why not)."""
    e = results["datasets"].get(dataset)
    if e is None:
        return None, f"{dataset} not in this run"
    r = e["systems"].get(system)
    if r is None:
        return None, f"{system} did not run on {dataset}"
    if "error" in r:
        return None, f"{system} failed on {dataset}: {r['error'][:160]}"
    return r, None


def _primary(results: dict, dataset: str) -> str:
    e = results["datasets"].get(dataset)
    return e["primary"] if e and e.get("primary") else "lsh"


def _throughput_sps(results: dict, dataset: str, system: str, threads: str | None = None):
    tp = results["datasets"].get(dataset, {}).get("throughput", {})
    if not tp:
        return None
    t = threads or str(max(tp.get("threads", [1])))
    return tp.get("systems", {}).get(system, {}).get("median_samples_per_s", {}).get(t)


def _not_run(name, dataset, goal_text, goal, *whys) -> dict:
    return _target(name, dataset, goal_text, goal, note="; ".join(dict.fromkeys(w for w in whys if w)))


def _time_to_target(results, dataset, name, goal, ref_epochs, ref_label) -> dict:
    """slidepy (the shipped config) against dense PyTorch's P@1 after `ref_epochs` epochs:
    (torch's time to that P@1) / (slidepy's time to it) >= goal."""
    goal_text = f">= {goal:g}x sooner"
    sp_name = _primary(results, dataset)
    sp, why1 = _get(results, dataset, sp_name)
    tr, why2 = _get(results, dataset, "torch")
    if sp is None or tr is None:
        return _not_run(name, dataset, goal_text, goal, why1, why2)
    notes = []
    ref, how = p1_at_epoch(tr, ref_epochs)
    if ref is None:  # torch stopped early (--max-seconds / --torch-epochs): its final P@1 stands in
        ref = tr["P@1"]
        notes.append(f"torch {how}: its final P@1 {ref:.4f} stands in for its {ref_label} P@1")
    elif how:
        notes.append(how)
    t_torch = time_to_p1(tr["curve"], ref)
    t_sp = time_to_p1(sp["curve"], ref, bool(sp.get("single_point")))
    if t_sp is None:
        best = max((p["P@1"] for p in sp["curve"] if p.get("P@1") is not None), default=float("nan"))
        notes.append(f"{sp_name} never reached torch's {ref:.4f} (best {best:.4f} after {sp.get('epochs') or 0:.2f} "
                     f"epochs, {sp['train_seconds']:.1f} s)")
        # by how much: the same ratio at slidepy's own final P@1
        t_torch_sp, t_sp_sp = time_to_p1(tr["curve"], sp["P@1"]), time_to_p1(sp["curve"], sp["P@1"])
        if t_torch_sp and t_sp_sp:
            notes.append(f"to {sp_name}'s final {sp['P@1']:.4f}: torch {t_torch_sp:.1f} s, {sp_name} {t_sp_sp:.1f} s "
                         f"= {t_torch_sp / t_sp_sp:.2f}x")
        return _target(name, dataset, goal_text, goal, measured=None, passed=False, note="; ".join(notes))
    ratio = t_torch / t_sp if t_sp > 0 else float("inf")
    notes.insert(0, f"P@1 {ref:.4f}: torch {t_torch:.1f} s, {sp_name} {t_sp:.1f} s")
    return _target(name, dataset, goal_text, goal, measured=ratio, passed=ratio >= goal, fmt="{:.2f}x",
                   note="; ".join(notes))


def _sps_ratio(results, dataset, name, goal, a: str, b: str, threads: str | None = None) -> dict:
    """samples/s of `a` over `b`: interleaved throughput medians where both were measured there,
    else (threads None) the accuracy runs' training samples/s; beside the medians the note gives
    the accuracy runs' ratio too, the check a user makes (whole runs, one after the other)."""
    goal_text = f">= {goal:g}x"
    va, vb = _throughput_sps(results, dataset, a, threads), _throughput_sps(results, dataset, b, threads)
    ra, why1 = _get(results, dataset, a)
    rb, why2 = _get(results, dataset, b)
    runs = (ra.get("samples_per_s"), rb.get("samples_per_s")) if threads is None and ra and rb else (None, None)
    src = f"interleaved medians at {threads or 'the most'} thread(s)"
    if va is not None and vb is not None:
        if all(runs):
            src += f"; accuracy runs {runs[0]:,.0f} vs {runs[1]:,.0f} = {runs[0] / runs[1]:.2f}x"
    elif threads is None:
        if ra is None or rb is None:
            return _not_run(name, dataset, goal_text, goal, why1, why2)
        (va, vb), src = runs, "accuracy runs' training samples/s"
    if not va or not vb:
        return _not_run(name, dataset, goal_text, goal,
                        f"no samples/s for {a} and {b} on {dataset}" + (f" at {threads} thread(s)" if threads else ""))
    ratio = va / vb
    return _target(name, dataset, goal_text, goal, measured=ratio, passed=ratio >= goal, fmt="{:.2f}x",
                   note=f"{a} {va:,.0f} vs {b} {vb:,.0f} samples/s ({src})")


def _vs_trees(results, dataset) -> list[dict]:
    """Issue 9: the shipped config's P@1 and P@5 >= the better tree's, training time <= 3x the
    faster tree's."""
    sp_name = _primary(results, dataset)
    sp, why = _get(results, dataset, sp_name)
    trees = {t: _get(results, dataset, t) for t in TREES}
    ran = {t: r for t, (r, _) in trees.items() if r is not None}
    whys = [w for _, w in trees.values() if w]
    rows = []
    for k in ("P@1", "P@5"):
        name = f"{dataset}: slidepy {k} >= max(Omikuji, PECOS)"
        goal_text = f">= best tree {k}"
        if sp is None or not ran:
            rows.append(_not_run(name, dataset, goal_text, None, why, *(whys if not ran else [])))
            continue
        best_t = max(ran, key=lambda t: ran[t][k])
        best = ran[best_t][k]
        note = f"{sp_name} {sp[k]:.4f} vs {best_t} {best:.4f}" + "".join(
            f", {t} {r[k]:.4f}" for t, r in ran.items() if t != best_t)
        if whys:
            note += "; " + "; ".join(whys)
        rows.append(_target(name, dataset, f">= {best:.4f} ({best_t})", best, measured=sp[k],
                            passed=sp[k] >= best, fmt="{:.4f}", note=note))
    name = f"{dataset}: slidepy training time <= 3x the faster tree's"
    if sp is None or not ran:
        rows.append(_not_run(name, dataset, "<= 3x", 3.0, why, *(whys if not ran else [])))
    else:
        fast_t = min(ran, key=lambda t: ran[t]["train_seconds"])
        ratio = sp["train_seconds"] / ran[fast_t]["train_seconds"]
        rows.append(_target(name, dataset, "<= 3x", 3.0, measured=ratio, passed=ratio <= 3.0, fmt="{:.2f}x",
                            note=f"{sp_name} {sp['train_seconds']:.1f} s ({sp.get('epochs') or 0:.2f} epochs) vs "
                                 f"{fast_t} {ran[fast_t]['train_seconds']:.1f} s"))
    return rows


def _nextword_one_epoch(results) -> list[dict]:
    """Issue 9, DebianNextWord: slidepy's P@1 after 1 epoch beats PECOS's and dense PyTorch's
    1-epoch P@1."""
    ds = "debian-nextword"
    sp_name = _primary(results, ds)
    sp, why = _get(results, ds, sp_name)
    rows = []
    for other, label in (("pecos", "PECOS"), ("torch", "dense PyTorch's 1-epoch")):
        name = f"{ds}: slidepy 1-epoch P@1 > {label} P@1"
        r, why2 = _get(results, ds, other)
        if sp is None or r is None:
            rows.append(_not_run(name, ds, f"> {other}", None, why, why2))
            continue
        v, how = p1_at_epoch(sp, 1.0)
        notes = [how] if how else []
        ref = r["P@1"]
        if other == "torch":
            ref, how2 = p1_at_epoch(r, 1.0)
            if ref is None:
                ref = r["P@1"]
                notes.append(f"torch {how2}: its final P@1 stands in")
            elif how2:
                notes.append(f"torch: {how2}")
        if v is None:
            rows.append(_target(name, ds, f"> {ref:.4f}", ref, passed=False,
                                note=f"{sp_name} {how}: no 1-epoch P@1"))
            continue
        notes.insert(0, f"{sp_name} {v:.4f} vs {other} {ref:.4f}")
        rows.append(_target(name, ds, f"> {ref:.4f} ({other})", ref, measured=v, passed=v > ref, fmt="{:.4f}",
                            note="; ".join(notes)))
    return rows


def compute_targets(results: dict) -> list[dict]:
    """The targets of issues 10 and 9 as a list of {name, dataset, measured, target, pass, status,
    note}; every ratio is measured within this one run. Targets whose dataset or systems did not
    run are listed with pass None and status "not run"."""
    rows = [
        _time_to_target(results, "debian-deps", "DebianDeps: slidepy reaches dense PyTorch's 10-epoch P@1 >= 5x sooner",
                        5.0, 10.0, "10-epoch"),
        _time_to_target(results, "debian-nextword",
                        "DebianNextWord: slidepy reaches dense PyTorch's 1-epoch P@1 >= 10x sooner", 10.0, 1.0, "1-epoch"),
    ]
    sp = _primary(results, "debian-nextword")
    rows.append(_sps_ratio(results, "debian-nextword", "DebianNextWord: slidepy samples/s >= 15x dense PyTorch's",
                           15.0, sp, "torch"))
    ds = "amazon670k"
    rows.append(_sps_ratio(results, ds, "Amazon-670K shape: lsh samples/s >= 30x dense PyTorch's at 1 thread",
                           30.0, "lsh", "torch", threads="1"))
    name, goal_text = "Amazon-670K shape: lsh 1->2 thread efficiency >= 0.85", ">= 0.85"
    sc = results["datasets"].get(ds, {}).get("throughput", {}).get("scaling", {}).get("lsh")
    if sc:
        note = f"{sc['sps1']:,.0f} samples/s at 1 thread, {sc['sps2']:,.0f} at 2"
        if "median_efficiency_1_2" in sc:  # amortised_scaling
            parts = ", ".join(f"{part} {sc[part + '_efficiency_1_2']:.2f}" for part in ("steps", "rebuild")
                              if part + "_efficiency_1_2" in sc)
            note += (f", rebuilds charged at the run's rate ({sc['rebuilds']}; {parts}); "
                     f"ratio of median segment rates {sc['median_efficiency_1_2']:.2f}")
        rows.append(_target(name, ds, goal_text, 0.85, measured=sc["efficiency_1_2"], passed=sc["efficiency_1_2"] >= 0.85,
                            note=note))
    else:
        rows.append(_not_run(name, ds, goal_text, 0.85, f"{ds} not in this run" if ds not in results["datasets"]
                             else "no lsh throughput at 1 and 2 threads (--threads 1,2)"))
    name, goal_text = "Amazon-670K shape: lsh weight-row traffic >= 50% of copy bandwidth", ">= 50%"
    lt = results["datasets"].get(ds, {}).get("throughput", {}).get("systems", {}).get("lsh", {})
    bw = results.get("memory_bandwidth") or {}
    if lt.get("row_traffic_GBps") and bw.get("copy_GBps"):
        share = lt["row_traffic_GBps"] / bw["copy_GBps"]
        rows.append(_target(name, ds, goal_text, 0.5, measured=share * 100, passed=share >= 0.5, fmt="{:.0f}%",
                            note=f"{lt['row_traffic_GBps']:.2f} GB/s of {bw['copy_GBps']:.2f} GB/s"))
    else:
        rows.append(_not_run(name, ds, goal_text, 0.5, f"{ds} not in this run" if ds not in results["datasets"]
                             else "no lsh throughput or no bandwidth measurement (--no-bandwidth)"))
    name, goal_text = "Amazon-670K shape: lsh peak RSS < 4 GiB", "< 4,096 MiB"
    r, why = _get(results, ds, "lsh")
    rows.append(_target(name, ds, goal_text, 4096.0, measured=r["peak_rss_mb"], passed=r["peak_rss_mb"] < 4096.0,
                        fmt="{:,.0f} MiB") if r else _not_run(name, ds, goal_text, 4096.0, why))
    for d in TREE_TARGET_DATASETS:
        rows.extend(_vs_trees(results, d))
    rows.extend(_nextword_one_epoch(results))
    return rows


# -------------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------------

def _f(x, fmt="{:,.1f}", none="—"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return fmt.format(x)


def _cell(text) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def render_targets(targets: list[dict]) -> list[str]:
    L = ["| target | measured | goal | result | how |", "|---|---|---|---|---|"]
    for t in targets:
        res = {"pass": "PASS", "fail": "FAIL"}.get(t["status"], t["status"])
        L.append(f"| {_cell(t['name'])} | {t['measured_text']} | {_cell(t['target'])} | {res} | {_cell(t.get('note') or '')} |")
    return L


def render_markdown(results: dict) -> str:
    s = results["settings"]
    L = ["# slidepy benchmark", ""]
    L.append(f"Command: `{results.get('command', '')}`  ")
    m = results["machine"]
    L.append(f"Machine: {m['platform']}, Python {m['python']}, {m['cpus']} CPUs (numba threads {m['numba_threads']}), "
             f"load average at start {m.get('load_avg_at_start')}. Started {results['started']}"
             + (f", took {results['elapsed_seconds']:.0f} s." if "elapsed_seconds" in results else "."))
    L.append(f"Accuracy runs at {max(s['threads'])} thread(s). Throughput: {s['repeats']} interleaved rounds of "
             f"{s['segment_seconds']:g} s segments per thread count {s['threads']}; medians and ratios of medians."
             + (" **Quick mode: small sizes, numbers only check the plumbing.**" if s["quick"] else ""))
    L.append("")
    if results.get("targets"):
        L.append("## Targets")
        L.append("")
        L.append("Ratios measured within this run; \"not run\" where a system or dataset it needs did not run.")
        L.append("")
        L.extend(render_targets(results["targets"]))
        L.append("")
    bw = results.get("memory_bandwidth")
    bw = bw if bw and "copy_GBps" in bw else None
    for name, e in results["datasets"].items():
        d, run = e["spec"], e["run"]
        L.append(f"## {name}")
        L.append("")
        if name in SYNTHETIC_SHAPES:
            nf, nl, nnz, lps = SYNTHETIC_SHAPES[name]
            L.append(f"Synthetic (`make_synthetic`, seed 0): {nf:,} features, {nl:,} labels, ~{nnz} nnz and "
                     f"{lps[0]}-{lps[1]} labels per sample, {d['n_train']:,} train, **noise_fraction "
                     f"{d['noise_fraction']}** (raised from the default 0.2, at which the data is too easy for P@1 "
                     f"to separate systems); eval on {d['eval_subset']:,} test samples.")
        else:
            any_r = next((r for r in e["systems"].values() if "n_test" in r), {})
            where = (f"the whole test split ({any_r['n_test']:,} samples)" if not d.get("eval_subset") and any_r
                     else "the whole test split" if not d.get("eval_subset") else f"the first {d['eval_subset']:,} test samples")
            n_train = f", first {d['n_train']:,} training samples" if d.get("n_train") else ""
            L.append(f"Real data (`{REAL_PATHS[name][0]}`, {_f(e.get('n_labels'), '{:,}', '?')} labels{n_train}); "
                     f"exact P@k on {where}.")
        pops = [r.get("popularity_P@1") for r in e["systems"].values() if r.get("popularity_P@1") is not None]
        if pops:
            L.append(f"Always predicting the most frequent training label gives P@1 {pops[0]:.4f}.")
        L.append(f"slidepy: {run['epochs']:g} epoch(s) ("
                 + (f"`{run['config_path']}`'s output mode `{run['primary']}` is the shipped one" if run.get("config_path")
                    else "the bench's own settings")
                 + f"); torch: {run['torch_epochs']:g} epoch(s)"
                 + (f"; at most {run['max_steps']} steps" if run.get("max_steps") else "")
                 + (f"; at most {run['max_seconds']:g} training seconds per system" if run.get("max_seconds") else "")
                 + f"; eval at every epoch end and {run['evals']} points per run at least.")
        L.append("")
        tp = e.get("throughput", {})
        tmax = str(max(s["threads"]))
        L.append(f"| system | config | P@1 | P@3 | P@5 | train s | epochs | samples/s (training run) "
                 f"| samples/s @{tmax}t (interleaved median) | lsh / system | JIT compile s | peak RSS MiB "
                 f"| active neurons per layer | kernel / optimizer / rebuild / other % |")
        L.append("|" + "---|" * 14)
        names = list(dict.fromkeys(list(e["systems"]) + list(tp.get("systems", {}))))
        lsh_sps = tp.get("systems", {}).get("lsh", {}).get("median_samples_per_s", {}).get(tmax)
        for sys_name in names:
            a = e["systems"].get(sys_name, {})
            t = tp.get("systems", {}).get(sys_name, {})
            sps = t.get("median_samples_per_s", {}).get(tmax)
            ratio = lsh_sps / sps if lsh_sps and sps and sys_name != "lsh" else None
            err = a.get("error") or t.get("error")
            share = a.get("time_share") or {}
            share_txt = (" / ".join(_f(share.get(k, 0) * 100, "{:.0f}") for k in ("kernel", "optimizer", "rebuild", "other"))
                         if share else "—")
            comp = a.get("compile_seconds", t.get("compile_seconds"))
            active = a.get("active_mean")
            label = sys_name + (" (slidepy)" if sys_name == e.get("primary") and run.get("config_path") else "")
            L.append("| " + " | ".join([
                label + (f" (error: {_cell(err[:100])})" if err else ""),
                _cell(e.get("configs", {}).get(sys_name, describe_system(sys_name, e.get("n_labels") or 0, run))),
                _f(a.get("P@1"), "{:.4f}"), _f(a.get("P@3"), "{:.4f}"), _f(a.get("P@5"), "{:.4f}"),
                _f(a.get("train_seconds")),
                _f(a.get("epochs"), "{:.2f}") + (" (capped)" if a.get("stopped") else ""),
                _f(a.get("samples_per_s"), "{:,.0f}"), _f(sps, "{:,.0f}"), _f(ratio, "{:.2f}x"),
                _f(comp, "{:.1f}"), _f(a.get("peak_rss_mb"), "{:,.0f}"),
                ", ".join(f"{x:,.0f}" for x in active) if active else "—", share_txt]) + " |")
        L.append("")
        mat = e.get("time_to_p1") or {}
        if mat:
            cols = list(mat)
            L.append("Training seconds each system (row) takes to reach each system's final P@1 (column); "
                     "linear between eval points, trees only at their end; \"never\": not within its run.")
            L.append("")
            L.append("| system | " + " | ".join(f"→ {c} {e['systems'][c]['P@1']:.4f}" for c in cols) + " |")
            L.append("|---|" + "---|" * len(cols))
            for r in cols:
                L.append(f"| {r} | " + " | ".join(_f(mat[r].get(c), "{:,.1f}", "never") for c in cols) + " |")
            L.append("")
        if e.get("curve_png"):
            L.append(f"P@1 against training seconds: `{e['curve_png']}`.")
            L.append("")
        if tp.get("ratios"):
            L.append("Ratios of median samples/s (interleaved, " + tmax + " threads): "
                     + ", ".join(f"{k} = {v:.2f}x" for k, v in tp["ratios"].items()) + ".")
        if tp.get("systems"):
            L.append("")
            L.append("Thread scaling (median samples/s per thread count; efficiency = (sps_n / sps_1) / n, where "
                     "sps_n charges the index rebuilds at the run's rate: `amortised_scaling`):")
            L.append("")
            L.append("| system | " + " | ".join(f"{t} thr" for t in s["threads"]) + " | efficiency | peak RSS MiB |")
            L.append("|---|" + "---|" * (len(s["threads"]) + 2))
            for sys_name, t in tp["systems"].items():
                med = t.get("median_samples_per_s", {})
                eff = t.get("efficiency", {})
                L.append(f"| {sys_name} | " + " | ".join(_f(med.get(str(x))) for x in s["threads"]) + " | "
                         + ", ".join(f"{k}t {v:.2f}" for k, v in eff.items() if k != "1") + " | "
                         + _f(t.get("peak_rss_mb"), "{:,.0f}") + " |")
            lt = tp["systems"].get("lsh", {})
            if bw and lt.get("row_traffic_GBps") is not None:
                L.append("")
                L.append(f"Memory bandwidth: NumPy copy {bw['copy_GBps']:.2f} GB/s (read+write, {bw['bytes'] / 2**30:.2f} GiB, "
                         f"median of {bw['repeats']}); slidepy lsh output-layer weight-row traffic "
                         f"{lt['row_traffic_GBps']:.2f} GB/s ({lt['row_traffic_bytes_per_step'] / 2**20:,.1f} MiB/step: active rows x width x 4 B x 4 "
                         f"(W read fwd + bwd, grad read+write) + optimizer rows x width x 4 B x 8 (param, grad, m, v read+write), "
                         f"over kernel+optimizer step time) = {lt['row_traffic_GBps'] / bw['copy_GBps'] * 100:.0f}% of copy bandwidth.")
        L.append("")
    ceiling = results.get("machine_ceiling")
    if ceiling and "vector_fma" in ceiling:
        L.append("Machine ceiling (`machine_ceiling`: efficiency at the same work per thread, 1.00 is perfect): "
                 + "; ".join(f"{probe} " + ", ".join(f"{n} thr {e:.2f}" for n, e in effs.items())
                             for probe, effs in ceiling.items() if isinstance(effs, dict))
                 + ". Where the vector probe does not scale, neither can a kernel bound by multiply-adds.")
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


def plot_dataset_curve(name: str, entry: dict, path: Path) -> str | None:
    """P@1 against training seconds for every system of one dataset (a tree is one marker).

    slidepy.plot draws runs from their metrics.jsonl (six panels of one trainer's records); the
    bench's systems include PyTorch and trees, which have no metrics.jsonl, so this draws the one
    panel the bench needs the same way (matplotlib's Figure, no pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "curve-*.png not written: matplotlib is not importable (pip install -e '.[bench]')"
    ok = {s: r for s, r in entry["systems"].items() if "error" not in r and r.get("curve")}
    if not ok:
        return None if not entry["systems"] else f"curve-{name}.png not written: no system finished"
    fig = Figure(figsize=(8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (sys_name, r) in enumerate(ok.items()):
        c = r["curve"]
        label = sys_name + (" (slidepy config)" if sys_name == entry.get("primary") and entry["run"].get("config_path") else "")
        label += f": {r['P@1']:.3f}"
        xs = [p["train_seconds"] for p in c if p.get("P@1") is not None]
        ys = [p["P@1"] for p in c if p.get("P@1") is not None]
        if r.get("single_point"):
            ax.plot(xs, ys, linestyle="none", marker="*", markersize=14, color=f"C{i % 10}", label=label)
        else:
            ax.plot(xs, ys, marker="o", markersize=4, color=f"C{i % 10}", label=label)
    xs_all = [p["train_seconds"] for r in ok.values() for p in r["curve"] if p.get("P@1") is not None]
    if xs_all and min(xs_all) > 0:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training seconds (evaluation and compilation excluded)")
    ax.set_ylabel("P@1 (exact)")
    n_test = next((r.get("n_test") for r in ok.values() if r.get("n_test")), None)
    ax.set_title(f"{name}: P@1 against training seconds" + (f" ({n_test:,} test samples)" if n_test else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        return f"{path}: cannot write ({exc})"
    return None


def _write_outputs(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=_json_default))
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(render_markdown(results) + "\n")


# -------------------------------------------------------------------------------------------------
# CLI
# -------------------------------------------------------------------------------------------------

def parse_config_map(items: list[str]) -> dict:
    """`--config NAME=PATH` items -> {NAME: PATH}."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--config {item!r}: expected NAME=PATH, e.g. debian-deps=configs/debian-deps.yaml")
        out[name.strip()] = path.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench", help="output directory (default bench)")
    p.add_argument("--quick", action="store_true", help="small sizes: check the plumbing in a few minutes")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma list of {', '.join(list(SYNTHETIC_SHAPES) + list(REAL_PATHS))}")
    p.add_argument("--systems", default=None,
                   help="comma list of lsh, all, random, torch, omikuji, pecos (default: all of them; the trees "
                        "only on real data); `slidepy` = the mode the dataset's config ships")
    p.add_argument("--config", action="append", metavar="NAME=PATH",
                   help="the slidepy config for dataset NAME (default configs/<dataset>.yaml where shipped)")
    p.add_argument("--data-root", default=None,
                   help="where ../shared/data is (default: found from the repository root upwards)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training samples (synthetic: generated, default 10000, quick 2000; real: the first N)")
    p.add_argument("--eval-subset", type=int, default=None,
                   help="test samples scored (synthetic default 1000; real: the whole test split)")
    p.add_argument("--noise-fraction", type=float, default=0.55,
                   help="synthetic noise fraction (default 0.55; 0.2, the generator's default, is too easy)")
    p.add_argument("--epochs", type=float, default=None,
                   help="epochs of every neural system (default: the config's; torch per --torch-epochs)")
    p.add_argument("--torch-epochs", type=float, default=None,
                   help="epochs of dense PyTorch (default --epochs, else 10 on debian-deps and 1 on debian-nextword)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on the steps of each neural accuracy run")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="cap on the training seconds of each neural accuracy run (trees are not capped)")
    p.add_argument("--evals", type=int, default=4, help="eval points per accuracy run (at least; plus every epoch end)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's, else 128")
    p.add_argument("--lr", type=float, default=None, help="default: the config's, else 1e-3")
    p.add_argument("--threads", default="1,2",
                   help="thread counts for throughput/scaling, e.g. 1,2,4,8,16; accuracy runs use the largest")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds per thread count (default 3; quick 2)")
    p.add_argument("--segment-seconds", type=float, default=None, help="timed segment length (default 6; quick 1.5)")
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="wall-clock cap per worker subprocess")
    p.add_argument("--all-accuracy", action="store_true",
                   help=f"also run `all` on label sets >= {ALL_MAX_LABELS:,} (skipped by default: too slow)")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--worker", metavar="JSON_SPEC", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.worker:
        return worker_main(opts.worker)
    sys.path.insert(0, str(REPO))
    opts.config_map = parse_config_map(opts.config or [])
    if opts.segment_seconds is None:
        opts.segment_seconds = 1.5 if opts.quick else 6.0
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 3
    if opts.quick and opts.datasets == ",".join(DEFAULT_DATASETS):
        opts.datasets = ",".join(QUICK_DATASETS)
    run_benchmark(opts)
    print()
    print((Path(opts.out) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
