"""The cold quick start as issue 10 times it: `slidepy train --config configs/quickstart.yaml`
from a clean checkout of this repository's HEAD, with an empty JIT cache, so that every kernel
compiles. Timed in a subprocess, before anything else of the bench runs (it uses both cores: the
compile helper). `make install` (pip) is not part of it; it adds INSTALL_SECONDS where the
dependencies are installed already (2.2-3.3 s measured on the 2-core VM)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import REPO, USER_ENV

GOAL_SECONDS = 30.0
INSTALL_SECONDS = 2.5  # what `make install` adds to the quick start, about


def quick_start_figures(run_dir) -> dict:
    """The compile seconds and the final P@1 a run recorded in its metrics.jsonl (its "start" and
    last "eval" events); None for one it did not record."""
    from slidepy.plot import read_metrics

    records = read_metrics(run_dir)
    starts = [r for r in records if r.get("event") == "start"]
    evals = [r for r in records if r.get("event") == "eval" and "P@1" in r]
    return {"compile_s": starts[-1].get("compile_seconds") if starts else None,
            "p1": evals[-1]["P@1"] if evals else None}


def cold_quick_start(repo: Path = REPO, timeout: float = 600.0) -> dict:
    """{wall_s, compile_s, p1, commit} of the quick start from a clean export of HEAD with an empty
    NUMBA_CACHE_DIR, or {error} where it could not run (not a git checkout, a failed run)."""
    with tempfile.TemporaryDirectory(prefix="slidepy-cold-") as tmp:
        src, cache, run = Path(tmp) / "src", Path(tmp) / "cache", Path(tmp) / "run"
        src.mkdir()
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip()
            archive = subprocess.run(["git", "-C", str(repo), "archive", "HEAD"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            return {"error": f"no clean checkout of HEAD: {e}"}
        env = dict(USER_ENV, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(src))
        cmd = [sys.executable, "-m", "slidepy.cli", "train", "--config", "configs/quickstart.yaml",
               "--out", str(run), "--no-progress"]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"the quick start ran past {timeout:.0f} s", "commit": commit}
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            return {"error": f"the quick start failed: {proc.stderr.strip()[-300:]}", "commit": commit}
        return {"wall_s": wall, "commit": commit, **quick_start_figures(run)}
