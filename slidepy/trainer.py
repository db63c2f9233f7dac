"""The trainer: one flat loop over batches (step, maybe rebuild, maybe log, maybe eval, maybe
checkpoint), with clean interruption. The numbers are the engine's (engine.py / kernels.py), the
files the run directory's (rundir.py), saving and loading the model's (model.py).

    trainer = Trainer(load_config("configs/quickstart.yaml"))
    trainer.fit()                      # epochs, eval, metrics.jsonl, checkpoints
    trainer.evaluate()                 # {"P@1": ..., "nDCG@5": ...}
    ids, scores = trainer.predict(dataset, k=5)
    trainer.save("model.npz"); Trainer.load("model.npz")

Resumable state is (weights, optimizer moments, LSH tables and hash functions, step, epoch,
position in the epoch, rebuild schedule); the epoch's sample order is a pure function of
(seed, epoch), so a resumed run sees exactly the batches the interrupted one would have.

Reliability rules (each has a test in tests/test_reliability.py or tests/test_killresume.py):

* Inputs are checked before any work: data paths (`configfile.validate_paths`), an empty
  training or test set, non-finite feature values, a test set whose dimensions differ from the training set.
  A `training.batch_size` larger than the training set is not an error: every step then uses
  the whole set, and a warning says so (also in the `start` record of metrics.jsonl, with the
  counts and first lines of bad lines dropped by `data.skip_bad_lines`).
* One live run per run directory (`RunDir.lock`, held from `resume`/`fit` to the end of `fit`).
* No checkpoint ever holds NaN/inf weights: they are checked before every write, and at least
  every `training.log_every` steps. The loss is checked every step. A fault goes to one place,
  `Trainer._fault`: it raises NumericalError naming the step and the layer, or with
  `training.on_nan: rollback` restores the newest good checkpoint with half the learning rate and
  the loop continues from there (the abandoned steps' records leave metrics.jsonl, as on resume,
  and the rollback record counts them); after MAX_ROLLBACKS rollbacks in a row (no checkpoint written in
  between) it gives up with NumericalError (`Rollbacks` keeps that count).
* `resume()` loads the newest checkpoint that reads cleanly, falling back past corrupt ones with
  a warning; a checkpoint whose shapes disagree with the config is an error, not skipped. It
  drops metrics.jsonl records newer than the checkpoint (they describe steps that will be
  re-run) and appends a `resume` record, so the log holds every step exactly once.
* A failed periodic checkpoint write (disk full) is a warning; training goes on and the previous
  checkpoint stays. Temp files of writes cut short by a kill are deleted at the next start.
* SIGINT / SIGTERM (`StopRequest`) finish the current batch, save and raise TrainingInterrupted;
  a second SIGINT quits at once.

The class is the loop; below it, its rarer paths as functions (`_start` of a fit, `_roll_back`
after a fault, `_resume`, `load_trainer`), then what the loop leans on: `Progress` (the counters
a checkpoint keeps besides the model), `Schedule` (batches, epoch order, learning rate, when to stop),
`LossWindow` (loss and samples/s between log records), `StopRequest` (signals), `Rollbacks`
(on_nan), and the functions that load and check the data a config names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import warnings
from typing import Callable, NamedTuple

import numba
import numpy as np
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .config import AUTO, Config, OutputConfig, TrainingConfig, config_to_dict
from .configfile import config_from_dict, flat_keys, load_config, validate_paths
from .data import Dataset, file_format, index_base_note, load_dataset, unlabelled_note
from .engine import Engine, StepStats
from .errors import CheckpointError, ConfigError, DataError, NumericalError, StopNow, TrainingInterrupted
from .labels import read_label_names
from .model import Model, input_scale_for, max_labels, with_input_scale
from .optimizer import scheduled_lr
from .reranker import WEIGHT, training_rows, validation_rows
from .rng import generator
from .rundir import RunDir
from .synthetic import make_synthetic
from .threads import use_threads

# on_nan: rollback gives up after this many rollbacks with no checkpoint written in between.
MAX_ROLLBACKS = 3
# How many bad-line messages a skip_bad_lines load reports in the start record.
MAX_BAD_REPORTED = 5
# Adam moves every weight a step touches by about lr, whatever the gradient's size; the layers'
# initial weights are about sqrt(2 / fan-in) (0.0625 at 512 inputs), so a rate past this one
# overwrites them in a step or two and trains to nothing, without a NaN to stop on.
ADAM_LR_WARN = 0.1


class Step(NamedTuple):
    """What one `Trainer.train_step` did: the dataset rows of its batch, the engine's stats, and
    the seconds of the engine step (rebuilds excluded)."""

    rows: np.ndarray
    stats: StepStats
    seconds: float


class Trainer:
    """Train, evaluate, predict, save and load a slidepy model.

    `config` may be a Config, a dict, or a YAML path. `train`/`test` datasets override the
    config's data section (handy from Python). `callbacks` are called as cb(trainer, record) for
    every record written to metrics.jsonl. `save_final`: write a checkpoint of the final weights
    (False for a run directory that is thrown away, as scikit-learn's temporary one is).
    """

    def __init__(self, config, *, train: Dataset | None = None, test: Dataset | None = None,
                 run_dir: str | os.PathLike | None = None, callbacks: tuple[Callable] = (),
                 progress: bool = True, save_final: bool = True, _model: Model | None = None):
        self.config = config if isinstance(config, Config) else load_config(config)
        self.save_final = save_final
        self.threads = set_threads(self.config)
        # whether the config names the data (its files, or its synthetic spec): then the CLI can
        # resume the run. A set handed in counts when it is the config's training file (the CLI's
        # automatic recipe loads it first).
        d = self.config.data
        self._data_named = train is None or (d.train is not None and train.source == os.fspath(d.train))
        if train is None and _model is None:
            train, loaded_test = load_data(self.config)
            test = test if test is not None else loaded_test
        _check_data(train, test)
        if train is not None and train.n_labels < 2 and self.config.model.loss == "softmax":
            raise DataError(f"{train.source}: {train.n_labels} label{'s' if train.n_labels != 1 else ''}: a softmax "
                            "over fewer than 2 labels learns nothing (its loss is 0 whatever the weights); for a "
                            "yes/no label set model.loss: bce")
        # "auto" becomes the number this model trains with: a loaded model's own, or the data's
        if self.config.model.input_scale == AUTO and (_model is not None or train is not None):
            scale = _model.engine.input_scale if _model is not None else input_scale_for(train)
            self.config = with_input_scale(self.config, scale)
        self.train_data, self.test_data = train, test
        self.callbacks, self.progress = list(callbacks), progress
        self.history: list[dict] = []  # every record written to metrics.jsonl
        self.warnings: list[str] = []  # every warning this trainer issued, in order
        self.run = RunDir(run_dir if run_dir is not None else self.config.output.run_dir, warn=self._warn)
        if _model is None:
            with said_if_slow("building the network and its index", progress):
                self.model = Model.build(self.config, train.n_features, train.n_labels, max_labels(train, test),
                                         label_rate=label_rate(train))
        else:
            self.model = _model
        if _model is None and self.config.data.train is not None and os.path.isfile(self.config.data.train):
            self.model.train_format = file_format(self.config.data.train)  # its model files record it
        if _model is None:
            self.model.data_named = self._data_named
        # model.reranker.weight "auto": the training samples the network leaves out, to choose the
        # leaves' share on when it is done (reranker.validation_rows)
        self.held_out = (validation_rows(train, self.config.training.seed)
                         if train is not None and self.config.model.reranker.weight == AUTO else None)
        self.schedule = (Schedule(self.config.training, train.n_samples, self.held_out)
                         if train is not None else None)
        (self.epoch, self.batch_in_epoch, self.train_seconds, self.rebuild_seconds, self.lr_scale,
         self.eval_seconds_along) = Progress()  # eval_seconds_along: of the evaluations along the run (_eval_along)
        self.last_eval: dict = {}  # the newest eval record of this fit()
        self.window, self.stop_request = LossWindow(), StopRequest()
        self.rollbacks = Rollbacks(self.config.training.on_nan)
        self._compile_seconds: float | None = None  # compile()'s, for the next fit's start record
        self._resumed_eval: dict = {}  # _resume's: the final evaluation of a finished run, for fit()
        self._resumed = False  # whether _resume took this run dir's own newest checkpoint
        self._last_saved_step: int | None = None
        self.checkpoint_clock = CheckpointClock(self.config.output)
        self._total_steps, self._bar = 0, tqdm(disable=True)  # fit sets them; scripts/bench.py too

    engine = property(lambda self: self.model.engine, doc="The model's Engine.")
    run_dir = property(lambda self: self.run.path, doc="The run directory (a Path).")
    step = property(lambda self: self.engine.step, doc="Optimizer steps taken so far.")

    def train_on_every_row(self) -> None:
        """Hold nothing out from here on: the network trains on every training sample and the
        leaves take reranker.WEIGHT (a resumed run whose slice rule changed: _keep_training_rows)."""
        self.held_out = None
        self.schedule = Schedule(self.config.training, self.train_data.n_samples, None)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the configured epochs (or max_steps, or time_budget_s). Returns the last
        evaluation record: the whole test set, scored at the last step."""
        if self.train_data is None:
            raise DataError("no training data: give Trainer.load(..., train=...) a dataset to train further")
        _require_samples(self.train_data, "the training set")
        _require_labelled(self.train_data)
        self.run.lock()
        try:
            _start(self)
            with self.stop_request.handling(), self._progress_bar() as self._bar:
                while True:
                    if self.schedule.over(self.epoch, self.step, self._total_steps, self.budget_seconds):
                        if self._finite():  # the last steps may not have been checked; a rollback redoes them
                            break
                    elif self.batch_in_epoch < self.schedule.batches_per_epoch:
                        self.train_step()
                    else:  # resumed from a checkpoint that an older version wrote before its epoch's end
                        self._end_epoch()
                self._save_final()
                # the final weights' bank stays for predict: an evaluation at the last planned step
                # keeps its own (_eval_record); any other ends with one more evaluation, and one
                # already made (a finished run resumed) only needs its bank again
                if self.last_eval.get("step") != self.step or not self.last_eval.get("complete", True):
                    self.last_eval = self._eval_record(final=True)
                elif self.engine.neighbours is None:
                    self.model.attach_neighbours(self.train_data)
        finally:
            self._bar = tqdm(disable=True)
            self.run.unlock()
        return self.last_eval

    def compile(self) -> float:
        """Compile the kernels for this network and data now rather than at the start of fit():
        the CLI does it while Ctrl-C is held, since an interrupt inside numba's compiler or cache
        loader can crash the process (numba issue 2324). Returns the seconds."""
        self._compile_seconds = compile_with_notice(self.engine, self.train_data, self.progress)
        return self._compile_seconds

    def _progress_bar(self) -> tqdm:
        return progress_bar(self._total_steps, self.config.training.time_budget_s, self._bar_position(), self.progress)

    def _bar_position(self) -> float:
        return bar_position(self.step, self._total_steps, self.config.training.time_budget_s, self.budget_seconds)

    def _advance_bar(self) -> None:
        advance_bar(self._bar, self._bar_position())

    @property
    def budget_seconds(self) -> float:
        """The seconds training.time_budget_s counts: training steps (`train_seconds`) and index
        rebuilds (`rebuild_seconds`), which metrics.jsonl logs apart; evaluation is not counted."""
        return self.train_seconds + self.rebuild_seconds

    def train_step(self) -> Step:
        """One pass of the loop: train a batch, maybe rebuild the LSH tables, maybe log, maybe
        evaluate, maybe checkpoint (and stop, after a signal). After a numerical fault that was
        rolled back (`_fault`) it returns at once: the next call goes on from the checkpoint."""
        cfg, t = self.config, self.config.training
        rows = self.schedule.batch_rows(self.epoch, self.batch_in_epoch)
        lr_share = self.schedule.lr_share(self.step, self._total_steps, self.budget_seconds)
        self.engine.lr = t.lr * self.lr_scale * lr_share
        started = time.perf_counter()
        stats = self.engine.train_step(self.train_data, rows)
        step = Step(rows, stats, time.perf_counter() - started)
        self.train_seconds += step.seconds
        self.batch_in_epoch += 1
        if not np.isfinite(stats.loss):
            where = self.model.nonfinite()
            self._fault(f"loss is {stats.loss} at step {self.step}" + (f"; {where}" if where else
                                                                        " (weights are still finite)"))
            return step
        log_due = self.step % t.log_every == 0
        # Weights are checked every log_every steps and right before every checkpoint write, so no
        # checkpoint ever holds NaN/inf.
        if log_due and not self._finite():
            return step
        self.rebuild_seconds += self.engine.maybe_rebuild(lr_share)
        self._advance_bar()
        checkpoint_due = self.checkpoint_clock.due(self.step, self.budget_seconds)  # this step's rebuild counted
        self.window.add(stats.loss, rows.shape[0], step.seconds)
        if log_due:
            loss, rate = self.window.summary()
            show_rate(self._bar, self.step, t.time_budget_s, loss, rate)
            self._record("log", loss=loss, samples_per_s=rate, active_mean=[float(a) for a in stats.active_mean])
            self.window.reset()
        if cfg.eval.every and self.step % cfg.eval.every == 0:
            self._eval_along()
        if self.batch_in_epoch >= self.schedule.batches_per_epoch:
            # before this step's checkpoint: one written between an epoch-end evaluation and its
            # own record would have the resumed run log that evaluation twice
            self._end_epoch()
        if (checkpoint_due or self.stop_request.signum is not None) and not self._finite():
            return step
        if checkpoint_due and self._last_saved_step != self.step:  # not the final one again
            try:
                self.checkpoint()
            except CheckpointError as exc:  # disk full: the previous checkpoint stays
                self._warn(f"{exc}; training goes on, the previous checkpoint is kept", RuntimeWarning)
                self._record("checkpoint_failed", error=str(exc))
        if self.stop_request.signum is not None:  # save and raise TrainingInterrupted
            raise self.stop_request.interrupted(self.step, self.run, self._data_named,
                                                None if self._last_saved_step == self.step
                                                else self.checkpoint)
        return step

    def _end_epoch(self) -> None:
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if not self.config.eval.every:
            self._eval_along()

    def _eval_along(self) -> None:
        """An evaluation along the run, unless those so far have taken more than eval.max_share of
        the training seconds: on a small set one evaluation can cost as much as a pass. One that
        falls where the run ends is its final evaluation (the whole test set) at once: fit() would
        otherwise score the subset and then the whole set at the same step (DebianNextWord's one
        epoch: 3.5 s of a subset before the 17 s of the whole set)."""
        if self.schedule.over(self.epoch, self.step, self._total_steps, self.budget_seconds):
            if not self._finite():  # rolled back: the run goes on from the restored step
                return
            self._save_final()  # as fit() saves before its final evaluation: the training is kept first
            self.last_eval = self._eval_record(final=True)
            return
        if not eval_along_due(self.config.eval.max_share, self.eval_seconds_along,
                              self.train_seconds + self.rebuild_seconds):
            return
        self.last_eval = self._eval_record()
        self.eval_seconds_along += self.last_eval["eval_seconds"]

    def _finite(self) -> bool:
        """True if every weight and bias is finite; else `_fault` (raise, or restore: False)."""
        where = self.model.nonfinite()
        if where is not None:
            self._fault(f"{where} at step {self.step}")
        return where is None

    def _fault(self, what: str) -> None:
        """The one place a numerical fault goes: raise NumericalError or roll back (`_roll_back`)."""
        _roll_back(self, what)

    def _warn(self, message: str, category=UserWarning, stacklevel: int = 3) -> None:
        self.warnings.append(message)
        warnings.warn(message, category, stacklevel=stacklevel)

    def _record(self, event: str, **fields) -> dict:
        """Append a record to history and metrics.jsonl, then call the callbacks with it."""
        record = {"event": event, "step": self.step, "epoch": self.epoch + self.batch_in_epoch /
                  max(1, self.schedule.batches_per_epoch), "train_seconds": round(self.train_seconds, 4),
                  "rebuild_seconds": round(self.rebuild_seconds, 4), **fields}
        self.history.append(record)
        self.run.append_metrics(record)
        for cb in self.callbacks:
            cb(self, record)
        return record

    def _eval_record(self, final: bool = False) -> dict:
        """Evaluate and record. Evaluations during training score eval.subset samples; the final
        one (end of fit) scores the whole test set, so a run's headline P@k are exact and complete.
        `complete` says which it was; `split` which set was scored ("train" where there is no test
        set: a figure of fit, not of accuracy)."""
        started = time.perf_counter()
        data = self.test_data if self.test_data is not None else self.train_data
        subset = None if final else self.config.eval.subset
        n = data.n_samples if subset is None else min(subset, data.n_samples)
        # the bar says why it stands still (a final evaluation of 10^5 labels takes a minute)
        self._bar.set_description_str(f"scoring {n:,} {'test' if data is self.test_data else 'training'} samples")
        try:
            # model.neighbours (a no-op when off): every evaluation scores the model as it would
            # predict now, so its bank comes from this moment's weights; the final one keeps it
            self.model.attach_neighbours(self.train_data)
            report = self.model.eval_report(data, subset)
            bank = self.engine.neighbours
            if bank is not None and bank.loo_precision:  # space "auto": which space votes, and why
                report |= {"votes_space": bank.space, "votes_loo_p1": bank.loo_precision}
        finally:
            self._bar.set_description_str("")
        if not final and self.step < self._total_steps:
            self.model.detach_neighbours()  # the next steps move the weights away from the bank
        return self._record("eval", eval_seconds=time.perf_counter() - started, peak_rss_mb=peak_rss_mb(),
                            complete=subset is None or subset >= data.n_samples,
                            split="train" if data is self.train_data else "test", **report)

    # -- checkpoints and resuming ---------------------------------------------------------------

    def _save_final(self) -> None:
        """The final weights' checkpoint, written before the final evaluation (17 s on
        DebianNextWord), which a scheduler's SIGTERM and SIGKILL may cut short: the training is
        kept whatever happens to it. model.reranker's leaves are fitted after it and saved into the
        same file (_fit_reranker)."""
        if self.save_final and self._last_saved_step != self.step:
            self.checkpoint()
        if self._fit_reranker() and self.save_final:
            self.checkpoint()

    def _fit_reranker(self) -> bool:
        """model.reranker's leaves for the final weights (Model.fit_reranker), recorded; True if
        fitted now (the caller saves them beside the weights, which were saved first)."""
        if not self.model.reranker_due():
            return False
        self._bar.set_description_str("fitting the re-ranking leaves")
        try:
            with said_if_slow("compiling the re-ranking leaves' kernels (first run only)", self.progress):
                compiled = self.model.compile_reranker(self.train_data, self.held_out)
            seconds = self.model.fit_reranker(self.train_data, self.held_out)
        finally:
            self._bar.set_description_str("")
        chosen, leaves = self.model.share_scores, self.model.leaves
        scores = {}  # {cost: {depth: {share: held-out mean P@k}}}
        for (cost, share, depth), score in (chosen or {}).items():
            scores.setdefault(f"{cost:g}", {}).setdefault(str(depth), {})[f"{share:g}"] = round(score, 5)
        self._record("reranker", reranker_seconds=round(seconds, 3), reranker_compile_seconds=round(compiled, 3),
                     reranker_weights=int(leaves.weights.shape[0]),
                     reranker_share=leaves.share, reranker_depth=leaves.depth, reranker_cost=leaves.cost,
                     **({"reranker_held_out": int(self.held_out.shape[0]), "reranker_share_scores": scores}
                        if chosen else {}))
        return True

    def checkpoint(self) -> str:
        """Save `<run_dir>/checkpoints/step-N.npz` and prune old ones. A failed write (disk full,
        permissions) raises CheckpointError; the previous checkpoints are untouched."""
        path = self.run.save_checkpoint(self.step, *self.model.state(**self._progress()),
                                        keep_last=self.config.output.keep_last)
        self._last_saved_step = self.step
        self.checkpoint_clock.saved(self.budget_seconds)
        self.rollbacks.saved()  # progress made and saved
        return path

    def _progress(self) -> dict:
        """What a checkpoint's meta keeps of the run's progress (Progress), and the loss and
        samples/s of the steps since the last log record, which the next record averages (so a
        resumed run logs what one never stopped does)."""
        return {**Progress.of(self), "loss_window": list(self.window.state()),
                "held_out": 0 if self.held_out is None else int(self.held_out.shape[0])}

    def _restored(self, meta: dict) -> None:
        """Take what a subclass's `_progress` added to a checkpoint's meta back (nothing here)."""

    def restore(self, path) -> None:
        """Load a checkpoint's state into this trainer (shapes must match its config)."""
        _apply_state(self, path, *load_checkpoint(path))

    def resume(self) -> bool:
        """Continue from the newest good checkpoint in the run dir; False if there is none (see
        `_resume`: corrupt newer ones are skipped, a mismatching one is a CheckpointError)."""
        return _resume(self)

    def clear_run_dir(self) -> list:
        """Delete an earlier run's checkpoints and metrics.jsonl, to start over in the same run
        directory (`slidepy train --overwrite`). Returns the deleted paths."""
        self.run.lock()
        return self.run.clear()

    # -- the model: evaluate, predict, save, load (Model's, with this trainer's data and progress)

    def evaluate(self, data: Dataset | None = None, subset: int | None = -1) -> dict:
        """P@k and nDCG@k on `data` (default: the test set, else train), scored per the config
        (exact unless a layer's selection says inference: lsh); `subset` -1 means eval.subset."""
        data = data if data is not None else (self.test_data if self.test_data is not None else self.train_data)
        if data is None:
            raise DataError("no data to evaluate on: pass a dataset")
        return self.model.evaluate(data, self.config.eval.subset if subset == -1 else subset)

    def predict(self, data: Dataset, k: int = 5):
        """Top-k label ids (B, k) int32 and scores (B, k) float32 for every sample of `data`."""
        return self.model.predict(data, k)

    def save(self, path, extra: dict | None = None) -> str:
        """Write a self-contained model file (weights, optimizer, tables, config, progress) atomically;
        `extra` joins its meta (label names, a text vectorizer: slidepy.sklearn)."""
        return self.model.save(path, **Progress.of(self), **(extra or {}))

    @classmethod
    def load(cls, path, *, train: Dataset | None = None, test: Dataset | None = None, progress: bool = False,
             load_data_from_config: bool = False, run_dir: str | os.PathLike | None = None) -> "Trainer":
        """A Trainer from a checkpoint, for evaluation / prediction, or further training if datasets
        are given or `load_data_from_config`, into `run_dir` (default: the saved config's
        output.run_dir; see `load_trainer`)."""
        return load_trainer(cls, path, train=train, test=test, progress=progress,
                            load_data_from_config=load_data_from_config, run_dir=run_dir)


# -- the Trainer's rarer paths: starting a fit, rolling back, resuming, loading ----------------


def _start(trainer: Trainer) -> None:
    """What fit does before its first step: refuse to mix with an earlier run's checkpoints,
    write config.yaml, plan the steps, compile the kernels, write the start record."""
    t, n_train = trainer.config.training, trainer.train_data.n_samples
    if trainer.step == 0:
        trainer.run.refuse_earlier_run()
    elif not trainer._resumed:  # Trainer.load: a checkpoint from wherever, trained on into this run dir
        trainer.run.refuse_later_steps(trainer.step)
    trainer.run.prepare(trainer.config)
    data = trainer.train_data
    for what, indptr, effect in (("labels", data.y_indptr, "they train nothing"),
                                 ("features", data.x_indptr, "the network sees only its biases for them")):
        empty = int(np.count_nonzero(np.diff(indptr) == 0))
        if empty:
            trainer._warn(f"{empty:,} of {n_train:,} training samples in {data.source} have no {what} ({effect})",
                          stacklevel=4)
    test = trainer.test_data
    note = None if test is None else unlabelled_note(test, "test")
    if note:
        trainer._warn(note, stacklevel=4)
    d = trainer.config.data
    if test is not None and d.index_base is None and d.test is not None and test.source == os.fspath(d.test):
        note = index_base_note(d.test, f"an XC file ({d.train})" if trainer.model.train_format == "xc" else None)
        if note:
            trainer._warn(note, stacklevel=4)
    stepped = trainer.schedule.n_train  # the samples steps draw from: all but any held out for the leaves
    if t.batch_size > stepped:
        held = f", {n_train - stepped} held out for the leaves' share" if stepped < n_train else ""
        trainer._warn(f"training.batch_size {t.batch_size} is larger than the training set ({n_train} samples "
                      f"in {trainer.train_data.source}{held}): every step uses all {stepped} samples", stacklevel=4)
    if t.optimizer == "adam" and t.lr > ADAM_LR_WARN:
        trainer._warn(f"training.lr {t.lr:g} with Adam moves each weight a step touches by about {t.lr:g}, more than "
                      f"the weights themselves: such a run trains to nothing (Adam's rates are usually 1e-4 to 1e-2)",
                      stacklevel=4)
    trainer._total_steps = trainer.schedule.planned_steps
    trainer.model.detach_neighbours()  # a bank from earlier weights would not match the ones trained now
    # a finished run resumed keeps its final evaluation: fit() then neither repeats nor relogs it
    trainer.last_eval, trainer._resumed_eval = trainer._resumed_eval, {}
    compiled = trainer._compile_seconds
    trainer._compile_seconds = None
    if compiled is None:
        # Ctrl-C is held while numba compiles or loads its cache (an interrupt in there can leave
        # a half-made function: "no compiled object yet", numba issue 2324), then raised: no step
        # has run, nothing is lost. A second one goes through at once.
        with trainer.stop_request.handling():
            compiled = compile_with_notice(trainer.engine, trainer.train_data, trainer.progress)
            if trainer.stop_request.signum is not None:
                raise StopNow(trainer.stop_request.signum)
    trainer._record("start", compile_seconds=compiled,
                    index_build_seconds=round(trainer.engine.index_build_seconds, 4),  # the first, outside the budget
                    threads=trainer.threads, n_train=n_train,
                    **({"held_out": int(trainer.held_out.shape[0])} if trainer.held_out is not None else {}),
                    parameters=int(sum(l.weights.size + l.bias.size for l in trainer.engine.layers)),
                    **_data_report(trainer.warnings, trainer.train_data, trainer.test_data))


def _roll_back(trainer: Trainer, what: str) -> None:
    """The one place a numerical fault goes: raise NumericalError (`Rollbacks.target` says
    when), or restore the newest good checkpoint with half the learning rate. The loop then
    simply continues from the restored step."""
    found = trainer.rollbacks.target(what, trainer.engine.lr, trainer.run)
    scale_before = trainer.lr_scale
    _apply_state(trainer, *found)
    trainer.lr_scale = 0.5 * min(scale_before, trainer.lr_scale)
    trainer.engine.lr = lr = trainer.config.training.lr * trainer.lr_scale
    n = trainer.rollbacks.in_a_row
    trainer._warn(f"{what}: rolled back to {found[0]} (step {trainer.step}) with learning rate {lr:g} "
                  f"(rollback {n} of at most {MAX_ROLLBACKS} in a row)", RuntimeWarning,
                  stacklevel=4)  # past _fault, to its caller in the loop
    # the abandoned steps' records go, as on resume: the run's metrics are one timeline, the one
    # its checkpoints continue (plots and eval seconds would count the redone steps twice)
    trainer.history[:] = [r for r in trainer.history if r["step"] <= trainer.step]
    trainer._record("rollback", reason=what, checkpoint=str(found[0]), lr=lr, rollbacks_in_a_row=n,
                    dropped_records=trainer.run.trim_metrics(trainer.step))
    trainer.window.reset()
    trainer._bar.n = trainer._bar_position()
    trainer._bar.refresh()


def _apply_state(trainer: Trainer, path, arrays: dict, meta: dict, model_loaded: bool = False) -> None:
    """Copy a loaded checkpoint into `trainer` (the model too, unless `model_loaded`); any
    disagreement with the model is a CheckpointError naming the file."""
    progress = Progress.from_meta(path, meta)
    if not model_loaded:
        trainer.model.restore(path, arrays, meta)
    (trainer.epoch, trainer.batch_in_epoch, trainer.train_seconds, trainer.rebuild_seconds, trainer.lr_scale,
     trainer.eval_seconds_along) = progress
    trainer.window.restore(meta.get("loss_window"))
    _keep_training_rows(trainer, meta.get("held_out"))
    trainer._restored(meta)
    trainer._last_saved_step = trainer.step
    trainer.checkpoint_clock.saved(trainer.budget_seconds)


def _keep_training_rows(trainer: Trainer, recorded) -> None:
    """A checkpoint records how many samples its run held out for model.reranker.weight "auto"
    (files from before it: None, taken as agreeing). Where the rule of reranker.validation_rows
    now draws another count (slidepy changed between the two), the network may have trained on
    the samples it would hold out: the run goes on holding nothing out, so that the leaves' share
    is never chosen on samples the network saw (it takes reranker.WEIGHT)."""
    if recorded is None or trainer.held_out is None:  # nothing held out now: nothing to give back
        return
    current = int(trainer.held_out.shape[0])
    if int(recorded) == current:
        return
    trainer._warn(f"the checkpoint's run held out {int(recorded)} training samples and this version of "
                  f"slidepy would hold out {current}: the run goes on training on all of them, and the "
                  f"leaves take the default share ({WEIGHT})", stacklevel=4)
    trainer.train_on_every_row()


def _resume(trainer: Trainer) -> bool:
    """Continue from the newest good checkpoint in the run dir (`RunDir.resume_point`: corrupt
    newer ones are skipped with a warning); False if there is none. A checkpoint that does not
    match the config raises CheckpointError rather than silently starting over."""
    trainer.run.lock()
    try:
        found = trainer.run.resume_point()
        if found is None:
            trainer.run.trim_metrics(-1)  # every record of an attempt killed before its first checkpoint
            return False
        try:
            _apply_state(trainer, *found)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (was {trainer.run_dir} written with another config? use another --out)") \
                from None
    except BaseException:  # a Trainer with the right config may try again in this process
        trainer.run.unlock()
        raise
    trainer._resumed = True
    saved, now = with_defaults(found[2].get("config")), config_to_dict(trainer.config)
    changed = config_changes(saved, now)
    if changed:
        trainer._warn(f"resuming from {found[0]} with settings that differ from those it was trained with: "
                      f"{'; '.join(changed)}", stacklevel=4)
    trainer._record("resume", checkpoint=str(found[0]), dropped_records=trainer.run.trim_metrics(trainer.step),
                    **({"changed": changed} if changed else {}))
    length = config_changes(saved, now, exempt=_NOT_LENGTH_KEYS)
    if length and trainer.schedule.over(trainer.epoch, trainer.step, trainer.schedule.planned_steps,
                                        trainer.budget_seconds):
        # a run stopped past the end its config now gives (an original --set or --time-budget left
        # off the resume command) would end at once without a word
        trainer._warn(f"resumed at step {trainer.step} (epoch {trainer.epoch}), past where this config ends the run "
                      f"({'; '.join(length)} since it was trained): it ends here; give the length it was trained "
                      "with to go on", stacklevel=4)
    # a finished run's final evaluation stands for this one only if nothing that scores differs:
    # another test set, k or votes would go unreported
    same = not config_changes(saved, now, SAME_SCORES_KEYS)
    trainer._resumed_eval = trainer.run.complete_eval_at(trainer.step) if same else {}
    return True


# What a resumed run may change without a word: how long it goes on, where and how it runs, what
# it logs and evaluates (dotted key prefixes of the config).
RESUMABLE_KEYS = ("training.epochs", "training.max_steps", "training.time_budget_s", "training.threads",
                  "training.log_every", "training.on_nan", "eval.", "output.", "distributed.", "data.cache")


# Everything but the run's length: what a resume that ends at once names (_resume).
_NOT_LENGTH_KEYS = ("data.", "model.", "eval.", "output.", "distributed.") + tuple(
    f"training.{key}" for key in TrainingConfig.model_fields
    if key not in ("epochs", "max_steps", "time_budget_s"))


# What may differ for a finished run's final evaluation to stand for the resumed one: nothing that
# changes its scores (where and how the run goes on, but not its test set, k or votes).
SAME_SCORES_KEYS = ("training.threads", "training.log_every", "training.on_nan", "output.", "distributed.",
                    "data.cache")


def with_defaults(saved):
    """A checkpoint's config dict with the defaults of settings added since it was written (as
    loading it gives), so that a resume does not report them as changed; as it was where it no
    longer validates."""
    if not isinstance(saved, dict):
        return saved
    try:
        return config_to_dict(config_from_dict(saved))
    except ConfigError:
        return saved


def config_changes(before: dict | None, after: dict, exempt: tuple = RESUMABLE_KEYS) -> list[str]:
    """'key old -> new' for each setting of `after` (a config dict) that differs from `before`
    (the one a checkpoint was trained with), save the `exempt` key prefixes."""
    if not isinstance(before, dict):
        return []
    old, new = flat_keys(before), flat_keys(after)
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and not key.startswith(exempt)]


def load_trainer(cls: type, path, *, train: Dataset | None = None, test: Dataset | None = None,
                 progress: bool = False, load_data_from_config: bool = False,
                 run_dir: str | os.PathLike | None = None) -> Trainer:
    """A `cls` (Trainer or a subclass) from a checkpoint (`Model.load`), for evaluation /
    prediction, or further training if datasets are given or `load_data_from_config`. Any problem
    with the file is a CheckpointError naming it (`Trainer.load`)."""
    model, meta = Model.load(path)
    if train is None and load_data_from_config:
        train, loaded_test = load_data(model.config)
        test = test if test is not None else loaded_test
    model.accept_training_data(train, test, source=path)
    trainer = cls(model.config, train=train, test=test, progress=progress, _model=model, run_dir=run_dir)
    if train is not None:  # it trains on from here: on these sets
        model.data_named = trainer._data_named
    _apply_state(trainer, path, {}, meta, model_loaded=True)
    return trainer


# -- what the loop leans on -------------------------------------------------------------------


class Progress(NamedTuple):
    """Training progress a checkpoint holds besides the model (Model.state adds it to the meta)."""

    epoch: int = 0                # epochs completed
    batch_in_epoch: int = 0       # batches of the current epoch done
    train_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    lr_scale: float = 1.0         # halved by each NaN rollback; the schedule scales training.lr by it
    eval_seconds_along: float = 0.0  # of the evaluations along the run, for eval.max_share

    @classmethod
    def of(cls, trainer: Trainer) -> dict:
        """A trainer's progress (its attributes of these names), as its checkpoints' meta holds it."""
        return cls(*(getattr(trainer, name) for name in cls._fields))._asdict()

    @classmethod
    def from_meta(cls, path, meta: dict) -> "Progress":
        """The progress in a checkpoint's meta; a model file written by Model.save (an import, say)
        has none: it starts at epoch 0. A malformed one is a CheckpointError naming `path`."""
        try:
            progress = cls(int(meta.get("epoch", 0)), int(meta.get("batch_in_epoch", 0)),
                           float(meta.get("train_seconds", 0.0)), float(meta.get("rebuild_seconds", 0.0)),
                           float(meta.get("lr_scale", 1.0)), float(meta.get("eval_seconds_along", 0.0)))
            if progress.epoch < 0 or progress.batch_in_epoch < 0:
                raise ValueError("negative epoch / batch")
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {type(exc).__name__}: {exc}") from None
        return progress


class Schedule:
    """The plan of a run, from the training section, the training set's size and the rows held
    out of training (reranker.validation_rows) alone: batches per epoch, planned steps, each
    epoch's sample order, the learning rate at a step, and when the run is over. Distributed
    workers take their batches from it too."""

    def __init__(self, t: TrainingConfig, n_train: int, held_out: np.ndarray | None = None):
        self.t = t
        # the rows an epoch goes through: all but those `held_out` (None: all)
        self.rows = training_rows(n_train, held_out)
        self.n_train = n_train if self.rows is None else self.rows.shape[0]
        self.batches_per_epoch = -(-self.n_train // t.batch_size)
        # The epochs, at most training.max_steps; the linear learning-rate schedule decays over
        # them (or over time_budget_s, whichever comes first).
        steps = t.epochs * self.batches_per_epoch
        self.planned_steps = min(steps, t.max_steps) if t.max_steps is not None else steps
        self._order = (None, None)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The epoch's sample order, a pure function of (seed, epoch), so a resumed run sees
        exactly the batches the interrupted one would have; drawn once per epoch."""
        if self._order[0] != epoch:
            order = generator(self.t.seed, epoch).permutation(self.n_train).astype(np.int64)
            self._order = (epoch, order if self.rows is None else self.rows[order])
        return self._order[1]

    def batch_rows(self, epoch: int, batch: int) -> np.ndarray:
        """The dataset rows of batch `batch` (from 0) of `epoch`."""
        return self.epoch_order(epoch)[batch * self.t.batch_size:][:self.t.batch_size]

    def lr_share(self, step: int, total_steps: int, train_seconds: float) -> float:
        """The schedule's factor on training.lr at the share of the run done: by steps (of
        total_steps, else planned_steps) or by training.time_budget_s, whichever is ahead."""
        t = self.t
        done = step / max(1, total_steps or self.planned_steps)
        if t.time_budget_s:
            done = max(done, train_seconds / t.time_budget_s)
        return scheduled_lr(1.0, t.lr_schedule, t.warmup_steps, step, done)

    def over(self, epoch: int, step: int, total_steps: int, train_seconds: float) -> bool:
        """The epochs, the steps (total_steps) or training.time_budget_s are done."""
        budget = self.t.time_budget_s
        return epoch >= self.t.epochs or step >= total_steps or (budget is not None and train_seconds >= budget)


class CheckpointClock:
    """When a periodic checkpoint is due: at every output.checkpoint_every-th step, and once
    output.checkpoint_every_s seconds of training (steps + rebuilds, the time budget's clock) have
    passed since the last checkpoint written or loaded. The end of a run and a stop by signal save
    anyway. Distributed runs use it too."""

    def __init__(self, out: OutputConfig, seconds: float = 0.0):
        self.every, self.every_s, self.last_s = out.checkpoint_every, out.checkpoint_every_s, seconds

    def due(self, step: int, seconds: float) -> bool:
        by_steps = bool(self.every) and step % self.every == 0
        return by_steps or (self.every_s is not None and seconds - self.last_s >= self.every_s)

    def saved(self, seconds: float) -> None:
        """A checkpoint was written (or loaded) at `seconds` of training."""
        self.last_s = seconds


class LossWindow:
    """Loss and throughput since the last log record: the sums of loss * samples, samples, seconds."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.samples, self.seconds = 0.0, 0, 0.0

    def state(self) -> tuple[float, int, float]:
        return self.loss_sum, self.samples, self.seconds

    def restore(self, state) -> None:
        """The sums a checkpoint kept (`state()`); none (an older checkpoint, a model file): empty."""
        try:
            loss_sum, samples, seconds = state
            self.loss_sum, self.samples, self.seconds = float(loss_sum), int(samples), float(seconds)
        except (TypeError, ValueError):
            self.reset()

    def add(self, loss: float, samples: int, seconds: float) -> None:
        self.loss_sum, self.samples, self.seconds = (self.loss_sum + loss * samples, self.samples + samples,
                                                     self.seconds + seconds)

    def summary(self) -> tuple[float, float]:
        """(mean loss per sample, samples per second)."""
        return self.loss_sum / self.samples, self.samples / max(self.seconds, 1e-9)


class StopRequest:
    """SIGINT and SIGTERM during `fit`: the first sets `signum`, and the loop saves and stops after
    the current batch; a second raises StopNow, a KeyboardInterrupt (the user really wants out now)."""

    def __init__(self):
        self.signum: int | None = None

    @contextlib.contextmanager
    def handling(self):
        """SIGINT and SIGTERM come here inside the block; the previous handlers come back after.
        Each block starts afresh (a fit after an interrupted one is not interrupted by the old
        signal). Outside the main thread, where Python lets no handler be set (joblib's threads,
        a web server's workers), the block runs without them."""
        self.signum = None
        previous = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                previous[s] = signal.signal(s, self._on_signal)
        except ValueError:  # not the main thread
            pass
        try:
            yield self
        finally:
            for s, old in previous.items():
                signal.signal(s, old)

    def _on_signal(self, signum, frame):
        if self.signum is not None:  # a second signal: the user (or the scheduler) wants out now
            raise StopNow(signum)
        self.signum = signum

    def interrupted(self, step: int, run: RunDir, data_named: bool,
                    save: Callable[[], str] | None) -> TrainingInterrupted:
        """The error that ends the run at `step`, after `save()` writes its checkpoint (None: the
        step's checkpoint is written already), naming it and how to resume: the command, where the
        config names the data (`data_named`), else the Python calls (the run's config.yaml would
        train on other data). If the write fails it names the newest checkpoint there is."""
        signame = signal.Signals(self.signum).name
        if data_named:
            hint = f"resume with: slidepy train --config {run.path / 'config.yaml'} --out {run.path} --resume"
        else:
            hint = (f"resume with the same datasets: Trainer(config, train=..., test=..., run_dir='{run.path}'), "
                    "then .resume() and .fit()")
        try:
            path = save() if save is not None else run.checkpoint_path(step)
        except CheckpointError as exc:
            good = ([None] + [path for _, path in run.checkpoints()])[-1]
            return TrainingInterrupted(f"stopped by {signame} at step {step}, but {exc}; the newest checkpoint is "
                                       f"{good}; {hint}", good, self.signum)
        return TrainingInterrupted(f"stopped by {signame} at step {step}; checkpoint {path}; {hint}", path,
                                   self.signum)


class Rollbacks:
    """`training.on_nan` and the count of rollbacks in a row (no checkpoint written in between)."""

    def __init__(self, on_nan: str):
        self.on_nan, self.in_a_row = on_nan, 0

    def target(self, what: str, lr: float, run: RunDir) -> tuple:
        """(path, arrays, meta) of the checkpoint to roll back to after the fault `what`, counted
        as one more in a row; NumericalError naming `what` when on_nan is stop, after
        MAX_ROLLBACKS in a row, or when `run` has no checkpoint that loads."""
        if self.on_nan != "rollback":
            raise NumericalError(f"{what}; lower training.lr or set training.on_nan: rollback")
        if self.in_a_row >= MAX_ROLLBACKS:
            raise NumericalError(f"{what}; gave up after {MAX_ROLLBACKS} rollbacks in a row (learning rate now "
                                 f"{lr:g}); lower training.lr")
        found = run.newest_good()
        if found is None:
            raise NumericalError(f"{what}; on_nan is rollback but {run.path} has no checkpoint to roll back to")
        self.in_a_row += 1
        return found

    def saved(self) -> None:
        """A checkpoint was written: the count starts over."""
        self.in_a_row = 0


def eval_along_due(max_share: float | None, eval_seconds: float, training_seconds: float) -> bool:
    """Whether a scheduled evaluation along the run goes ahead: unless the ones before it took
    more than max_share (eval.max_share; None: no limit) of the training seconds. The final
    evaluation is never asked. Shared by Trainer._eval_along and the Ray driver (distributed.py)."""
    return max_share is None or eval_seconds <= max_share * training_seconds


def progress_bar(total_steps: int, time_budget_s: float | None, position: float, enabled: bool) -> tqdm:
    """The bar a training run shows (Trainer.fit, distributed.train_distributed): steps out of the
    planned ones, or, under training.time_budget_s, seconds of the budget spent (the planned steps
    of a time-budgeted run are only a cap, so a bar over them would show a meaningless ETA).
    position: bar_position's."""
    if not time_budget_s:
        return tqdm(initial=position, dynamic_ncols=True, disable=not enabled, total=total_steps, unit="step")
    places = 1 if time_budget_s < 10 else 0  # tenths of a short budget: not "0/2 s" at 40%
    counted = f"{{n:.{places}f}}/{{total:.{places}f}} s of the time budget"
    return tqdm(initial=position, dynamic_ncols=True, disable=not enabled, total=float(time_budget_s), unit="s",
                bar_format="{l_bar}{bar}| " + counted + " [{elapsed}<{remaining}{postfix}]")


def bar_position(step: int, total_steps: int, time_budget_s: float | None, seconds: float) -> float:
    """Where the progress bar stands: the budget's seconds spent (`seconds`, what the budget
    counts), or the steps taken, within the bar's total."""
    if time_budget_s:
        return min(round(seconds, 1), float(time_budget_s))
    return min(step, total_steps)


def show_rate(bar: tqdm, step: int, time_budget_s: float | None, loss: float, rate: float) -> None:
    """The bar's postfix at a log point: the loss and samples/s, and the step where the bar counts
    the time budget's seconds instead of steps."""
    steps = {"step": step} if time_budget_s else {}
    bar.set_postfix(**steps, loss=f"{loss:.4f}", samples_s=f"{rate:,.0f}")


def advance_bar(bar: tqdm, position: float) -> None:
    """Move the bar forward to `position` (never back)."""
    delta = position - bar.n
    if delta > 0:
        bar.update(delta)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024, 1)


COMPILING = "compiling kernels (first run only)..."


class CompileNotice:
    """Says on `stream` why the first run waits: COMPILING, then the seconds it took. On a terminal,
    with `live`, the seconds count up while it waits (about 20 s on 2 cores), so the run is seen
    to be alive; elsewhere (a log file, --no-progress) it is one line, written once."""

    def __init__(self, stream, live: bool, interval: float = 1.0):
        self.stream, self.interval = stream, interval
        self.live = live and hasattr(stream, "isatty") and stream.isatty()
        self.started = None
        self._done = threading.Event()
        self._ticker = None

    def start(self) -> None:
        self.started = time.perf_counter()
        print(COMPILING, end="", file=self.stream, flush=True)
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="slidepy-compile-notice", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._done.wait(self.interval):
            print(f"\r{COMPILING} {time.perf_counter() - self.started:.0f} s", end="", file=self.stream, flush=True)

    def finish(self, seconds: float | None) -> None:
        """End the line with the seconds, or bare (None: the compile failed, and its error follows
        on a line of its own). Only if start was called: nothing compiled, nothing said."""
        if self.started is None:
            return
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        said = "" if seconds is None else f" {seconds:.0f} s"
        print(f"\r{COMPILING}{said}" if self._ticker is not None else said, file=self.stream, flush=True)


@contextlib.contextmanager
def said_if_slow(what: str, live: bool, after: float = 2.0, stream=None):
    """`what...` on stderr once the block has run `after` seconds, and its seconds when it ends:
    work that is quick here says nothing, and work that is long (a k-means index over 10^5 rows,
    20-40 s on 2 cores) is not a silent wait. Nothing at all unless `live` (the run's progress)."""
    if not live:
        yield
        return
    stream = stream or sys.stderr
    started, said = time.perf_counter(), threading.Event()

    def say():
        print(f"{what}...", end="", file=stream, flush=True)
        said.set()

    timer = threading.Timer(after, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        if said.is_set():
            print(f" {time.perf_counter() - started:.0f} s", file=stream, flush=True)


def compile_with_notice(engine: Engine, data: Dataset, live: bool) -> float:
    """Engine.warmup, saying on stderr why the first run waits (CompileNotice). Returns the
    seconds, reported apart from training time."""
    notice = CompileNotice(sys.stderr, live)
    try:
        seconds = engine.warmup(data, on_compile=notice.start)
    except BaseException:
        notice.finish(None)  # stop the ticking before the error (or Ctrl-C) is reported
        raise
    notice.finish(seconds)
    return seconds


# -- the data a config names, and the threads it asks for ------------------------------------


def load_data(cfg: Config) -> tuple[Dataset, Dataset | None]:
    """The train and test sets a config names (or generates). Raises ConfigError for a data path
    that does not exist, DataError (file:line: reason) for bad contents, an empty set, or a test
    set whose dimensions differ from the training set's."""
    d = cfg.data
    if d.train is None and d.test is not None:  # else the test set would be dropped for synthetic data
        raise ConfigError(f"data.test is {d.test} but data.train is null (which generates synthetic data "
                          "instead of reading a file): give data.train (--train FILE) too")
    if d.train is None:
        s = d.synthetic
        return make_synthetic(s.n_train, s.n_test, s.n_features, s.n_labels, nnz_per_sample=s.nnz_per_sample,
                              labels_per_sample=tuple(s.labels_per_sample), noise_fraction=s.noise_fraction,
                              zipf_exponent=s.zipf_exponent, seed=s.seed)
    validate_paths(cfg, output=False)
    train = load_dataset(d.train, **_load_options(d))
    _require_samples(train, "data.train")
    _require_labelled(train)  # before the test set, which would be blamed for labels beyond none
    if d.labels is not None:  # now, not when the trained model first predicts with them
        try:
            read_label_names(d.labels, train.n_labels)
        except DataError as exc:
            raise DataError(f"data.labels: {exc} ({d.train})") from None
    return train, load_test(cfg, train)


def load_test(cfg: Config, train: Dataset) -> Dataset | None:
    """The test set a config names (None if none), read to the dimensions of its training set
    `train`; errors as load_data's."""
    d = cfg.data
    if d.test is None:
        return None
    try:
        test = load_dataset(d.test, n_features=train.n_features, n_labels=train.n_labels, **_load_options(d))
    except DataError as exc:
        if "requested" in str(exc) or "out of range: given" in str(exc):
            headerless = os.path.isfile(train.source) and file_format(train.source) == "libsvm"
            how = ("; the training file has no XC header, so its dimensions are the largest ids it holds: give both "
                   "files the XC header 'n_samples n_features n_labels', with the same n_features and n_labels "
                   "covering every id of both") if headerless else ""
            raise DataError(f"{exc} (data.test must fit the model built from data.train: "
                            f"{train.n_features} features, {train.n_labels} labels{how})") from None
        raise
    _require_samples(test, "data.test")
    unlabelled_note(test, "test")  # none labelled: refused before any work
    if test.n_features != train.n_features or test.n_labels != train.n_labels:
        raise ConfigError(f"data.test {d.test} has {test.n_features} features / {test.n_labels} labels but "
                          f"data.train has {train.n_features} / {train.n_labels}")
    return test


def _load_options(d) -> dict:
    """load_dataset's options from a config's data section."""
    return dict(format=d.format, index_base=d.index_base, cache=d.cache, cache_dir=d.cache_dir,
                skip_bad_lines=d.skip_bad_lines)


def _require_samples(ds: Dataset, what: str) -> None:
    if ds.n_samples:
        return
    msg = f"{ds.source}: no samples ({what} is empty"
    if ds.skipped_lines:
        msg += f": all {ds.skipped_lines} data lines were bad and skipped; first: {ds.first_bad[0]}"
    raise DataError(msg + ")")


def _require_labelled(train: Dataset) -> None:
    """A model of 0 labels would be saved and never load."""
    if train.y_indices.size == 0:
        raise DataError(f"{train.source}: no training sample has a label: nothing to learn from "
                        "(a line's first token is its comma-separated label list: 'l1,l2 f:v f:v')")


def _check_data(train: Dataset | None, test: Dataset | None) -> None:
    """Datasets handed in from Python skip the parser's checks: non-finite features would turn
    every weight they touch into NaN; a test set must be non-empty and as wide as the train set."""
    for ds, what in ((train, "training"), (test, "test")):
        if ds is not None and ds.x_values.size and not np.isfinite(ds.x_values).all():
            bad = int(np.flatnonzero(~np.isfinite(ds.x_values))[0])
            row = int(np.searchsorted(ds.x_indptr, bad, side="right")) - 1
            raise DataError(f"{ds.source}: {what} sample {row} has a non-finite feature value ({ds.x_values[bad]})")
    if test is not None:
        _require_samples(test, "the test set")
        unlabelled_note(test, "test")  # none labelled: refused before any work
        if train is not None and test.n_features != train.n_features:
            raise DataError(f"{test.source}: the test set has {test.n_features} features but the training "
                            f"set {train.n_features}")


def _data_report(warned: list[str], train: Dataset, test: Dataset | None) -> dict:
    """Fields of the start record: warnings so far, and lines dropped by skip_bad_lines."""
    out: dict = {"warnings": list(warned)} if warned else {}
    sets = [("train", train), ("test", test)]
    skipped = {name: ds.skipped_lines for name, ds in sets if ds is not None and ds.skipped_lines}
    if skipped:
        out["skipped_lines"] = skipped
        out["first_bad"] = [line for _, ds in sets if ds is not None for line in ds.first_bad][:MAX_BAD_REPORTED]
    return out


def label_rate(data: Dataset) -> float:
    """Mean labels per sample over the number of labels: the rate bce's output biases start at."""
    return data.avg_labels_per_sample / max(1, data.n_labels)


def set_threads(cfg: Config) -> int:
    """Apply training.threads / deterministic to numba; returns the thread count in use."""
    if cfg.training.deterministic:
        n = 1
    elif cfg.training.threads is not None:
        n = cfg.training.threads
    else:
        n = numba.config.NUMBA_NUM_THREADS
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    use_threads(n)
    return n

