"""Compile kernels in a helper process while this one compiles others (first run only).

numba compiles on one thread, and with an empty JIT cache a run waits ~20 s before its first step,
most of it for the training kernels. The optimizer, evaluation and index-refresh kernels are called
only after them. So when the cache misses, a helper process compiles those, for the argument types
this run will pass them, into numba's on-disk cache; when this process reaches them, numba finds
them there and loads them instead of compiling (the quick start's compile time fell from ~21 to
~14 s on 2 cores). It starts with the training kernel's per-sample backward worker, which this
process's compile of the training worker reaches last, and the training driver, compiled apart
from that worker (engine.training_jobs): this process then loads both.

The two processes share the list: the helper takes jobs from its start, and this process, once its
own compile is done, takes them from its end (Helper.share) until they meet, each job claimed by
creating a file in a folder both see, so that neither compiles one twice and neither idles while
the other has work left. With the training driver compiled apart from its worker
(indirect.py) this process's own compile is the shorter: waiting for the whole list left it
idle ~8 s of a cold quick start.

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
import shutil
import subprocess
import sys
import tempfile

import numba

# How long the caller waits for the helper at most before compiling the rest itself.
WAIT_SECONDS = 120.0

# The helper's first line: take this process's import path, then read the kernels to compile.
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.stdin.buffer.readline()); "
         "from slidepy.precompile import serve; serve(sys.stdin.buffer)")


def claim(folder: str, job: int) -> bool:
    """Take job number `job` of the shared list: True for the first process to ask (creating a
    file is atomic), False for any other."""
    try:
        os.close(os.open(os.path.join(folder, str(job)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def spare_cpus() -> int:
    """CPUs this process may run on, beyond the one compiling here."""
    try:
        return len(os.sched_getaffinity(0)) - 1
    except AttributeError:  # no affinity API (macOS, Windows)
        return (os.cpu_count() or 1) - 1


class Helper:
    """A running helper process (compile_in_helper)."""

    def __init__(self, process: subprocess.Popen, jobs: list[tuple], claims: str):
        self.process = process
        self.jobs = jobs  # (kernel, example arguments), in the helper's order
        self.claims = claims  # the folder where each job is claimed (claim)

    @property
    def kernels(self) -> list[str]:
        """"module.qualname" of each job's kernel, in order."""
        return [f"{kernel.py_func.__module__}.{kernel.py_func.__qualname__}" for kernel, _ in self.jobs]

    def share(self, timeout: float = WAIT_SECONDS) -> bool:
        """Compile the helper's jobs here from the end of its list until one is claimed already
        (the helper has reached it, and done those before), then wait for the helper (wait)."""
        for job in reversed(range(len(self.jobs))):
            if not claim(self.claims, job):
                break
            kernel, args = self.jobs[job]
            try:
                kernel.compile(signature(args))
            except Exception:  # noqa: BLE001 - as in the helper: the call that needs it compiles it
                continue
        return self.wait(timeout)

    def wait(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until the helper has finished; True if it exited cleanly in time. A helper still
        running after `timeout` seconds is stopped (its unfinished kernels compile here)."""
        try:
            return self.process.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
        finally:
            shutil.rmtree(self.claims, ignore_errors=True)


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
    claims = tempfile.mkdtemp(prefix="slidepy-compile-")
    try:
        process = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process.stdin.write(json.dumps([package_parent, *sys.path]).encode() + b"\n"
                            + pickle.dumps((claims, specs)))
        process.stdin.close()
    except OSError:
        shutil.rmtree(claims, ignore_errors=True)
        return None
    return Helper(process, jobs, claims)


def serve(stream) -> None:
    """The helper's side: compile each (module, name, argument types) read from `stream`, in
    order, until one is claimed by the caller (Helper.share). One that fails is skipped (the
    caller compiles it itself)."""
    failed = 0
    claims, specs = pickle.load(stream)
    for job, (module, name, argtypes) in enumerate(specs):
        if not claim(claims, job):
            break
        try:
            getattr(importlib.import_module(module), name).compile(argtypes)
        except Exception:  # noqa: BLE001 - any failure only means the caller compiles it
            failed += 1
    sys.exit(1 if failed else 0)
