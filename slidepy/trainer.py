"""The trainer: one flat loop over epochs and batches, with a rebuild schedule, evaluation,
logging, checkpoints and clean interruption. The numerical work is all in engine.py / kernels.py.

    trainer = Trainer(load_config("configs/quickstart.yaml"))
    trainer.fit()                      # epochs, eval, metrics.jsonl, checkpoints
    trainer.evaluate()                 # {"P@1": ..., "nDCG@5": ...}
    ids, scores = trainer.predict(dataset, k=5)
    trainer.save("model.npz"); Trainer.load("model.npz")

Resumable state is (weights, optimizer moments, LSH tables and hash functions, step, epoch,
position in the epoch, rebuild schedule); the epoch's sample order is a pure function of
(seed, epoch), so a resumed run sees exactly the batches the interrupted one would have.

Reliability rules (each has a test in tests/test_reliability.py or tests/test_killresume.py):

* Inputs are checked before any work: data paths (`config.validate_paths`), an empty training or
  test set, non-finite feature values, a test set whose dimensions differ from the training set.
  A `training.batch_size` larger than the training set is not an error: every step then uses
  the whole set, and a warning says so (also in the `start` record of metrics.jsonl, with the
  counts and first lines of bad lines dropped by `data.skip_bad_lines`).
* No checkpoint ever holds NaN/inf weights: they are checked before every write, and at least
  every `training.log_every` steps. The loss is checked every step. A fault raises
  NumericalError naming the step and the layer, or with `training.on_nan: rollback` restores the
  newest good checkpoint and halves the learning rate; after MAX_ROLLBACKS rollbacks in a row
  (no checkpoint written in between) it gives up with NumericalError.
* `resume()` loads the newest checkpoint that reads cleanly, falling back past corrupt ones with
  a warning; a checkpoint whose shapes disagree with the config is an error, not skipped. It
  drops metrics.jsonl records newer than the checkpoint (they describe steps that will be
  re-run) and appends a `resume` record, so the log holds every step exactly once.
* A failed periodic checkpoint write (disk full) is a warning; training goes on and the previous
  checkpoint stays. Temp files of writes cut short by a kill are deleted at the next start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from tqdm.auto import tqdm

from .checkpoint import (checkpoint_path, list_checkpoints, load_checkpoint, prune_checkpoints,
                         remove_stale_temp_files, save_checkpoint)
from .config import (Config, config_from_dict, config_to_dict, dump_config, layer_selections, load_config,
                     validate_paths)
from .data import Dataset, load_dataset
from .engine import Engine, LayerSelection
from .errors import CheckpointError, ConfigError, DataError, NumericalError, SlidepyError
from .metrics import evaluate_topk
from .synthetic import make_synthetic


# on_nan: rollback gives up after this many rollbacks with no checkpoint written in between.
MAX_ROLLBACKS = 3
# How many bad-line messages a skip_bad_lines load reports in the start record.
MAX_BAD_REPORTED = 5


class TrainingInterrupted(SlidepyError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, checkpoint: str | None, signum: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = signum


def load_data(cfg: Config) -> tuple[Dataset, Dataset | None]:
    """The train and test sets a config names (or generates). Raises ConfigError for a data path
    that does not exist, DataError (file:line: reason) for bad contents, an empty set, or a test
    set whose dimensions differ from the training set's."""
    d = cfg.data
    if d.train is None:
        s = d.synthetic
        return make_synthetic(s.n_train, s.n_test, s.n_features, s.n_labels, nnz_per_sample=s.nnz_per_sample,
                              labels_per_sample=tuple(s.labels_per_sample), noise_fraction=s.noise_fraction,
                              zipf_exponent=s.zipf_exponent, seed=s.seed)
    validate_paths(cfg, output=False)
    opts = dict(format=d.format, cache=d.cache, cache_dir=d.cache_dir, skip_bad_lines=d.skip_bad_lines)
    train = load_dataset(d.train, **opts)
    _require_samples(train, "data.train")
    test = None
    if d.test is not None:
        try:
            test = load_dataset(d.test, n_features=train.n_features, n_labels=train.n_labels, **opts)
        except DataError as exc:
            if "was requested" in str(exc) or "out of range: given" in str(exc):
                raise DataError(f"{exc} (data.test must fit the model built from data.train: "
                                f"{train.n_features} features, {train.n_labels} labels)") from None
            raise
        _require_samples(test, "data.test")
        if test.n_features != train.n_features or test.n_labels != train.n_labels:
            raise ConfigError(f"data.test {d.test} has {test.n_features} features / {test.n_labels} labels but "
                              f"data.train has {train.n_features} / {train.n_labels}")
    return train, test


def _require_samples(ds: Dataset, what: str) -> None:
    if ds.n_samples:
        return
    msg = f"{ds.source}: no samples ({what} is empty"
    if ds.skipped_lines:
        msg += f": all {ds.skipped_lines} data lines were bad and skipped; first: {ds.first_bad[0]}"
    raise DataError(msg + ")")


def _check_values(ds: Dataset, what: str) -> None:
    """Datasets handed in from Python skip the parser's checks; non-finite features would turn
    every weight they touch into NaN."""
    if ds.x_values.size and not np.isfinite(ds.x_values).all():
        bad = int(np.flatnonzero(~np.isfinite(ds.x_values))[0])
        row = int(np.searchsorted(ds.x_indptr, bad, side="right")) - 1
        raise DataError(f"{ds.source}: {what} sample {row} has a non-finite feature value "
                        f"({ds.x_values[bad]})")


def build_engine(cfg: Config, n_features: int, n_labels: int, max_labels: int) -> Engine:
    t = cfg.training
    selections = [LayerSelection(mode=s.mode, budget=s.budget, min_active=s.min_active, inference=s.inference,
                                 lsh=s.lsh, correction=s.correction) for s in layer_selections(cfg)]
    return Engine(n_features=n_features, hidden=[h.size for h in cfg.model.hidden], n_labels=n_labels,
                  selections=selections, loss=cfg.model.loss, optimizer=t.optimizer, lr=t.lr, beta1=t.beta1,
                  beta2=t.beta2, eps=t.eps, init=cfg.model.init, seed=t.seed, max_labels=max(1, max_labels))


def set_threads(cfg: Config) -> int:
    """Apply training.threads / deterministic to numba; returns the thread count in use."""
    if cfg.training.deterministic:
        n = 1
    elif cfg.training.threads is not None:
        n = cfg.training.threads
    else:
        n = numba.config.NUMBA_NUM_THREADS
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


class Trainer:
    """Train, evaluate, predict, save and load a slidepy model.

    `config` may be a Config, a dict, or a YAML path. `train`/`test` datasets override the
    config's data section (handy from Python). `callbacks` are called as cb(trainer, record) for
    every record written to metrics.jsonl.
    """

    def __init__(self, config, *, train: Dataset | None = None, test: Dataset | None = None,
                 run_dir: str | os.PathLike | None = None, callbacks: tuple[Callable] = (),
                 progress: bool = True, _engine: Engine | None = None):
        self.config = config if isinstance(config, Config) else load_config(config)
        self.threads = set_threads(self.config)
        if train is None:
            train, loaded_test = load_data(self.config)
            test = test if test is not None else loaded_test
        _check_values(train, "training")
        if test is not None:
            _check_values(test, "test")
            _require_samples(test, "the test set")
            if test.n_features != train.n_features:
                raise DataError(f"{test.source}: the test set has {test.n_features} features but the training "
                                f"set {train.n_features}")
        self.train_data = train
        self.test_data = test
        self.run_dir = Path(run_dir if run_dir is not None else self.config.output.run_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        max_labels = int(np.max(np.diff(train.y_indptr), initial=1))
        if test is not None:
            max_labels = max(max_labels, int(np.max(np.diff(test.y_indptr), initial=1)))
        self.engine = _engine or build_engine(self.config, train.n_features, train.n_labels, max_labels)
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch done
        self.train_seconds = 0.0
        self.rebuild_seconds = 0.0
        self.history: list[dict] = []
        self.warnings: list[str] = []  # every warning this trainer issued, in order
        self._stop_signal: int | None = None
        self._rollbacks_in_a_row = 0
        self._last_saved_step: int | None = None
        self._metrics_broken = False

    # -- the loop -------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.engine.step

    def _batches_per_epoch(self) -> int:
        return -(-self.train_data.n_samples // self.config.training.batch_size)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.training.seed, epoch])
        return rng.permutation(self.train_data.n_samples).astype(np.int64)

    def fit(self) -> dict:
        """Train to the configured epochs (or max_steps). Returns the last evaluation record."""
        cfg = self.config
        t = cfg.training
        n_train = self.train_data.n_samples
        _require_samples(self.train_data, "the training set")
        if self.step == 0:
            # A fresh run must not mix its checkpoints with an earlier run's: pruning keeps the
            # newest steps, so the new run's own checkpoints would be the ones deleted.
            earlier = list_checkpoints(self.run_dir)
            if earlier:
                raise ConfigError(f"output.run_dir: {self.run_dir} already holds checkpoints of an earlier run (up to "
                                  f"step {earlier[-1][0]}); continue it with --resume, start over with --overwrite "
                                  "(deletes them), or use another --out")
        self._prepare_run_dir()
        if t.batch_size > n_train:
            self._warn(f"training.batch_size {t.batch_size} is larger than the training set ({n_train} samples "
                       f"in {self.train_data.source}): every step uses all {n_train} samples")
        total_steps = t.epochs * self._batches_per_epoch()
        if t.max_steps is not None:
            total_steps = min(total_steps, t.max_steps)
        last_eval: dict = {}
        self._record("start", compile_seconds=self.engine.warmup(self.train_data), threads=self.threads,
                     n_train=n_train, parameters=int(sum(l.weights.size + l.bias.size for l in self.engine.layers)),
                     **self._data_report())
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._on_signal)
        self._bar = tqdm(total=total_steps, initial=min(self.step, total_steps), unit="step",
                         disable=not self.progress, dynamic_ncols=True)
        try:
            while True:
                last_eval = self._train_until(total_steps, last_eval)
                if self._weights_ok():  # the last steps may not have been a log step
                    break
                # rolled back at the very end: train the lost steps again
            if not last_eval or last_eval.get("step") != self.step:
                last_eval = self._eval_record()
            if self._last_saved_step != self.step:
                self.checkpoint()
        finally:
            self._bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return last_eval

    def _train_until(self, total_steps: int, last_eval: dict) -> dict:
        """The epoch loop: train until the configured epochs or `total_steps`; returns the last
        evaluation record. A rollback restarts the epoch it lands in."""
        cfg, t = self.config, self.config.training
        window = [0.0, 0, 0.0]  # loss * samples, samples, seconds since the last log record
        while self.epoch < t.epochs and self.step < total_steps:
            order = self._epoch_order(self.epoch)
            batches = self._batches_per_epoch()
            rolled_back = False
            while self.batch_in_epoch < batches and self.step < total_steps:
                rows = order[self.batch_in_epoch * t.batch_size:(self.batch_in_epoch + 1) * t.batch_size]
                started = time.perf_counter()
                stats = self.engine.train_step(self.train_data, rows)
                elapsed = time.perf_counter() - started
                self.train_seconds += elapsed
                self.batch_in_epoch += 1
                self._bar.update(1)
                if not np.isfinite(stats.loss):
                    where = self._nonfinite_params()
                    self._numerical_fault(f"loss is {stats.loss} at step {self.step}"
                                          + (f"; {where}" if where else " (weights are still finite)"))
                    rolled_back = True
                    break
                checkpoint_due = bool(cfg.output.checkpoint_every) and self.step % cfg.output.checkpoint_every == 0
                log_due = self.step % t.log_every == 0
                # Weights are checked every log_every steps and right before every checkpoint write,
                # so no checkpoint ever holds NaN/inf.
                if log_due and not self._weights_ok():
                    rolled_back = True
                    break
                self.rebuild_seconds += self.engine.maybe_rebuild()
                window[0] += stats.loss * rows.shape[0]
                window[1] += rows.shape[0]
                window[2] += elapsed
                if log_due:
                    rate = window[1] / max(window[2], 1e-9)
                    self._bar.set_postfix(loss=f"{window[0] / window[1]:.4f}", samples_s=f"{rate:,.0f}")
                    self._record("log", loss=window[0] / window[1], samples_per_s=rate,
                                 active_mean=[float(a) for a in stats.active_mean])
                    window = [0.0, 0, 0.0]
                if cfg.eval.every and self.step % cfg.eval.every == 0:
                    last_eval = self._eval_record()
                if (checkpoint_due or self._stop_signal is not None) and not self._weights_ok():
                    rolled_back = True
                    break
                if checkpoint_due:
                    self._periodic_checkpoint()
                if self._stop_signal is not None:
                    self._stop()
            if rolled_back:
                self._bar.n = min(self.step, total_steps)
                self._bar.refresh()
                window = [0.0, 0, 0.0]
                continue
            if self.batch_in_epoch >= batches:
                self.epoch += 1
                self.batch_in_epoch = 0
                if not cfg.eval.every:
                    last_eval = self._eval_record()
        return last_eval

    def _stop(self):
        """Save and raise TrainingInterrupted (a signal arrived; the current batch is done)."""
        signame = signal.Signals(self._stop_signal).name
        hint = f"resume with: slidepy train --config {self.run_dir / 'config.yaml'} --out {self.run_dir} --resume"
        try:
            path = self.checkpoint() if self._last_saved_step != self.step else \
                checkpoint_path(self.run_dir, self.step)
        except CheckpointError as exc:
            good = self._newest_checkpoint_path()
            raise TrainingInterrupted(f"stopped by {signame} at step {self.step}, but {exc}; the newest checkpoint "
                                      f"is {good}; {hint}", good, self._stop_signal) from None
        raise TrainingInterrupted(f"stopped by {signame} at step {self.step}; checkpoint {path}; {hint}", path,
                                  self._stop_signal)

    def _on_signal(self, signum, frame):
        if self._stop_signal is not None:  # a second Ctrl-C: the user really wants out now
            raise KeyboardInterrupt
        self._stop_signal = signum

    def _warn(self, message: str, category=UserWarning) -> None:
        self.warnings.append(message)
        warnings.warn(message, category, stacklevel=3)

    def _data_report(self) -> dict:
        """Fields of the start record: warnings so far, and lines dropped by skip_bad_lines."""
        out: dict = {}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        sets = [("train", self.train_data), ("test", self.test_data)]
        skipped = {name: ds.skipped_lines for name, ds in sets if ds is not None and ds.skipped_lines}
        if skipped:
            out["skipped_lines"] = skipped
            out["first_bad"] = [line for _, ds in sets if ds is not None for line in ds.first_bad][:MAX_BAD_REPORTED]
        return out

    # -- run directory --------------------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        """Create the run dir and write config.yaml (an unwritable place is a ConfigError, before any
        training), repair a metrics.jsonl whose last line a kill cut short, and delete temp files of
        checkpoint writes that a kill interrupted."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.config, self.run_dir / "config.yaml")
        except OSError as exc:
            raise ConfigError(f"output.run_dir: cannot write to {self.run_dir}: {exc.strerror or exc}") from None
        metrics = self.run_dir / "metrics.jsonl"
        try:
            if metrics.exists() and metrics.stat().st_size:
                with open(metrics, "rb+") as f:
                    data = f.read()
                    if not data.endswith(b"\n"):
                        f.truncate(data.rfind(b"\n") + 1)
        except OSError:
            pass
        try:
            remove_stale_temp_files(self.run_dir)
        except OSError:
            pass

    def clear_run_dir(self) -> list:
        """Delete an earlier run's checkpoints (and their temp files) and metrics.jsonl, to start
        over in the same run directory (`slidepy train --overwrite`). Returns the deleted paths."""
        doomed = [path for _, path in list_checkpoints(self.run_dir)]
        ckpt_dir = self.run_dir / "checkpoints"
        if ckpt_dir.is_dir():
            doomed += [str(p) for p in ckpt_dir.glob("step-*.npz.tmp-*")]
        if (self.run_dir / "metrics.jsonl").exists():
            doomed.append(str(self.run_dir / "metrics.jsonl"))
        for path in doomed:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError(f"output.run_dir: cannot delete {path}: {exc.strerror or exc}") from None
        return doomed

    def _drop_metrics_after(self, step: int) -> int:
        """Rewrite metrics.jsonl without the records of steps after `step` (and any unreadable line).
        Returns how many lines were dropped."""
        metrics = self.run_dir / "metrics.jsonl"
        try:
            lines = metrics.read_bytes().splitlines(keepends=True)
        except OSError:
            return 0
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
                if int(record["step"]) <= step:
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
            except (ValueError, KeyError, TypeError):
                pass
        if len(kept) == len(lines):
            return 0
        tmp = metrics.with_name(f"metrics.jsonl.tmp-{os.getpid()}")
        try:
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, metrics)
        except OSError:
            return 0
        return len(lines) - len(kept)

    # -- numerical guards -----------------------------------------------------------------------

    def _nonfinite_params(self) -> str | None:
        """'NaN/inf in layer 1 weights, layer 1 bias' naming every layer array that holds one, else
        None. (After a bad step the backward pass has usually spread NaN to the layers below.)"""
        bad = [f"layer {l} {name}" for l, layer in enumerate(self.engine.layers) for name in ("weights", "bias")
               if not np.isfinite(getattr(layer, name)).all()]
        return f"NaN/inf in {', '.join(bad)}" if bad else None

    def _weights_ok(self) -> bool:
        """True if every weight and bias is finite; else handles the fault (raises, or rolls back
        and returns False: the caller restarts its epoch loop)."""
        where = self._nonfinite_params()
        if where is None:
            return True
        self._numerical_fault(f"{where} at step {self.step}")
        return False

    def _numerical_fault(self, what: str):
        """Raise NumericalError, or (on_nan: rollback) restore the newest good checkpoint with half the
        learning rate. The caller must restart its epoch loop after a rollback."""
        if self.config.training.on_nan != "rollback":
            raise NumericalError(f"{what}; lower training.lr or set training.on_nan: rollback")
        if self._rollbacks_in_a_row >= MAX_ROLLBACKS:
            raise NumericalError(f"{what}; gave up after {MAX_ROLLBACKS} rollbacks in a row (learning rate now "
                                 f"{self.engine.lr:g}); lower training.lr")
        found = self._load_newest_good(quiet=True)
        if found is None:
            raise NumericalError(f"{what}; on_nan is rollback but {self.run_dir} has no checkpoint to roll back to")
        path, arrays, meta = found
        lr_before = self.engine.lr
        self._apply_state(path, arrays, meta)
        lr = 0.5 * min(lr_before, self.engine.lr)
        self.engine.lr = lr
        self._rollbacks_in_a_row += 1
        self._warn(f"{what}: rolled back to {path} (step {self.step}) with learning rate {lr:g} "
                   f"(rollback {self._rollbacks_in_a_row} of at most {MAX_ROLLBACKS} in a row)", RuntimeWarning)
        self._record("rollback", reason=what, checkpoint=str(path), lr=lr, rollbacks_in_a_row=self._rollbacks_in_a_row)

    # -- evaluation and prediction --------------------------------------------------------------

    def _eval_rows(self, data: Dataset, subset: int | None) -> np.ndarray:
        n = data.n_samples
        if subset is None or subset >= n:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng([self.config.training.seed, 12345])  # fixed subset across the run
        return np.sort(rng.choice(n, size=subset, replace=False)).astype(np.int64)

    def evaluate(self, data: Dataset | None = None, subset: int | None = -1) -> dict:
        """P@k and nDCG@k on `data` (default: the test set, else train), scored per the config
        (exact unless a layer's selection says inference: lsh)."""
        data = data if data is not None else (self.test_data if self.test_data is not None else self.train_data)
        self._check_input_dims(data)
        subset = self.config.eval.subset if subset == -1 else subset
        rows = self._eval_rows(data, subset)
        ks = tuple(self.config.eval.k)
        top_ids, _, active = self.engine.predict(data, rows, k=max(ks))
        result = self._score(data, rows, top_ids, ks)
        result["eval_active_mean"] = [float(a) for a in active]
        return result

    def _check_input_dims(self, data: Dataset) -> None:
        """Feature ids beyond the model's input layer would index past its weights."""
        if data.n_features > self.engine.n_features:
            raise DataError(f"{data.source} has {data.n_features} features but the model takes "
                            f"{self.engine.n_features}")

    @staticmethod
    def _score(data: Dataset, rows: np.ndarray, top_ids: np.ndarray, ks) -> dict:
        sub = data.subset(rows)
        return evaluate_topk(top_ids, sub.y_indptr, sub.y_indices, ks)

    def _eval_record(self) -> dict:
        started = time.perf_counter()
        metrics = self.evaluate()
        diagnostics = self.engine.lsh_diagnostics(self.test_data or self.train_data,
                                                  self._eval_rows(self.test_data or self.train_data,
                                                                  self.config.eval.recall_samples))\
            if self.config.eval.recall_samples else {}
        return self._record("eval", eval_seconds=time.perf_counter() - started, **metrics, **diagnostics)

    def predict(self, data: Dataset, k: int = 5):
        """Top-k label ids (B, k) int32 and scores (B, k) float32 for every sample of `data`."""
        self._check_input_dims(data)
        ids, scores, _ = self.engine.predict(data, None, k=k)
        return ids, scores

    # -- logging --------------------------------------------------------------------------------

    def _record(self, event: str, **fields) -> dict:
        record = {"event": event, "step": self.step, "epoch": self.epoch + self.batch_in_epoch /
                  max(1, self._batches_per_epoch()), "train_seconds": round(self.train_seconds, 4),
                  "rebuild_seconds": round(self.rebuild_seconds, 4), **fields}
        self.history.append(record)
        if not self._metrics_broken:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                line = (json.dumps(record) + "\n").encode()
                # One write() of the whole line with O_APPEND: a kill leaves whole lines (or, at
                # worst, a cut last line that the next start removes).
                fd = os.open(self.run_dir / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._metrics_broken = True
                self._warn(f"cannot append to {self.run_dir / 'metrics.jsonl'} ({exc.strerror or exc}); "
                           "training goes on, records are kept in Trainer.history only", RuntimeWarning)
        for cb in self.callbacks:
            cb(self, record)
        return record

    # -- checkpoints ----------------------------------------------------------------------------

    def _state(self) -> tuple[dict, dict]:
        arrays = self.engine.state_arrays()
        meta = {"config": config_to_dict(self.config), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "train_seconds": self.train_seconds,
                "rebuild_seconds": self.rebuild_seconds, "engine": self.engine.state_meta(),
                "n_features": self.train_data.n_features, "n_labels": self.train_data.n_labels}
        return arrays, meta

    def save(self, path) -> str:
        """Write a self-contained model file (weights, optimizer, tables, config) atomically."""
        arrays, meta = self._state()
        save_checkpoint(path, arrays, meta)
        return str(path)

    def checkpoint(self) -> str:
        """Save `<run_dir>/checkpoints/step-N.npz` and prune old ones. A failed write (disk full,
        permissions) raises CheckpointError; the previous checkpoints are untouched."""
        path = checkpoint_path(self.run_dir, self.step)
        try:
            self.save(path)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        self._last_saved_step = self.step
        self._rollbacks_in_a_row = 0  # progress was made and saved since the last rollback
        try:
            prune_checkpoints(self.run_dir, self.config.output.keep_last)
        except OSError as exc:
            self._warn(f"cannot delete old checkpoints in {self.run_dir}: {exc.strerror or exc}", RuntimeWarning)
        return path

    def _periodic_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except CheckpointError as exc:
            self._warn(f"{exc}; training goes on, the previous checkpoint is kept", RuntimeWarning)
            self._record("checkpoint_failed", error=str(exc))

    def _newest_checkpoint_path(self) -> str | None:
        found = list_checkpoints(self.run_dir)
        return found[-1][1] if found else None

    def _load_newest_good(self, quiet: bool = False):
        """(path, arrays, meta) of the newest checkpoint in the run dir that loads cleanly, or None
        when there is none. Unreadable (truncated, corrupt) newer ones are skipped with a warning."""
        for _step, path in reversed(list_checkpoints(self.run_dir)):
            try:
                arrays, meta = load_checkpoint(path)
            except CheckpointError as exc:
                self._warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning)
                continue
            return path, arrays, meta
        return None

    def _apply_state(self, path, arrays: dict, meta: dict) -> None:
        """Copy a loaded checkpoint into this trainer; any disagreement with the model is a
        CheckpointError naming the file."""
        try:
            epoch, batch = int(meta["epoch"]), int(meta["batch_in_epoch"])
            train_seconds = float(meta.get("train_seconds", 0.0))
            rebuild_seconds = float(meta.get("rebuild_seconds", 0.0))
            engine_meta = meta.get("engine", {})
            if epoch < 0 or batch < 0 or not isinstance(engine_meta, dict):
                raise ValueError("negative epoch / batch or malformed engine state")
            self.engine.load_state(arrays, engine_meta, source=str(path))
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {path} does not match the config: {exc}") from None
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {type(exc).__name__}: {exc}") from None
        self.epoch = epoch
        self.batch_in_epoch = batch
        self.train_seconds = train_seconds
        self.rebuild_seconds = rebuild_seconds
        self._last_saved_step = self.step

    def restore(self, path) -> None:
        """Load a checkpoint's state into this trainer (shapes must match its config)."""
        arrays, meta = load_checkpoint(path)
        self._apply_state(path, arrays, meta)

    def resume(self) -> bool:
        """Continue from the newest good checkpoint in the run dir; False if there is none.

        Corrupt or truncated newer checkpoints are skipped with a warning (falling back to the
        previous good one); if checkpoints exist but none can be read, or the one found does not
        match the config, raises CheckpointError rather than silently starting over.
        """
        found = list_checkpoints(self.run_dir)
        if not found:
            self._drop_metrics_after(0)  # records of an attempt killed before its first checkpoint
            return False
        good = self._load_newest_good()
        if good is None:
            raise CheckpointError(f"--resume: none of the {len(found)} checkpoint(s) in {self.run_dir / 'checkpoints'} "
                                  "can be read (see the warnings above); start from scratch with --overwrite (deletes them) or "
                                  "another --out")
        path, arrays, meta = good
        try:
            self._apply_state(path, arrays, meta)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (was {self.run_dir} written with another config? use another --out)") \
                from None
        dropped = self._drop_metrics_after(self.step)
        self._record("resume", checkpoint=str(path), dropped_records=dropped)
        return True

    @classmethod
    def load(cls, path, *, train: Dataset | None = None, test: Dataset | None = None, progress: bool = False,
             load_data_from_config: bool = False) -> "Trainer":
        """A Trainer from a checkpoint, for evaluation / prediction (or further training, if the
        config's data is loadable or datasets are given). Any problem with the file (not a
        checkpoint, truncated, no config, arrays that disagree with its config) is a
        CheckpointError naming it."""
        arrays, meta = load_checkpoint(path)
        if "config" not in meta:
            raise CheckpointError(f"{path} holds no config: not a slidepy model file")
        try:
            cfg = config_from_dict(meta["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{path} holds an invalid config: {exc}") from None
        try:
            n_features, n_labels = int(meta["n_features"]), int(meta["n_labels"])
            if n_features < 1 or n_labels < 1:
                raise ValueError(f"n_features {n_features}, n_labels {n_labels}")
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path} has no valid model dimensions ({type(exc).__name__}: {exc})") from None
        if train is None and not load_data_from_config:
            train = _empty_dataset(n_features, n_labels)
        elif train is not None and (train.n_features != n_features or train.n_labels != n_labels):
            raise DataError(f"{train.source} has {train.n_features} features / {train.n_labels} labels but the "
                            f"model in {path} was trained on {n_features} / {n_labels}")
        trainer = cls(cfg, train=train, test=test, progress=progress, run_dir=cfg.output.run_dir)
        trainer._apply_state(path, arrays, meta)
        return trainer


def _empty_dataset(n_features: int, n_labels: int) -> Dataset:
    z = np.zeros(1, np.int64)
    return Dataset(z, np.zeros(0, np.int32), np.zeros(0, np.float32), z.copy(), np.zeros(0, np.int32),
                   n_features, n_labels, "<none>")
