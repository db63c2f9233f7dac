#!/usr/bin/env python
"""Seconds numba spends compiling each kernel on a cold start (issue 10: "report the compile
seconds per kernel"), for one config.

    python scripts/compile_times.py --config configs/quickstart.yaml
    python scripts/compile_times.py --config configs/debian-deps.yaml --set training.epochs=1 --no-helper

Runs `slidepy train` on the config in a child process whose JIT cache is an empty temporary
folder, so every kernel compiles (or, with the compile helper on, loads what the helper compiled
meanwhile), and prints, per function, the seconds of its own compile ("own": typing, lowering and
LLVM for the function itself, its callees' compiles taken out) and with its callees ("with
callees"), slowest first, then the run's wall time and the "compiling kernels" seconds it
reported. Only the compiles this process runs are seen: kernels the helper process compiled
load from the cache here and do not show up, which is the helper's point; `--no-helper` shows
them all. A warm run compiles nothing (tests/test_compile.py::test_a_warm_run_compiles_nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

import slidepy  # noqa: F401 - first: it sets the OpenMP / OpenBLAS environment before numpy loads
from numba.core import event


class CompileClock(event.Listener):
    """Listens to numba's compile events and adds up, per function, the seconds of its compile
    with and without the compiles nested inside it (a kernel's callees compile while it is typed)."""

    def __init__(self):
        self.own = Counter()
        self.total = Counter()
        self._open = []  # [name, started, seconds of nested compiles]

    @staticmethod
    def name(compile_event) -> str:
        func = compile_event.data["dispatcher"].py_func
        return f"{func.__module__}.{func.__qualname__}"

    def on_start(self, compile_event) -> None:
        self._open.append([self.name(compile_event), time.perf_counter(), 0.0])

    def on_end(self, compile_event) -> None:
        name, started, nested = self._open.pop()
        seconds = time.perf_counter() - started
        self.total[name] += seconds
        self.own[name] += seconds - nested
        if self._open:
            self._open[-1][2] += seconds

    def install(self) -> "CompileClock":
        """Listen from now on (numba.core.event.unregister("numba:compile", clock) stops it)."""
        event.register("numba:compile", self)
        return self

    def rows(self) -> list[dict]:
        """One dict per function, slowest own compile first."""
        return [{"function": name, "own_s": round(own, 3), "with_callees_s": round(self.total[name], 3)}
                for name, own in self.own.most_common()]


def _child(config: str, overrides: list[str], run_dir: str) -> None:
    """In the child process: train the config under a CompileClock and print one JSON line."""
    clock = CompileClock()
    clock.install()
    from slidepy.cli import main
    from slidepy.plot import read_metrics

    started = time.perf_counter()
    args = ["train", "--config", config, "--out", run_dir, "--overwrite", "--no-progress"]
    for item in overrides:
        args += ["--set", item]
    try:
        main(args)  # a click command: it ends by raising SystemExit
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    wall = time.perf_counter() - started
    starts = [r for r in read_metrics(run_dir) if r.get("event") == "start"]
    compile_seconds = starts[-1].get("compile_seconds") if starts else None
    print(json.dumps({"exit": code, "wall_s": wall, "compile_s": compile_seconds, "functions": clock.rows()}))


def measure(config: str, overrides: list[str], helper: bool = True) -> dict:
    """Train `config` once in a child process with an empty JIT cache; returns its figures."""
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(scratch, "cache"),
                   SLIDEPY_COMPILE_HELPER="1" if helper else "0")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--config", config,
               "--run-dir", os.path.join(scratch, "run")]
        for item in overrides:
            cmd += ["--set", item]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the cold run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-helper", action="store_true", help="compile everything in the run's process")
    p.add_argument("--top", type=int, default=25, help="functions to list (slowest own compile first)")
    p.add_argument("--json", dest="json_out", help="also write the figures to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.config, args.overrides, args.run_dir)
        return 0
    r = measure(args.config, args.overrides, helper=not args.no_helper)
    print(f"{'own s':>7} {'with callees s':>15}  function")
    for row in r["functions"][:args.top]:
        print(f"{row['own_s']:7.2f} {row['with_callees_s']:15.2f}  {row['function']}")
    own = sum(row["own_s"] for row in r["functions"])
    print(f"{len(r['functions'])} functions compiled here, {own:.1f} s in all; the run took {r['wall_s']:.1f} s, "
          f"of which 'compiling kernels' {r['compile_s']:.1f} s (helper {'off' if args.no_helper else 'on'})")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(r, fh, indent=1)
    return 0 if r["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
