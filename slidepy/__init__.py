"""slidepy: SLIDE-style sparse training for neural networks with huge output layers, on CPUs.

    from slidepy import Trainer, load_config, load_dataset
    trainer = Trainer(load_config("configs/quickstart.yaml"))
    trainer.fit()
    print(trainer.evaluate())

Layout (imports flow one way, top to bottom):
    __main__     the `slidepy` command's entry point (imports cli; a Ctrl-C while it loads is an interruption)
    cli          command line
    distributed  data-parallel training on Ray (optional extra; imported only with --workers)
    trainer      epochs, rebuild schedule, eval, logging, checkpoints, signals
    engine       validate + allocate, call the kernels          memory   memory estimate
    kernels      parallel drivers + per-sample forward/backward  optimizer row-sparse Adam/SGD
    selection    active sets: all, random, LSH fill, top-up, correction    lsh  LSH index + schedule
    hashing, tables, clusters   hash families, bucket tables, k-means     network  parameter arrays
    constants    integer codes, array layouts, limits (imports nothing of ours)
    configfile   YAML + --set overrides -> Config, one-line errors   (imports config, never back)
    config, data, parse, synthetic, metrics, checkpoint, rng, errors, threads (numba + BLAS pools),
    borrow (arrays without reference counts, for the kernels' thread chunks)
"""

import os
import sys

# OpenMP threads that finish a parallel region sleep at once instead of spinning for the next one.
# A step alternates numba's parallel kernels with BLAS products (union.py) and serial Python; spinning
# OpenMP threads took the cores from OpenBLAS's threads and from the Python between them: on
# DebianNextWord 5,976 samples/s with the default policy against 9,994 passive (2 threads). Must be
# set before numba starts its OpenMP threads; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ...after a short spin: a step runs several numba kernels back to back (the two phases, the loss,
# one Adam call per array), and a sleeping thread costs a wake-up at each. 5,000 spins (GNU OpenMP,
# about 50 us) catch the next kernel of the same step and still sleep long before a BLAS product
# needs the core. Training seconds, 2 threads, 3 interleaved runs each, passive -> with the spin:
# Bibtex 0.74-0.75 -> 0.67-0.76 (and 0.71-0.75 -> 0.64-0.69 in another 3), Delicious 3.68-4.08 ->
# 3.48-3.59; DebianNextWord's Adam 0.69 -> 0.57 s of 400 steps, DebianDeps and the 670K shape alike
# within noise. OMP_WAIT_POLICY's default spin (~3 ms) was the one that starved OpenBLAS above.
os.environ.setdefault("GOMP_SPINCOUNT", "5000")
# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each product, so they held the cores
# through the numba kernel that follows it. 2^4 cycles puts them to sleep at once: on 16 cores
# DebianNextWord went from 6,614 to 8,561 samples/s at 16 threads (and 8,949 to 10,578 at 12). Read
# when OpenBLAS loads: if numpy came first, OpenBLAS is asked to read it again (threads.py).
_openblas_loaded_first = "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
if _openblas_loaded_first:
    from .threads import reread_openblas_settings  # noqa: E402

    reread_openblas_settings()

from .errors import (CheckpointError, ConfigError, DataError, NumericalError, SlidepyError,  # noqa: E402
                     TrainingInterrupted)

# The rest of the API loads on first use (PEP 562): `slidepy --help` or a bad argument then answers
# without importing numba and the kernels (0.7 s), and the CLI imports them where a Ctrl-C is held
# until they are loaded (cli._interrupts_held).
_LAZY = {"Config": ".config", "config_from_dict": ".configfile", "load_config": ".configfile",
         "Dataset": ".data", "load_dataset": ".data", "write_dataset": ".data",
         "make_synthetic": ".synthetic", "Trainer": ".trainer"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'slidepy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "Dataset",
    "NumericalError",
    "SlidepyError",
    "Trainer",
    "TrainingInterrupted",
    "config_from_dict",
    "load_config",
    "load_dataset",
    "make_synthetic",
    "write_dataset",
]
__version__ = "0.1.0"
