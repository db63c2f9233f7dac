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
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from tqdm.auto import tqdm

from .checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .config import Config, config_from_dict, config_to_dict, dump_config, layer_selections, load_config
from .data import Dataset, load_dataset
from .engine import Engine, LayerSelection
from .errors import CheckpointError, ConfigError, NumericalError, SlidepyError
from .metrics import evaluate_topk
from .synthetic import make_synthetic


class TrainingInterrupted(SlidepyError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, checkpoint: str | None, signum: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = signum


def load_data(cfg: Config) -> tuple[Dataset, Dataset | None]:
    """The train and test sets a config names (or generates)."""
    d = cfg.data
    if d.train is None:
        s = d.synthetic
        return make_synthetic(s.n_train, s.n_test, s.n_features, s.n_labels, nnz_per_sample=s.nnz_per_sample,
                              labels_per_sample=tuple(s.labels_per_sample), noise_fraction=s.noise_fraction,
                              zipf_exponent=s.zipf_exponent, seed=s.seed)
    opts = dict(format=d.format, cache=d.cache, cache_dir=d.cache_dir, skip_bad_lines=d.skip_bad_lines)
    train = load_dataset(d.train, **opts)
    test = None
    if d.test is not None:
        test = load_dataset(d.test, n_features=train.n_features, n_labels=train.n_labels, **opts)
        if test.n_features != train.n_features or test.n_labels != train.n_labels:
            raise ConfigError(f"data.test {d.test} has {test.n_features} features / {test.n_labels} labels but "
                              f"data.train has {train.n_features} / {train.n_labels}")
    return train, test


def build_engine(cfg: Config, n_features: int, n_labels: int, max_labels: int) -> Engine:
    t = cfg.training
    selections = [LayerSelection(mode=s.mode, budget=s.budget, min_active=s.min_active, inference=s.inference,
                                 lsh=s.lsh) for s in layer_selections(cfg)]
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
        self._stop_signal: int | None = None

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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.run_dir / "config.yaml")
        total_steps = t.epochs * self._batches_per_epoch()
        if t.max_steps is not None:
            total_steps = min(total_steps, t.max_steps)
        last_eval: dict = {}
        self._record("start", compile_seconds=self.engine.warmup(self.train_data), threads=self.threads,
                     n_train=self.train_data.n_samples, parameters=int(sum(l.weights.size + l.bias.size
                                                                            for l in self.engine.layers)))
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._on_signal)
        bar = tqdm(total=total_steps, initial=min(self.step, total_steps), unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        window_loss, window_samples, window_seconds = 0.0, 0, 0.0
        try:
            while self.epoch < t.epochs and self.step < total_steps:
                order = self._epoch_order(self.epoch)
                batches = self._batches_per_epoch()
                while self.batch_in_epoch < batches and self.step < total_steps:
                    rows = order[self.batch_in_epoch * t.batch_size:(self.batch_in_epoch + 1) * t.batch_size]
                    started = time.perf_counter()
                    stats = self.engine.train_step(self.train_data, rows)
                    elapsed = time.perf_counter() - started
                    self.train_seconds += elapsed
                    self.batch_in_epoch += 1
                    self._check_finite_loss(stats.loss)
                    self.rebuild_seconds += self.engine.maybe_rebuild()
                    window_loss += stats.loss * rows.shape[0]
                    window_samples += rows.shape[0]
                    window_seconds += elapsed
                    bar.update(1)
                    if self.step % t.log_every == 0:
                        self._check_finite_weights()
                        rate = window_samples / max(window_seconds, 1e-9)
                        bar.set_postfix(loss=f"{window_loss / window_samples:.4f}", samples_s=f"{rate:,.0f}")
                        self._record("log", loss=window_loss / window_samples, samples_per_s=rate,
                                     active_mean=[float(a) for a in stats.active_mean])
                        window_loss, window_samples, window_seconds = 0.0, 0, 0.0
                    if cfg.eval.every and self.step % cfg.eval.every == 0:
                        last_eval = self._eval_record()
                    if cfg.output.checkpoint_every and self.step % cfg.output.checkpoint_every == 0:
                        self.checkpoint()
                    if self._stop_signal is not None:
                        path = self.checkpoint()
                        raise TrainingInterrupted(
                            f"stopped by {signal.Signals(self._stop_signal).name} at step {self.step}; checkpoint "
                            f"{path}; resume with: slidepy train --config {self.run_dir / 'config.yaml'} "
                            f"--out {self.run_dir} --resume", path, self._stop_signal)
                if self.batch_in_epoch >= batches:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if not cfg.eval.every:
                        last_eval = self._eval_record()
            if not last_eval or last_eval.get("step") != self.step:
                last_eval = self._eval_record()
            self.checkpoint()
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return last_eval

    def _on_signal(self, signum, frame):
        if self._stop_signal is not None:  # a second Ctrl-C: the user really wants out now
            raise KeyboardInterrupt
        self._stop_signal = signum

    # -- numerical guards -----------------------------------------------------------------------

    def _check_finite_loss(self, loss: float):
        if not np.isfinite(loss):
            self._numerical_fault(f"loss is {loss} at step {self.step}")

    def _check_finite_weights(self):
        for l, layer in enumerate(self.engine.layers):
            for name in ("weights", "bias"):
                arr = getattr(layer, name)
                if not np.isfinite(arr).all():
                    self._numerical_fault(f"layer {l} {name} hold NaN/inf at step {self.step}")

    def _numerical_fault(self, what: str):
        if self.config.training.on_nan == "rollback":
            path = latest_checkpoint(self.run_dir)
            if path is not None:
                self.restore(path)
                lr = self.engine.lr * 0.5
                self.engine.lr = lr
                self._record("rollback", reason=what, checkpoint=str(path), lr=lr)
                return
            raise NumericalError(f"{what}; on_nan is rollback but {self.run_dir} has no checkpoint to roll back to")
        raise NumericalError(f"{what}; lower training.lr or set training.on_nan: rollback")

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
        subset = self.config.eval.subset if subset == -1 else subset
        rows = self._eval_rows(data, subset)
        ks = tuple(self.config.eval.k)
        top_ids, _, active = self.engine.predict(data, rows, k=max(ks))
        result = self._score(data, rows, top_ids, ks)
        result["eval_active_mean"] = [float(a) for a in active]
        return result

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
        ids, scores, _ = self.engine.predict(data, None, k=k)
        return ids, scores

    # -- logging --------------------------------------------------------------------------------

    def _record(self, event: str, **fields) -> dict:
        record = {"event": event, "step": self.step, "epoch": self.epoch + self.batch_in_epoch /
                  max(1, self._batches_per_epoch()), "train_seconds": round(self.train_seconds, 4),
                  "rebuild_seconds": round(self.rebuild_seconds, 4), **fields}
        self.history.append(record)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
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
        path = checkpoint_path(self.run_dir, self.step)
        self.save(path)
        prune_checkpoints(self.run_dir, self.config.output.keep_last)
        return path

    def restore(self, path) -> None:
        """Load a checkpoint's state into this trainer (shapes must match its config)."""
        arrays, meta = load_checkpoint(path)
        self.engine.load_state(arrays, meta.get("engine", {}), source=str(path))
        self.epoch = int(meta["epoch"])
        self.batch_in_epoch = int(meta["batch_in_epoch"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.rebuild_seconds = float(meta.get("rebuild_seconds", 0.0))

    def resume(self) -> bool:
        """Continue from the newest good checkpoint in the run dir; False if there is none."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        self.restore(path)
        return True

    @classmethod
    def load(cls, path, *, train: Dataset | None = None, test: Dataset | None = None, progress: bool = False,
             load_data_from_config: bool = False) -> "Trainer":
        """A Trainer from a checkpoint, for evaluation / prediction (or further training, if the
        config's data is loadable or datasets are given)."""
        arrays, meta = load_checkpoint(path)
        if "config" not in meta:
            raise CheckpointError(f"{path} holds no config: not a slidepy model file")
        cfg = config_from_dict(meta["config"])
        n_features, n_labels = int(meta["n_features"]), int(meta["n_labels"])
        if train is None and not load_data_from_config:
            train = _empty_dataset(n_features, n_labels)
        trainer = cls(cfg, train=train, test=test, progress=progress, run_dir=cfg.output.run_dir)
        trainer.engine.load_state(arrays, meta.get("engine", {}), source=str(path))
        trainer.epoch = int(meta["epoch"])
        trainer.batch_in_epoch = int(meta["batch_in_epoch"])
        trainer.train_seconds = float(meta.get("train_seconds", 0.0))
        return trainer


def _empty_dataset(n_features: int, n_labels: int) -> Dataset:
    z = np.zeros(1, np.int64)
    return Dataset(z, np.zeros(0, np.int32), np.zeros(0, np.float32), z.copy(), np.zeros(0, np.int32),
                   n_features, n_labels, "<none>")
