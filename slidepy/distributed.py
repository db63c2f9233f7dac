"""Data-parallel training on Ray: N actors, each a full replica, agreeing every `sync_every` steps.

    slidepy train --config X --workers 2                       # a local Ray, bound to 127.0.0.1
    slidepy train --config X --workers 8 --ray-address HOST:PORT   # join a running cluster

Each worker (a Ray actor with `threads` CPUs, numba running that many threads) builds its own
Trainer and Engine: the same initial weights (same seed), its own LSH tables, rebuilt on the usual
schedule at its own steps. `training.batch_size` B stays the global batch: step b of epoch e is
the single-process batch `order[b*B : (b+1)*B]` (the same permutation), and worker r trains on its
slice `[r::W]` (B/W samples) with the existing Hogwild kernels. So a run takes the same steps per
epoch, sees the same samples per step and counts steps, logs, evals and checkpoints exactly as a
single process does, whatever W: a checkpoint's position means the same to any number of workers,
and `--resume` works with the same or another W (or none).

Sync scheme: **averaging the touched rows with their optimizer state.** During a round each
worker ORs the engine's per-batch touched marks (`Engine.touched_log`, set before the optimizer
clears `row_touched`) into a per-sync bitmap. At the sync, row r of every layer (and bias r)
becomes the mean, over the workers that touched r since the last sync, of (weight row, Adam
m row, Adam v row); rows nobody touched are already equal everywhere. Why this and not a sparse
all-reduce of deltas:
  * no snapshot of the last synced model is needed (a delta needs one: +1 copy of a 670K-row
    layer per worker); a row touched by one worker keeps that worker's whole update (no 1/W
    dilution), a row touched by all is plain model averaging (local SGD);
  * replicas leave every sync bit-identical, moments included, so worker 0's checkpoint is the
    whole state, and a resume with a different W is exact;
  * Adam stays consistent: with per-worker moments, a row a worker has rarely touched has
    m = v ~ 0 there, and lazy Adam's first step on it is several times lr whatever its gradient.
The price is 3x the bytes of a weights-only exchange (w, m, v per row); see README "Scale on
paper". With SGD only weights and biases travel.

Wire pattern: a sparse reduce-scatter then all-gather, peer to peer through Ray's object store
(the driver passes object refs, never data). Worker r splits its touched rows by owner
(row % W); owner j averages what it receives for its rows and every worker applies every owner's
result. Bytes crossing between workers per sync (counted in `sync_bytes`): each worker's touched
rows owned by others, plus each owner's averaged rows times (W - 1); a row costs 4 + 12*D bytes
(id + w, m, v of D floats).

Learning rate: each worker runs Adam at lr * sqrt(W) (SGD at lr), checkpoints keep lr. A worker's
step sees B/W samples; where gradient noise dominates, an Adam step m/sqrt(v) shrinks with the
square root of the batch, and averaging W such steps gives ~1/sqrt(W) of one process's step (the
square-root scaling rule for Adam), on training.lr_schedule as in one process; a time budget ends
the run after the round that spent it. Measured at equal epochs, 2 workers: quick start P@1 0.690
unscaled, 0.760 scaled, 0.753 one process; DebianDeps 0.594 / 0.644 / 0.646 (README).

Operations: worker 0 writes metrics.jsonl and checkpoints in the normal format (a Trainer
subclass that adds `workers`, `sync_seconds`, `sync_bytes` to every record). Steps are submitted
one remote call each, so a dead worker is named with the step it died in; the run then stops
with WorkerLost (one line), the last checkpoint untouched. SIGINT/SIGTERM on the driver finish
the current round, sync, save and stop the group (TrainingInterrupted, as in trainer.py).
A local run starts Ray with every server on 127.0.0.1, no dashboard and no usage reporting;
only `ray_address` joins a cluster. Ray is imported only here, only when training with workers.

Shape letters: W workers, R rows of a layer's weights (features for layer 0, neurons above),
D row width, N neurons (biases), U rows in a payload.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np

from .rundir import list_checkpoints
from .config import Config, config_to_dict
from .configfile import load_config
from .errors import ConfigError, NumericalError, SlidepyError, StopNow
from .rng import derive_int_seed
from .trainer import (CheckpointClock, Trainer, TrainingInterrupted, advance_bar, bar_position, eval_along_due,
                      load_data, progress_bar, show_rate)

# Test hook: "RANK:STEP" makes worker RANK SIGKILL itself right after finishing step STEP (the
# kill-a-worker test; an OOM kill looks the same to the driver).
KILL_ENV = "SLIDEPY_TEST_KILL_WORKER"
# Worker r > 0 draws its sample streams (random negatives) from derive_int_seed(seed, WORKER_SEED_STREAM, r).
WORKER_SEED_STREAM = 0x574B52  # "WKR" in ASCII


class WorkerLost(SlidepyError):
    """A Ray worker died (killed, out of memory, node lost): the run stopped, checkpoints intact."""


# ---------------------------------------------------------------------------------------------
# The sync, as plain functions over layer arrays (tested without Ray in tests/test_distributed.py)
# ---------------------------------------------------------------------------------------------


def new_touched_log(layers) -> list:
    """Per layer (rows (R,) uint8, biases (N,) uint8), all zero: what Engine.touched_log holds."""
    return [(np.zeros(layer.weights.shape[0], np.uint8), np.zeros(layer.bias.shape[0], np.uint8))
            for layer in layers]


def _row_arrays(layer) -> tuple:
    """The per-row arrays that travel: weights and, under Adam, both moments."""
    return (layer.weights, layer.weight_m, layer.weight_v) if layer.weight_m.size else (layer.weights,)


def _bias_arrays(layer) -> tuple:
    return (layer.bias, layer.bias_m, layer.bias_v) if layer.bias_m.size else (layer.bias,)


def scatter_touched(layers, touched_log, n_shards: int) -> list:
    """Split this worker's touched rows by owner shard (row % n_shards).

    Returns payloads[j] = per layer (row ids (U,) int32, tuple of (U, D) float32 row arrays,
    bias ids (U',) int32, tuple of (U',) float32 bias arrays): the rows shard j averages.
    """
    payloads = [[] for _ in range(n_shards)]
    for layer, (rows_seen, biases_seen) in zip(layers, touched_log):
        rows = np.flatnonzero(rows_seen).astype(np.int32)
        biases = np.flatnonzero(biases_seen).astype(np.int32)
        row_owner = rows % n_shards
        bias_owner = biases % n_shards
        for j in range(n_shards):
            r = rows[row_owner == j]
            b = biases[bias_owner == j]
            payloads[j].append((r, tuple(a[r] for a in _row_arrays(layer)),
                                b, tuple(a[b] for a in _bias_arrays(layer))))
    return payloads


def _mean_by_id(ids: list, arrays: list) -> tuple:
    """Unique ids (ascending) and, per array group, the mean of the rows sharing an id.

    ids[w] are one worker's ids, ascending and unique (np.flatnonzero order), so each worker's
    rows land on distinct positions of the union and can be added with one fancy-indexed `+=`
    (no sort of the float rows)."""
    union = np.unique(np.concatenate(ids)).astype(np.int32)
    n_groups = len(arrays[0])
    counts = np.zeros(union.shape[0], np.float32)
    sums = [np.zeros((union.shape[0], *arrays[0][g].shape[1:]), np.float32) for g in range(n_groups)]
    for worker_ids, worker_arrays in zip(ids, arrays):
        if worker_ids.shape[0] == 0:
            continue
        where = np.searchsorted(union, worker_ids)
        counts[where] += 1.0
        for total, values in zip(sums, worker_arrays):
            total[where] += values
    for total in sums:
        total /= counts if total.ndim == 1 else counts[:, None]
    return union, tuple(sums)


def reduce_shard(payloads: list) -> list:
    """Average the payloads every worker sent to one shard: per layer, each row (bias) id once,
    with the mean over the workers that touched it. Same structure as one scatter payload."""
    merged = []
    for l in range(len(payloads[0])):
        rows, row_values = _mean_by_id([p[l][0] for p in payloads], [p[l][1] for p in payloads])
        biases, bias_values = _mean_by_id([p[l][2] for p in payloads], [p[l][3] for p in payloads])
        merged.append((rows, row_values, biases, bias_values))
    return merged


def apply_merged(layers, touched_log, merged_shards: list) -> None:
    """Write every shard's averaged rows into this replica and clear the touched log."""
    for shard in merged_shards:
        for layer, (rows, row_values, biases, bias_values) in zip(layers, shard):
            for target, values in zip(_row_arrays(layer), row_values):
                target[rows] = values
            for target, values in zip(_bias_arrays(layer), bias_values):
                target[biases] = values
    for rows_seen, biases_seen in touched_log:
        rows_seen[...] = 0
        biases_seen[...] = 0


def payload_bytes(payload: list) -> int:
    """Bytes of the arrays in one payload (what crosses the wire, serialisation overhead aside)."""
    return int(sum(r.nbytes + sum(a.nbytes for a in rv) + b.nbytes + sum(a.nbytes for a in bv)
                   for r, rv, b, bv in payload))


def dense_sync_bytes(layers, n_workers: int) -> int:
    """Bytes the same reduce-scatter + all-gather would move if every row were touched: each
    worker sends (W-1)/W of the model twice, so 2 (W-1) model copies in all (ids not counted)."""
    model = sum(sum(a.nbytes for a in _row_arrays(layer)) + sum(a.nbytes for a in _bias_arrays(layer))
                for layer in layers)
    return 2 * (n_workers - 1) * model


# ---------------------------------------------------------------------------------------------
# The worker: a Ray actor around a Trainer
# ---------------------------------------------------------------------------------------------


class _ReplicaTrainer(Trainer):
    """Worker 0's Trainer: every metrics.jsonl record also carries the group's sync figures, and
    checkpoints hold the configured learning rate, not the scaled one the workers use."""

    n_workers = 1
    worker_lr_factor = 1.0  # the workers' learning rate is training.lr times this (see Worker)
    sync_seconds = 0.0
    sync_bytes = 0  # bytes of the last sync, all workers together
    # the driver's clock of the run (rounds' wall time: steps, rebuilds and syncs), which the time
    # budget counts; checkpoints keep it, so that a resumed run goes on from it
    round_seconds: float | None = None

    def _progress(self) -> dict:
        progress = super()._progress()
        if self.round_seconds is not None:
            progress["round_seconds"] = self.round_seconds
        return progress

    def _restored(self, meta: dict) -> None:
        self.round_seconds = meta.get("round_seconds")  # None in a checkpoint written before it was kept

    def checkpoint(self) -> str:
        scaled = self.engine.lr
        self.engine.lr = scaled / self.worker_lr_factor
        try:
            return super().checkpoint()
        finally:
            self.engine.lr = scaled

    def _record(self, event: str, **fields) -> dict:
        fields = {"workers": self.n_workers, "sync_seconds": round(self.sync_seconds, 4),
                  "sync_bytes": self.sync_bytes, **fields}
        return super()._record(event, **fields)


def _guard_broken_pyarrow() -> None:
    """Ray imports pyarrow whenever it is installed and only tolerates ModuleNotFoundError; a
    pyarrow built for another numpy raises ImportError and breaks every Ray call. Hide it (until
    _unguard_pyarrow: other libraries in the driver's process, scikit-learn for one, take a
    `None` in sys.modules for an imported pyarrow)."""
    if "pyarrow" in sys.modules:
        return
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        pass
    except Exception:  # ImportError from a binary mismatch
        sys.modules["pyarrow"] = None  # makes `import pyarrow` raise ModuleNotFoundError


def _unguard_pyarrow() -> None:
    """Undo _guard_broken_pyarrow in the driver once Ray is shut down."""
    if "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
        del sys.modules["pyarrow"]


class Worker:
    """One replica. Created through ray.remote(Worker) by the driver; rank 0 also keeps the run
    directory (metrics.jsonl, checkpoints). Methods are called in submission order."""

    def __init__(self, config: dict, rank: int, n_workers: int, threads: int, run_dir: str, cwd: str,
                 kill_at_step: int | None = None):
        if os.path.isdir(cwd):  # relative data paths mean what they mean to the driver
            os.chdir(cwd)
        try:  # Ctrl-C in a terminal reaches the whole process group: the driver decides
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:
            pass
        self.rank, self.n_workers = rank, n_workers
        self.kill_at_step = kill_at_step
        self._setup_error: SlidepyError | None = None
        try:
            self._set_up(config, threads, run_dir)
        except SlidepyError as exc:  # bad data or config: info() raises it, and the driver re-raises it
            self._setup_error = exc  # (raised here, Ray would report a dead actor without it)

    def _set_up(self, config: dict, threads: int, run_dir: str) -> None:
        rank, n_workers = self.rank, self.n_workers
        cfg = load_config(config, [f"training.threads={threads}"])
        train, test = load_data(cfg)
        cls = _ReplicaTrainer if rank == 0 else Trainer
        self.trainer = cls(cfg, train=train, test=test if rank == 0 else None, run_dir=run_dir, progress=False)
        self.trainer.n_workers = n_workers
        engine = self.trainer.engine
        # Same initial weights and hash functions everywhere (same seed), but each worker draws its
        # own random negatives: otherwise all would sample the same ones at the same step. Rank 0
        # keeps the run's own stream, so one worker is exactly one process.
        engine.seed = derive_int_seed(cfg.training.seed, WORKER_SEED_STREAM, rank) if rank else cfg.training.seed
        engine.touched_log = new_touched_log(engine.layers)
        # Adam's square-root scaling: each worker's step sees B/W samples, and in the noise-dominated
        # regime an Adam step shrinks with the square root of the batch, so averaged steps come out
        # ~1/sqrt(W) of one process's. SGD steps are linear in the gradient: averaging is exact.
        self.lr_scale = math.sqrt(n_workers) if cfg.training.optimizer == "adam" else 1.0
        self.trainer.worker_lr_factor = self.lr_scale
        engine.lr = cfg.training.lr * self.lr_scale
        self.compile_seconds = engine.warmup(train)
        self.batch = cfg.training.batch_size  # the global batch; this worker takes 1/W of it
        self.n_train = train.n_samples
        self.local_batches = self.trainer.schedule.batches_per_epoch  # steps per epoch, as in one process
        self._order_epoch, self._order = -1, None

    # -- set-up ---------------------------------------------------------------------------------

    def info(self) -> dict:
        if self._setup_error is not None:
            raise self._setup_error
        t = self.trainer
        return {"rank": self.rank, "host": socket.gethostname(), "pid": os.getpid(), "threads": t.threads,
                "lr_scale": self.lr_scale,
                "compile_seconds": self.compile_seconds, "n_train": self.n_train,
                "parameters": int(sum(l.weights.size + l.bias.size for l in t.engine.layers)),
                "dense_sync_bytes": dense_sync_bytes(t.engine.layers, self.n_workers)}

    def prepare(self, resume: bool, overwrite: bool) -> dict:
        """Rank 0: clear (--overwrite) or resume from (--resume) the run directory, refuse to mix a
        fresh run with an earlier one's checkpoints, write config.yaml. Returns the position."""
        t = self.trainer
        resumed = False
        if overwrite:
            t.clear_run_dir()
        if resume:
            resumed = t.resume()
            if resumed:  # checkpoints hold the configured learning rate
                t.engine.lr *= self.lr_scale
            # a checkpoint under another slice rule leaves nothing held out (_keep_training_rows):
            # fewer or more batches an epoch
            self.local_batches = t.schedule.batches_per_epoch
        t.run.lock()
        if t.step == 0:
            t.run.refuse_earlier_run()
        t.run.prepare(t.config)
        # the steps the run plans, as fit() counts them: evaluations along the run then drop the
        # neighbour bank before training goes on (_eval_record)
        t._total_steps = t.schedule.planned_steps
        self.set_position(t.epoch, t.batch_in_epoch)
        # a finished run resumed keeps its final evaluation (as Trainer.fit): not repeated, not relogged
        finished, t._resumed_eval = t._resumed_eval, {}
        return {"resumed": resumed, **self.position(), "round_seconds": t.round_seconds,
                "eval_seconds_along": t.eval_seconds_along, "resumed_eval": finished}

    def state(self) -> tuple[dict, dict]:
        """Everything a replica needs to become this one: engine arrays (LSH tables included) and
        meta, and the position."""
        e = self.trainer.engine
        return e.state_arrays(), {"engine": e.state_meta(), **self.position()}

    def load(self, state: tuple[dict, dict]) -> dict:
        arrays, meta = state
        arrays = {name: np.array(a) for name, a in arrays.items()}  # Ray hands out read-only views
        t = self.trainer
        seed = t.engine.seed
        t.engine.load_state(arrays, meta["engine"], source="worker 0")
        t.engine.seed = seed
        t.train_seconds, t.rebuild_seconds = meta["train_seconds"], meta["rebuild_seconds"]
        t.lr_scale = float(meta.get("lr_scale", 1.0))
        if not meta["held_out"] and t.held_out is not None:  # worker 0 resumed into holding nothing out
            t.train_on_every_row()
            self.local_batches = t.schedule.batches_per_epoch
        self.set_position(meta["epoch"], meta["batch_in_epoch"])
        for rows_seen, biases_seen in t.engine.touched_log:
            rows_seen[...] = 0
            biases_seen[...] = 0
        return self.position()

    def set_position(self, epoch: int, batch_in_epoch: int) -> None:
        self.trainer.epoch, self.trainer.batch_in_epoch = int(epoch), int(batch_in_epoch)
        self._wrap_epoch()

    def _wrap_epoch(self) -> None:
        t = self.trainer
        if t.batch_in_epoch >= self.local_batches:
            t.epoch += 1
            t.batch_in_epoch = 0

    def position(self) -> dict:
        t = self.trainer
        return {"step": t.step, "epoch": t.epoch, "batch_in_epoch": t.batch_in_epoch,
                "train_seconds": t.train_seconds, "rebuild_seconds": t.rebuild_seconds,
                "lr_scale": t.lr_scale,  # halved by rollbacks: every replica steps alike
                "held_out": 0 if t.held_out is None else int(t.held_out.shape[0]),  # every replica holds the same out
                "local_batches": self.local_batches}

    # -- training -------------------------------------------------------------------------------

    def _rows(self) -> np.ndarray:
        t = self.trainer
        if self._order_epoch != t.epoch:
            self._order_epoch, self._order = t.epoch, t.schedule.epoch_order(t.epoch)
        b = t.batch_in_epoch
        chunk = self._order[b * self.batch:(b + 1) * self.batch]
        rows = chunk[self.rank::self.n_workers]
        # A batch smaller than W samples (a tiny last batch, or batch_size < W) leaves some workers
        # empty-handed: they repeat one sample rather than skip the step (all take the same steps).
        return rows if rows.shape[0] else chunk[-1:]

    def train_step(self, total_steps: int, budget_seconds: float) -> tuple:
        """One local step on this worker's slice of the next global batch, at the learning rate the
        schedule gives for the driver's `total_steps` and `budget_seconds` (the run's training
        seconds so far); rebuilds the tables when their schedule says so. Returns (loss * samples,
        samples, seconds, active per layer * samples)."""
        t = self.trainer
        rows = self._rows()
        lr_share = t.schedule.lr_share(t.step, total_steps, budget_seconds)
        t.engine.lr = t.config.training.lr * self.lr_scale * t.lr_scale * lr_share
        started = time.perf_counter()
        stats = t.engine.train_step(t.train_data, rows)
        elapsed = time.perf_counter() - started
        t.train_seconds += elapsed
        if not np.isfinite(stats.loss):
            where = t.model.nonfinite()
            raise NumericalError(f"worker {self.rank}: loss is {stats.loss} at step {t.step}"
                                 + (f"; {where}" if where else "") + "; lower training.lr")
        t.rebuild_seconds += t.engine.maybe_rebuild(lr_share)
        t.batch_in_epoch += 1
        self._wrap_epoch()
        if self.kill_at_step is not None and t.step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        n = rows.shape[0]
        return stats.loss * n, n, elapsed, [float(a) * n for a in stats.active_mean]

    # -- sync -----------------------------------------------------------------------------------

    def sync_scatter(self) -> tuple:
        """W payloads (one per owner shard) and, last, their sizes in bytes."""
        engine = self.trainer.engine
        payloads = scatter_touched(engine.layers, engine.touched_log, self.n_workers)
        return (*payloads, [payload_bytes(p) for p in payloads])

    def sync_reduce(self, *payloads) -> tuple:
        """Average the rows of this worker's shard: (merged payload, its size in bytes)."""
        merged = reduce_shard(list(payloads))
        return merged, payload_bytes(merged)

    def sync_apply(self, *merged_shards) -> bool:
        engine = self.trainer.engine
        apply_merged(engine.layers, engine.touched_log, list(merged_shards))
        return True

    def sync_skip(self) -> bool:
        """One worker: nothing to agree on, just forget the touched rows."""
        engine = self.trainer.engine
        apply_merged(engine.layers, engine.touched_log, [])
        return True

    # -- rank 0: records, eval, checkpoints -----------------------------------------------------

    def set_sync_figures(self, seconds: float, nbytes: int) -> None:
        self.trainer.sync_seconds, self.trainer.sync_bytes = seconds, int(nbytes)

    def record(self, event: str, fields: dict) -> dict:
        return self.trainer._record(event, **fields)

    def check_weights(self) -> None:
        where = self.trainer.model.nonfinite()
        if where is not None:
            raise NumericalError(f"{where} at step {self.trainer.step}; lower training.lr")

    def evaluate(self, final: bool = False) -> dict:
        """An evaluation record of rank 0's replica: on eval.subset test samples along the run, on
        the whole test set at the end (final), as a single process scores them."""
        return self.trainer._eval_record(final=final)

    def fit_reranker(self) -> bool:
        """model.reranker's leaves for rank 0's final weights (Trainer._fit_reranker); True if
        fitted now, for the driver to save them."""
        return self.trainer._fit_reranker()

    def checkpoint(self, round_seconds: float | None = None, eval_seconds_along: float | None = None) -> str:
        """Save rank 0's replica with the driver's clock of the run and its evaluations' seconds."""
        self.check_weights()  # no checkpoint ever holds NaN/inf
        t = self.trainer
        if round_seconds is not None:
            t.round_seconds = round_seconds
        if eval_seconds_along is not None:
            t.eval_seconds_along = eval_seconds_along
        return str(t.checkpoint())

    def ping(self) -> int:
        return os.getpid()


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


_LOCAL_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")
_SAVED_ENV: dict = {}  # their values before a local run, restored after it


def _restore_local_switches() -> None:
    """Undo _import_ray(local=True), so a later run in this process may join a cluster."""
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _SAVED_ENV.clear()
    try:
        from ray._private import ray_constants
    except ImportError:  # Ray is not installed: only the environment was switched
        return

    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR,
                                                             not ray_constants.IS_WINDOWS_OR_OSX)


def _import_ray(local: bool):
    """Import Ray (the optional extra); for a local run first make every Ray server bind to the
    loopback interface and switch off usage reporting. Returns the module."""
    if local:
        _SAVED_ENV.update({k: os.environ.get(k) for k in _LOCAL_ENV if k not in _SAVED_ENV})
        # On Linux Ray binds its gRPC servers to the node IP on every interface; with "clusters
        # disabled" (the switch Ray uses on macOS/Windows) the node IP is 127.0.0.1 and every
        # server listens on loopback only. Child processes (GCS, raylet, workers) inherit it.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    _guard_broken_pyarrow()
    try:
        import ray
    except ImportError as exc:
        raise SlidepyError(f"--workers needs Ray: pip install -e '.[ray]' ({exc})") from None
    if local:
        from ray._private import ray_constants  # read at call time; set in case ray was imported earlier

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def init_ray(address: str | None, num_cpus: int | None = None):
    """Start a local Ray (address None: loopback only, no dashboard) or join `address`. Returns
    (ray, started): started is True when this call started Ray and must shut it down."""
    local = address is None
    try:
        ray = _import_ray(local=local)
    except BaseException:  # Ray missing: the process' environment as it was
        _unguard_pyarrow()
        if local:
            _restore_local_switches()
        raise
    if ray.is_initialized():  # nothing started here, so nothing undoes the local switches later
        if local:
            _restore_local_switches()
        return ray, False
    import logging

    try:
        if local:
            # Workers import slidepy from where the driver does (a source checkout works too).
            path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     _node_ip_address="127.0.0.1", logging_level=logging.ERROR,
                     runtime_env={"env_vars": {"PYTHONPATH": path},
                                  "worker_process_setup_hook": _guard_broken_pyarrow})
        else:
            ray.init(address=address, logging_level=logging.ERROR,
                     runtime_env={"worker_process_setup_hook": _guard_broken_pyarrow})
    except BaseException:  # no Ray to shut down: the process' environment as it was
        _unguard_pyarrow()
        if local:
            _restore_local_switches()
        raise
    return ray, True


def stop_ray(ray, local: bool) -> None:
    """Shut down the Ray that init_ray started (local: the one it started on this machine) and
    undo what it set in this process: the broken-pyarrow guard and the local switches."""
    ray.shutdown()
    _unguard_pyarrow()
    if local:
        _restore_local_switches()


# Seconds the driver waits for the workers' answer after a stop signal (a round's steps and sync
# take far less): then it stops without them, a stalled or never-placed worker does not hold a
# scheduler's SIGTERM off until its SIGKILL.
STOP_GRACE_SECONDS = 10.0
# Seconds of waiting for the workers to start before the driver says what it waits for.
START_NOTE_SECONDS = 30.0


class _Group:
    """The driver's view of the actors: calls, waits, and naming a worker that died. `stop` is the
    driver's list of stop signals received (on_signal appends to it)."""

    def __init__(self, ray, actors: list, run_dir: Path, resume_hint: str, stop: list):
        self.ray, self.actors = ray, actors
        self.run_dir, self.resume_hint, self.stop = run_dir, resume_hint, stop
        self.pids: dict[int, str] = {}

    def get(self, refs: list, ranks: list[int], what: str, waiting: str | None = None, grace: bool = True):
        """ray.get of refs (refs[i] from worker ranks[i]); a dead worker becomes WorkerLost naming
        it and `what` (the step), an exception raised in a worker is re-raised here. A stop signal
        gets STOP_GRACE_SECONDS of the wait, then TrainingInterrupted (grace False: the wait goes
        on, for a checkpoint being written or an evaluation, which take the time they take);
        `waiting` is printed once the wait passes START_NOTE_SECONDS."""
        ray = self.ray
        started, stopped_at, noted = time.monotonic(), None, False
        while refs:
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=1.0)
            if not pending:
                break
            now = time.monotonic()
            if self.stop and grace:
                stopped_at = stopped_at or now
                if now - stopped_at >= STOP_GRACE_SECONDS:
                    self._unanswered(what)
            if waiting and not noted and now - started >= START_NOTE_SECONDS:
                print(f"still waiting, {now - started:.0f} s: {waiting}", file=sys.stderr, flush=True)
                noted = True
        out = []
        for ref, rank in zip(refs, ranks):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayActorError as exc:  # this worker, or one whose output it needed
                self._lost(self._dead_rank(default=rank), what, exc)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ray.exceptions.RayActorError):
                    self._lost(self._dead_rank(default=rank), what, cause)
                if isinstance(cause, SlidepyError):
                    raise cause from None
                raise
        return out

    def _dead_rank(self, default: int) -> int:
        """The first worker that does not answer, `default` asked first."""
        for rank in [default] + [r for r in range(len(self.actors)) if r != default]:
            try:
                self.ray.get(self.actors[rank].ping.remote(), timeout=60)
            except self.ray.exceptions.RayActorError:
                return rank
            except Exception:  # busy or slow: alive as far as we know
                pass
        return default

    def _saved(self) -> tuple[str, str | None]:
        """(what the run directory keeps, in words; the newest checkpoint's path or None)."""
        found = list_checkpoints(self.run_dir)
        if not found:
            return "no checkpoint was written yet", None
        return f"the last checkpoint {found[-1][1]} (step {found[-1][0]}) is intact", str(found[-1][1])

    def _unanswered(self, what: str):
        signame = signal.Signals(self.stop[0]).name
        saved, path = self._saved()
        raise TrainingInterrupted(f"stopped by {signame} {what}: the workers did not answer within "
                                  f"{STOP_GRACE_SECONDS:g} s; {saved}; {self.resume_hint}", path, self.stop[0])

    def _lost(self, rank: int, what: str, exc: Exception):
        saved, _ = self._saved()
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(cause) > 160:
            cause = cause[:157] + "..."
        raise WorkerLost(f"worker {rank} ({self.pids.get(rank, '?')}) died {what} ({type(exc).__name__}: "
                         f"{cause}); the run stopped; {saved}; {self.resume_hint}") from None


def train_distributed(cfg: Config, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
                      callbacks: tuple = ()) -> dict:
    """Train `cfg` with cfg.distributed.workers Ray actors; returns the last evaluation record
    (with "step" and "run_dir"). Raises WorkerLost, TrainingInterrupted, or the SlidepyError a
    worker raised."""
    d, t = cfg.distributed, cfg.training
    n_workers = int(d.workers)
    if n_workers < 1:
        raise ConfigError("distributed.workers: train_distributed needs at least 1 worker")
    run_dir = Path(cfg.output.run_dir).resolve()
    local = d.ray_address is None
    local_cpus = os.cpu_count() or 1
    threads_asked = 1 if t.deterministic else t.threads
    ray, started = init_ray(d.ray_address, num_cpus=max(local_cpus, n_workers * (threads_asked or 1)))
    kill_rank, kill_step = None, None
    if os.environ.get(KILL_ENV):
        kill_rank, kill_step = (int(x) for x in os.environ[KILL_ENV].split(":"))
    actors = []
    hint = (f"resume with: slidepy train --config {run_dir / 'config.yaml'} --out {run_dir} --workers {n_workers}"
            + ("" if local else f" --ray-address {d.ray_address}") + " --resume")
    stop_signal: list[int] = []
    previous = {}

    def on_signal(signum, frame):
        if stop_signal:  # a second signal: out now
            raise StopNow(signum)
        stop_signal.append(signum)

    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[s] = signal.signal(s, on_signal)
            except ValueError:  # not the main thread
                pass
        cpus = local_cpus if local else int(ray.cluster_resources().get("CPU", n_workers))
        threads = threads_asked or max(1, cpus // n_workers)
        if not local and n_workers * threads > cpus:  # the actors would wait for CPUs forever
            raise ConfigError(f"distributed.workers: {n_workers} workers of {threads} CPU(s) each need "
                              f"{n_workers * threads} CPUs; the Ray cluster at {d.ray_address} has {cpus} on the "
                              "nodes up now: fewer workers, training.threads lower, or (an autoscaling "
                              "cluster) its nodes started first")
        remote = ray.remote(Worker)
        here = ray.get_runtime_context().get_node_id()
        config = config_to_dict(cfg)
        for rank in range(n_workers):
            options = dict(num_cpus=threads, max_restarts=0, max_task_retries=0)
            if not local:  # worker 0 next to the driver (it writes the run directory), the others spread
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=True) if rank == 0 \
                    else "SPREAD"
            actors.append(remote.options(**options).remote(
                config, rank, n_workers, threads, str(run_dir), os.getcwd(),
                kill_step if kill_rank == rank else None))
        group = _Group(ray, actors, run_dir, hint, stop_signal)
        ranks = list(range(n_workers))
        infos = group.get([a.info.remote() for a in actors], ranks, "while starting",
                          waiting=f"{n_workers} workers of {threads} CPU(s) each to start (loading the data, "
                                  "compiling; on a cluster, `ray status` shows what waits to be placed)")
        group.pids = {i["rank"]: f"pid {i['pid']} on {i['host']}" for i in infos}
        if not local and infos[0]["host"] != socket.gethostname():
            import warnings

            warnings.warn(f"worker 0 runs on {infos[0]['host']}, not this machine: the run directory "
                          f"{run_dir} is written there", RuntimeWarning)
        lead = actors[0]
        position = group.get([lead.prepare.remote(resume, overwrite)], [0], "while preparing the run directory")[0]
        if position["resumed"] and n_workers > 1:
            state = lead.state.remote()
            group.get([a.load.remote(state) for a in actors[1:]], ranks[1:], f"while loading step {position['step']}")
            del state
        elif n_workers > 1:  # a fresh run (or resume at step 0): put every replica at rank 0's position
            group.get([a.set_position.remote(position["epoch"], position["batch_in_epoch"]) for a in actors[1:]],
                      ranks[1:], "while starting")
        step, epoch, b = position["step"], position["epoch"], position["batch_in_epoch"]
        local_batches = position["local_batches"]  # after a resume, which may hold out less than at the start
        total_steps = step + (t.epochs - epoch) * local_batches - b
        if t.max_steps is not None:
            total_steps = min(total_steps, t.max_steps)
        # training.time_budget_s counts the rounds' wall time (steps, rebuilds, syncs); what came
        # before a resume, by the checkpoint's clock of it (worker 0's step and rebuild seconds in
        # one written before the clock was kept).
        seconds_before = position["round_seconds"] if position.get("round_seconds") is not None else \
            position["train_seconds"] + position["rebuild_seconds"]
        group.get([lead.record.remote("start", dict(
            compile_seconds=max(i["compile_seconds"] for i in infos), threads=threads, n_train=infos[0]["n_train"],
            **({"held_out": position["held_out"]} if position["held_out"] else {}), parameters=infos[0]["parameters"],
            sync_every=d.sync_every, lr_scale=infos[0]["lr_scale"], dense_sync_bytes=infos[0]["dense_sync_bytes"],
            hosts=sorted({i["host"] for i in infos}), steps_per_epoch=local_batches))], [0], "while starting")

        budget = t.time_budget_s
        bar = progress_bar(total_steps, budget, bar_position(step, total_steps, budget, seconds_before), progress)
        sync_seconds, syncs = 0.0, 0
        loop_seconds, samples_done = 0.0, 0  # rounds' wall time (steps + sync), samples in them
        window = dict(loss=0.0, samples=0, seconds=0.0, active=None, sync_bytes=0, syncs=0)
        last_eval: dict = position.get("resumed_eval") or {}  # a finished run's, when resumed
        eval_along = float(position.get("eval_seconds_along") or 0.0)  # evaluations along the run (eval.max_share)
        last_saved = step if position["resumed"] else None
        last_log = step
        ev, ck = cfg.eval.every, cfg.output.checkpoint_every
        checkpoints = CheckpointClock(cfg.output, seconds_before)

        def over() -> bool:  # the steps or the time budget are spent
            return step >= total_steps or (t.time_budget_s is not None
                                           and seconds_before + loop_seconds >= t.time_budget_s)

        def save(what: str) -> str:
            nonlocal last_saved
            path = group.get([lead.checkpoint.remote(seconds_before + loop_seconds, eval_along)], [0], what,
                             grace=False)[0]
            last_saved = step
            checkpoints.saved(seconds_before + loop_seconds)
            return path

        def fit_leaves() -> None:  # model.reranker's, for the final weights, saved beside them
            if group.get([lead.fit_reranker.remote()], [0], "fitting the re-ranking leaves", grace=False)[0]:
                save(f"writing the checkpoint of step {step} with its re-ranking leaves")

        try:
            while not over():
                # A round ends at the next sync point, epoch end, eval, checkpoint or the last step.
                n = min(d.sync_every - step % d.sync_every, local_batches - b, total_steps - step)
                if ev:
                    n = min(n, ev - step % ev)
                if ck:
                    n = min(n, ck - step % ck)
                round_started = time.perf_counter()
                refs = [[a.train_step.remote(total_steps, seconds_before + loop_seconds) for _ in range(n)]
                        for a in actors]
                results = []
                for i in range(n):  # step by step, so a death is named with its step
                    results.append(group.get([refs[r][i] for r in ranks], ranks, f"at step {step + i + 1}"))
                del refs
                sync_started = time.perf_counter()
                if n_workers > 1:
                    outs = [a.sync_scatter.options(num_returns=n_workers + 1).remote() for a in actors]
                    reduced = [actors[j].sync_reduce.options(num_returns=2).remote(*[outs[i][j] for i in ranks])
                               for j in ranks]
                    applied = [a.sync_apply.remote(*[r[0] for r in reduced]) for a in actors]
                    what = f"in the sync after step {step + n}"
                    sent = group.get([o[n_workers] for o in outs], ranks, what)
                    merged = group.get([r[1] for r in reduced], ranks, what)
                    group.get(applied, ranks, what)
                    del outs, reduced, applied
                    nbytes = sum(sent[i][j] for i in ranks for j in ranks if i != j) + \
                        sum(m * (n_workers - 1) for m in merged)
                else:
                    group.get([lead.sync_skip.remote()], [0], f"after step {step + n}")
                    nbytes = 0
                now = time.perf_counter()
                sync_seconds += now - sync_started
                syncs += 1
                step += n
                b += n
                if b >= local_batches:
                    epoch, b = epoch + 1, 0
                advance_bar(bar, bar_position(step, total_steps, budget, seconds_before + loop_seconds))
                for per_worker in results:
                    for loss_n, samples, _, active in per_worker:
                        window["loss"] += loss_n
                        window["samples"] += samples
                        window["active"] = np.add(window["active"], active) if window["active"] is not None \
                            else np.array(active)
                window["seconds"] += now - round_started
                loop_seconds += now - round_started
                samples_done += sum(samples for per_worker in results for _, samples, _, _ in per_worker)
                window["sync_bytes"] += nbytes
                window["syncs"] += 1
                group.get([lead.set_sync_figures.remote(sync_seconds, nbytes)], [0], f"after step {step}")
                if step // t.log_every > last_log // t.log_every or step == total_steps:
                    rate = window["samples"] / max(window["seconds"], 1e-9)
                    loss = window["loss"] / max(1, window["samples"])
                    show_rate(bar, step, budget, loss, rate)
                    group.get([lead.check_weights.remote()], [0], f"at step {step}")
                    record = group.get([lead.record.remote("log", dict(
                        loss=loss, samples_per_s=rate, syncs=syncs,
                        sync_bytes_mean=window["sync_bytes"] // max(1, window["syncs"]),
                        active_mean=[float(a) / max(1, window["samples"]) for a in window["active"]]))],
                        [0], f"at step {step}")[0]
                    for cb in callbacks:
                        cb(record)
                    window = dict(loss=0.0, samples=0, seconds=0.0, active=None, sync_bytes=0, syncs=0)
                    last_log = step
                final = over()  # where the run ends it is the final, whole-set one (Trainer._eval_along)
                if final and last_saved != step:  # saved before the final evaluation, as Trainer.fit saves
                    save(f"writing the checkpoint of step {step}")
                if final:
                    fit_leaves()
                if ((ev and step % ev == 0) or (not ev and b == 0)) and (
                        final or eval_along_due(cfg.eval.max_share, eval_along, seconds_before + loop_seconds)):
                    last_eval = group.get([lead.evaluate.remote(final)], [0], f"evaluating at step {step}",
                                          grace=False)[0]
                    eval_along += 0.0 if final else last_eval["eval_seconds"]
                    for cb in callbacks:
                        cb(last_eval)
                if last_saved != step and checkpoints.due(step, seconds_before + loop_seconds):
                    save(f"writing the checkpoint of step {step}")
                if stop_signal:
                    break
            if stop_signal:
                signame = signal.Signals(stop_signal[0]).name
                path = save(f"saving at step {step}") if last_saved != step else str(list_checkpoints(run_dir)[-1][1])
                raise TrainingInterrupted(f"stopped by {signame} at step {step} ({n_workers} workers); checkpoint "
                                          f"{path}; {hint}", path, stop_signal[0])
            if last_saved != step:  # before the final evaluation (a scheduler's SIGKILL may cut it short)
                save(f"writing the checkpoint of step {step}")
            fit_leaves()
            if not last_eval or last_eval.get("step") != step or not last_eval.get("complete", True):
                last_eval = group.get([lead.evaluate.remote(True)], [0], f"evaluating at step {step}",
                                      grace=False)[0]
        finally:
            bar.close()
        return {**last_eval, "step": step, "run_dir": str(run_dir), "workers": n_workers,
                "sync_seconds": sync_seconds, "syncs": syncs, "loop_seconds": loop_seconds,
                "samples_per_s": samples_done / max(loop_seconds, 1e-9)}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        if started:
            stop_ray(ray, local)
