"""The parent's side of the workers: start one, send it requests, read its answers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import MARK, REPO, SLIDEPY_ENV_DEFAULTS, USER_ENV
from .systems import SLIDEPY


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
    return [sys.executable, str(REPO / "scripts" / "bench.py"), "--worker", json.dumps({"_file": path})]


def log_line(msg: str, log) -> None:
    """Print a time-stamped line and append it to the run's bench.log (`log`, when open)."""
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
