"""The pieces of scripts/bench.py, the benchmark of slidepy against dense PyTorch and the trees.

Imports flow one way, from the data up to the report:

    datasets    the benchmark's data sets: synthetic shapes, the real sets and their configs
    systems     the systems compared and the slidepy config each one runs
    machine     probes of the machine: copy bandwidth, thread scaling of vector and scalar work
    coldstart   the quick start from a clean checkout with an empty JIT cache, timed
    worker      one system in a subprocess: an accuracy run, or timed segments on request
    processes   the parent's side of a worker: start it, read its answers
    throughput  interleaved segments per thread count, their medians and the fair scaling
    curves      P@1 against training seconds: the time each system takes to reach a P@1
    report      results.json, results.md and the curve pictures
    targets     the issues' goals as pass/fail rows, each a ratio from this one run
    matrix      every dataset x system x thread count of one run, in order

Each module imports only those above it in this list.

This module holds what both sides of the worker protocol share. It must be imported before
slidepy: USER_ENV is the environment as the user started the bench.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# The environment the user started the bench in. Importing slidepy sets thread-pool defaults
# (OMP_WAIT_POLICY, GOMP_SPINCOUNT, OPENBLAS_THREAD_TIMEOUT); the workers start from this copy
# (worker_env), so dense PyTorch, Omikuji and PECOS run with their own defaults and slidepy with
# slidepy's.
USER_ENV = dict(os.environ)
SLIDEPY_ENV_DEFAULTS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")  # slidepy/__init__.py sets them
MARK = "@@BENCH "  # prefix of the worker's protocol lines on stdout


def json_default(o):
    """json.dumps' `default`: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
