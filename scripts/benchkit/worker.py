"""One system in its own subprocess (`bench.py --worker SPEC`), so that its peak RSS is its own: an
accuracy run that prints one result, or a server of timed training segments (throughput)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import MARK, REPO, SLIDEPY_ENV_DEFAULTS, USER_ENV, json_default
from .datasets import load_bench_data, popularity_p1
from .machine import machine_ceiling, memory_bandwidth
from .systems import HIDDEN, SLIDEPY, config_file, shipped_config, slidepy_config


def _import_torch_baseline():
    spec = importlib.util.spec_from_file_location("torch_baseline", REPO / "scripts" / "torch_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


class SlidepyRunner:
    """A slidepy Trainer driven one `Trainer.train_step` at a time: the loop of Trainer.fit (same
    epoch order, train step, scheduled rebuild), with no checkpoints or evaluations of its own
    (checkpoint_every 0, eval.every beyond any run)."""

    def __init__(self, system: str, train, test, spec: dict):
        from slidepy import Trainer

        self.system, self.train, self.test = system, train, test
        threads = _set_threads(spec["threads"])
        if spec.get("config_path"):
            cfg = shipped_config(config_file(spec["config_path"]), system, threads=threads,
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
        self.leaves_seconds = 0.0  # model.reranker's fit at the end (fit_leaves)

    def plan(self, total_steps: int) -> None:
        """Tell the trainer how many steps this run will take, as Trainer.fit does before its loop:
        a learning-rate schedule (training.lr_schedule: linear) decays over them. Trainer.fit keeps
        the figure in `_total_steps`; a trainer without it has no schedule to feed."""
        if hasattr(self.trainer, "_total_steps"):
            self.trainer._total_steps = int(total_steps)

    @property
    def train_seconds(self) -> float:
        """Training seconds so far: steps plus table rebuilds (what a time budget counts) plus the
        index's first build, when the engine was made: the trees' timings hold their own index
        builds (PECOS' clustering, Omikuji's tree), so slidepy's must hold its own; and the
        re-ranking leaves' fit, once made (as the trees' times hold their leaves')."""
        return self.trainer.budget_seconds + self.engine.index_build_seconds + self.leaves_seconds

    def fit_leaves(self) -> bool:
        """Fit model.reranker's leaves for the final weights, as `slidepy train` ends its run
        (Trainer.fit); False where the config has none."""
        model = self.trainer.model
        if not model.reranker_due():
            return False
        # their kernels compile (or load) first, off the clock like the training kernels' compile
        self.compile_seconds += model.compile_reranker(self.train, self.trainer.held_out)
        self.leaves_seconds += model.fit_reranker(self.train, self.trainer.held_out)
        return True

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

# The steps a throughput run (serve mode) plans for: more than any run of segments takes, so its
# learning rate stays at the warm-up's end (a linear decay over 2^31 steps moves it < 0.01%).
SERVE_PLANNED_STEPS = 2**31 - 1


class TorchRunner:
    def __init__(self, train, test, spec: dict):
        self.tb = _import_torch_baseline()
        self.train, self.test, self.spec = train, test, spec
        self.params = set(inspect.signature(self.tb.train_torch).parameters)
        self.step_time: dict = {}

    def _kwargs(self, **kw) -> dict:
        """train_torch's arguments for the network and training of slidepy's config (the spec's
        `network`, matrix.network_settings): every hidden layer, dropout, init, input scale (its
        "auto" resolved on this training set as slidepy resolves it), Adam's settings and the
        learning rate's warm-up and schedule."""
        s = self.spec
        net = dict(s.get("network") or {})
        if net.get("input_scale") == "auto":
            from slidepy.model import input_scale_for

            net["input_scale"] = input_scale_for(self.train)
        base = dict(hidden=[int(h) for h in s.get("hidden", [HIDDEN])], batch_size=int(s["batch_size"]),
                    lr=float(s["lr"]), seed=int(s.get("seed", 0)), dropout=float(s.get("dropout", 0.0)),
                    lr_schedule=s.get("lr_schedule", "constant"), **net)
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


def serve_runner(system: str, train, test, spec: dict):
    """The runner a throughput worker steps through its segments. slidepy's plans a run with no end
    in sight (SERVE_PLANNED_STEPS), so the segments measure the pace of its start and keep it: with
    the config's own planned steps a linear schedule would decay to 0 within the segments and, under
    rebuild.pace: lr, stop the rebuilds, flattering the later (more-thread) segments."""
    if system == "torch":
        return TorchRunner(train, test, spec)
    runner = SlidepyRunner(system, train, test, spec)
    runner.plan(SERVE_PLANNED_STEPS)
    return runner


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
    if runner.fit_leaves():  # the run's final point: its network re-ranked by the leaves, their fit on the clock
        t0 = time.perf_counter()
        m = runner.evaluate()
        eval_seconds += time.perf_counter() - t0
        curve.append({"step": runner.steps, "epoch": runner.steps / spe, "train_seconds": runner.train_seconds,
                      "reranked": True, **{k: m[k] for k in ("P@1", "P@3", "P@5")}})
    tm = runner.timings()
    # the curve's clock (steps + rebuilds + the first index build): the trees' seconds hold their
    # own index builds, and a time to accuracy read off the curve must not exceed the run's time
    train_s = runner.train_seconds
    tm["index_build"] = runner.engine.index_build_seconds
    out = {"system": system, "steps": runner.steps, "epochs": runner.steps / spe, "steps_per_epoch": spe,
           "train_seconds": train_s, "samples_per_s": runner.samples / train_s if train_s else float("nan"),
           "compile_seconds": runner.compile_seconds, "build_seconds": runner.build_seconds,
           "leaves_seconds": runner.leaves_seconds,
           "eval_seconds": eval_seconds, "curve": curve, "stopped": stopped,
           "active_mean": (runner.active_sum / max(1, runner.steps)).tolist(),
           "time_share": {k: tm[k] / train_s for k in ("kernel", "optimizer", "rebuild", "index_build")}
           if train_s else {},
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
    sys.stdout.write(MARK + json.dumps(obj, default=json_default) + "\n")
    sys.stdout.flush()


def worker_main(spec_text: str) -> int:
    spec = json.loads(spec_text)
    if "_file" in spec:  # the spec may also be given as {"_file": path}
        spec = json.loads(Path(spec["_file"]).read_text())
    sys.path.insert(0, str(REPO))
    system = spec["system"]
    if spec["mode"] == "bandwidth":
        _emit({"result": memory_bandwidth(int(spec["bytes"]), threads=tuple(spec.get("threads", (1,))))})
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
    runner = serve_runner(system, train, test, spec)
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
