"""Compile kernels in a helper process while this one compiles others (first run only).

numba compiles on one thread, and with an empty JIT cache a run waits ~20 s before its first step,
most of it for the training kernels. The optimizer, evaluation and index-refresh kernels are called
only after them. So when the cache misses, a helper process compiles those, for the argument types
this run will pass them, into numba's on-disk cache; when this process reaches them, numba finds
them there and loads them instead of compiling (the quick start's compile time fell from ~21 to
~14 s on 2 cores). It starts with the per-sample backward worker, which the training kernel's own
compile reaches last (engine.training_callees): this process then loads that too (-1.5 s of a
cold quick start, 25.7-26.7 against 27.3-28.2 s).

The helper shares no memory with this process: it gets each kernel's module and name and the numba
types of its arguments (numba types pickle), and this process's sys.path behind the folder this
slidepy was imported from, so that it imports the same slidepy and writes to the same cache
(NUMBA_CACHE_DIR travels in the environment). The folder goes first because a helper started with
`python -c` also searches its working directory: run from another checkout (the console script of
an editable install), it compiled that checkout's kernels, whose cache entries this process never
loads, and the quick start's compile took 33 s instead of 23. Nothing
depends on it: a kernel the helper failed to compile, or has not compiled yet, compiles here as it
would have. It runs only where a second CPU is free, and never with SLIDEPY_COMPILE_HELPER=0.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import subprocess
import sys

import numba

# How long the caller waits for the helper at most before compiling the rest itself.
WAIT_SECONDS = 120.0

# The helper's first line: take this process's import path, then read the kernels to compile.
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
         "from slidepy.precompile import serve; serve(sys.stdin.buffer)")


def spare_cpus() -> int:
    """CPUs this process may run on, beyond the one compiling here."""
    try:
        return len(os.sched_getaffinity(0)) - 1
    except AttributeError:  # no affinity API (macOS, Windows)
        return (os.cpu_count() or 1) - 1


class Helper:
    """A running helper process (compile_in_helper)."""

    def __init__(self, process: subprocess.Popen, kernels: list[str]):
        self.process = process
        self.kernels = kernels  # "module.qualname" of each job, in order

    def wait(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until the helper has finished; True if it exited cleanly in time. A helper still
        running after `timeout` seconds is stopped (its unfinished kernels compile here)."""
        try:
            return self.process.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False


def signature(args: tuple) -> tuple:
    """The numba argument types a call with `args` compiles for (what `typeof` makes of each; a
    numba type given as an argument stands for itself)."""
    return tuple(a if isinstance(a, numba.types.Type) else numba.typeof(a) for a in args)


def compile_in_helper(jobs: list[tuple]) -> Helper | None:
    """Start a helper that compiles each (kernel, example_args) of `jobs`, in order, for the types
    of its example arguments. Returns None (compile here as usual) without a spare CPU, when
    SLIDEPY_COMPILE_HELPER=0, or if the helper cannot start."""
    if not jobs or spare_cpus() < 1 or os.environ.get("SLIDEPY_COMPILE_HELPER", "1") == "0":
        return None
    specs = [(kernel.py_func.__module__, kernel.py_func.__qualname__, signature(args)) for kernel, args in jobs]
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        process = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process.stdin.write(json.dumps([package_parent, *sys.path]).encode() + b"\n" + pickle.dumps(specs))
        process.stdin.close()
    except OSError:
        return None
    return Helper(process, [f"{module}.{name}" for module, name, _ in specs])


def serve(stream) -> None:
    """The helper's side: compile every (module, name, argument types) read from `stream`. One
    that fails is skipped (the caller compiles it itself)."""
    failed = 0
    for module, name, argtypes in pickle.load(stream):
        try:
            getattr(importlib.import_module(module), name).compile(argtypes)
        except Exception:  # noqa: BLE001 - any failure only means the caller compiles it
            failed += 1
    sys.exit(1 if failed else 0)
