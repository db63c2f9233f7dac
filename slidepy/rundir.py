"""A run directory: everything a training run keeps on disk, and the lock that makes it one run's.

    <run_dir>/config.yaml                      the resolved config (written at start)
    <run_dir>/metrics.jsonl                    one JSON record per line, appended
    <run_dir>/checkpoints/step-{step:09d}.npz  checkpoints (checkpoint.py's format)
    <run_dir>/run.lock                         flock'ed by the live run; holds its pid

Rules:
* One live run per directory: `lock()` takes an exclusive, non-blocking `fcntl.flock` on
  run.lock and keeps it until `unlock()` (or the process ends, however it ends: the kernel drops
  the lock of a killed process). A second run is refused with a one-line ConfigError naming the
  holder's pid. (Where fcntl does not exist, Windows, there is no lock.)
* metrics.jsonl is appended one whole line per `os.write` with O_APPEND, so a kill leaves whole
  lines or, at worst, a cut last line, which `prepare` removes. `trim_metrics(step)` drops the
  records of steps after a checkpoint (a resume re-runs them) through the atomic writer.
* Temp files of writes a kill cut short (`*.tmp-<pid>`) are deleted by `prepare` once their
  writer is gone.
* Checkpoint pruning keeps the newest `keep_last` readable checkpoints; unreadable newer ones are
  left alone, so a corrupt newest file never costs the last good one.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_write, remove_stale_temps
from .checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from .configfile import dump_config
from .errors import CheckpointError, CheckpointWriteError, ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = "run.lock"
METRICS_FILE = "metrics.jsonl"
_STEP_RE = re.compile(r"^step-(\d{9,})\.npz$")


def checkpoint_path(run_dir, step: int) -> str:
    """`<run_dir>/checkpoints/step-{step:09d}.npz` (a str)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return os.path.join(os.fspath(run_dir), CHECKPOINT_DIR, f"step-{int(step):09d}.npz")


def list_checkpoints(run_dir) -> list:
    """`[(step, path), ...]` of the checkpoint files in `run_dir`, ascending by step.

    Only names of the form `step-<digits>.npz` count: temp files of interrupted writes are
    ignored. A missing directory gives []. Files are not opened.
    """
    ckpt_dir = os.path.join(os.fspath(run_dir), CHECKPOINT_DIR)
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        m = _STEP_RE.match(name)
        full = os.path.join(ckpt_dir, name)
        if m and os.path.isfile(full):
            found.append((int(m.group(1)), full))
    found.sort()
    return found


def prune_checkpoints(run_dir, keep_last: int) -> list:
    """Delete old checkpoints, keeping the newest `keep_last` (>= 1) readable ones.

    Walks from the newest step down; once `keep_last` checkpoints whose metadata reads cleanly
    have been seen, every older checkpoint is deleted. Unreadable files newer than that are left
    alone. Temp files are not touched. Returns the deleted paths.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, (int, np.integer)) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    kept = 0
    removed = []
    for _step, path in reversed(list_checkpoints(run_dir)):
        if kept >= keep_last:
            os.remove(path)
            removed.append(path)
            continue
        try:
            read_checkpoint_meta(path)
        except CheckpointError:
            continue
        kept += 1
    return removed


def parse_records(text: str) -> list[dict]:
    """The records of a metrics.jsonl text, in order; a line a kill cut short is skipped."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records


class RunDir:
    """The files of one run directory. `warn(message, category)` reports what training survives
    (a metrics file that cannot be appended to, old checkpoints that cannot be deleted, a corrupt
    checkpoint passed over)."""

    def __init__(self, path, warn: Callable = warnings.warn):
        self.path = Path(path)
        self.warn = warn
        self._lock_file = None
        self._metrics_broken = False

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    # -- the lock -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Hold run.lock for this process (idempotent). Creates the directory. Raises ConfigError
        if another live run holds it, or if the directory cannot be written."""
        if self._lock_file is not None or fcntl is None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            f = open(self.path / LOCK_FILE, "a+")
        except OSError as exc:
            raise ConfigError(f"output.run_dir: cannot write to {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            if holder == str(os.getpid()):  # a Trainer of this very process holds it (resumed, not yet fit)
                raise ConfigError(f"output.run_dir: {self.path} is held by another Trainer in this process (one that "
                                  "resumed or cleared it and has not trained yet): fit() that one, or delete it "
                                  "first") from None
            raise ConfigError(f"output.run_dir: {self.path} is in use by another live run (pid {holder}); wait "
                              "for it to finish or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None

    # -- config and metrics ---------------------------------------------------------------------

    def prepare(self, config) -> None:
        """Create the directory and write config.yaml (an unwritable place is a ConfigError, before
        any training), repair a metrics.jsonl whose last line a kill cut short, and delete temp
        files of writes that a kill interrupted."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            dump_config(config, self.path / "config.yaml")
        except OSError as exc:
            raise ConfigError(f"output.run_dir: cannot write to {self.path}: {exc.strerror or exc}") from None
        try:
            if self.metrics.exists() and self.metrics.stat().st_size:
                with open(self.metrics, "rb+") as f:
                    data = f.read()
                    if not data.endswith(b"\n"):
                        f.truncate(data.rfind(b"\n") + 1)
        except OSError:
            pass
        for directory in (self.path, self.path / CHECKPOINT_DIR):
            try:
                remove_stale_temps(directory)
            except OSError:
                pass

    def append_metrics(self, record: dict) -> None:
        """Append one record as one line. If the file cannot be written (disk full, permissions),
        warns once and stops trying: training goes on."""
        if self._metrics_broken:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            line = (json.dumps(record) + "\n").encode()
            # One write() of the whole line with O_APPEND: a kill leaves whole lines (or, at
            # worst, a cut last line that the next start removes).
            fd = os.open(self.metrics, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            self._metrics_broken = True
            self.warn(f"cannot append to {self.metrics} ({exc.strerror or exc}); training goes on, records are "
                      "kept in Trainer.history only", RuntimeWarning)

    def trim_metrics(self, step: int) -> int:
        """Rewrite metrics.jsonl without the records of steps after `step` (and any unreadable
        line). Returns how many lines were dropped."""
        try:
            lines = self.metrics.read_bytes().splitlines(keepends=True)
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
        try:
            atomic_write(self.metrics, lambda f: f.write(b"".join(kept)))
        except OSError:
            return 0
        return len(lines) - len(kept)

    def complete_eval_at(self, step: int) -> dict:
        """The last whole-test-set evaluation record of `step` in metrics.jsonl, or {} (a resumed
        run that had finished has its final evaluation already)."""
        try:
            text = self.metrics.read_text(encoding="utf-8")
        except OSError:
            return {}
        found = [r for r in parse_records(text) if r["event"] == "eval" and r.get("step") == step and r.get("complete")]
        return found[-1] if found else {}

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoints(self) -> list:
        """[(step, path), ...] ascending."""
        return list_checkpoints(self.path)

    def checkpoint_path(self, step: int) -> str:
        return checkpoint_path(self.path, step)

    def refuse_earlier_run(self) -> None:
        """A fresh run must not mix its checkpoints with an earlier run's (pruning keeps the newest
        steps, so the new run's own checkpoints would be the ones deleted), nor its log with the
        log of a run killed before its first checkpoint (steps would run 0..n, then 0.. again)."""
        earlier = self.checkpoints()
        options = ("continue it with --resume (from Python: Trainer.resume()), start over with --overwrite "
                   "(Trainer.clear_run_dir(); deletes them), or use another --out (output.run_dir)")
        if earlier:
            raise ConfigError(f"output.run_dir: {self.path} already holds checkpoints of an earlier run (up to "
                              f"step {earlier[-1][0]}); {options}")
        try:
            logged = self.metrics.stat().st_size > 0
        except OSError:
            logged = False
        if logged:
            raise ConfigError(f"output.run_dir: {self.path} already holds the log of an earlier run ({self.metrics}, "
                              f"no checkpoint); {options.replace('deletes them', 'deletes it')}")

    def refuse_later_steps(self, step: int) -> None:
        """A model loaded from step `step` (Trainer.load) and trained on here must not write over
        the later checkpoints of the run it came from, nor log its steps a second time."""
        later = [s for s, _ in self.checkpoints() if s > step]
        try:
            logged = [r["step"] for r in parse_records(self.metrics.read_text(encoding="utf-8"))]
        except OSError:
            logged = []
        last = max(later + [s for s in logged if isinstance(s, int) and s > step], default=None)
        if last is not None:
            raise ConfigError(f"output.run_dir: {self.path} holds a run that went on past step {step}, where this "
                              f"model was saved (to step {last}): train it on in another run_dir "
                              "(Trainer.load(..., run_dir=...)), or continue the run with Trainer.resume()")

    def save_checkpoint(self, step: int, arrays: dict, meta: dict, keep_last: int) -> str:
        """Write `checkpoints/step-N.npz` and prune to `keep_last`. A failed write (disk full,
        permissions) raises CheckpointError, leaving the previous checkpoints untouched; a failed
        prune is a warning."""
        path = self.checkpoint_path(step)
        try:
            save_checkpoint(path, arrays, meta)
        except OSError as exc:
            newest = self.checkpoints()
            kept = f"; the newest one kept is {newest[-1][1]}" if newest else "; no earlier checkpoint is kept"
            raise CheckpointWriteError(f"cannot write checkpoint {path}: {exc.strerror or exc}{kept}") from None
        try:
            prune_checkpoints(self.path, keep_last)
        except OSError as exc:
            self.warn(f"cannot delete old checkpoints in {self.path}: {exc.strerror or exc}", RuntimeWarning)
        return path

    def newest_good(self):
        """(path, arrays, meta) of the newest checkpoint that loads cleanly, or None when there is
        none. Unreadable (truncated, corrupt) newer ones are skipped with a warning."""
        for _step, path in reversed(self.checkpoints()):
            try:
                arrays, meta = load_checkpoint(path)
            except CheckpointError as exc:
                self.warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning)
                continue
            return path, arrays, meta
        return None

    def resume_point(self):
        """(path, arrays, meta) of the checkpoint a resume continues from: the newest that loads
        (`newest_good`), or None when there is no checkpoint at all. Raises CheckpointError when
        checkpoints exist but none can be read, rather than silently starting over."""
        found = self.checkpoints()
        if not found:
            return None
        good = self.newest_good()
        if good is None:
            raise CheckpointError(f"--resume: none of the {len(found)} checkpoint(s) in {self.path / CHECKPOINT_DIR} "
                                  "can be read (see the warnings above); start from scratch with --overwrite (deletes "
                                  "them) or another --out")
        return good

    def clear(self) -> list:
        """Delete an earlier run's checkpoints (and their temp files) and metrics.jsonl, to start
        over in the same directory (`slidepy train --overwrite`). Returns the deleted paths."""
        doomed = [path for _, path in self.checkpoints()]
        ckpt_dir = self.path / CHECKPOINT_DIR
        if ckpt_dir.is_dir():
            doomed += [str(p) for p in ckpt_dir.glob("step-*.npz.tmp-*")]
        if self.metrics.exists():
            doomed.append(str(self.metrics))
        for path in doomed:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError(f"output.run_dir: cannot delete {path}: {exc.strerror or exc}") from None
        return doomed
