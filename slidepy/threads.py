"""The two thread pools a run uses: numba's (the kernels) and BLAS's (the output layer's batch
products in union.py, exact scoring, k-means assignments). training.threads governs both."""

from __future__ import annotations

import contextlib

import numba
from threadpoolctl import ThreadpoolController, threadpool_limits

# A training step's BLAS products are small, about batch x width x 10^3 (10^8 flop): past 8 threads
# their blocks are too thin to gain, and every extra thread is one more to wake and join between
# numba kernels. Measured on 16 cores (DebianNextWord, OPENBLAS_THREAD_TIMEOUT=4, numba at 16
# threads): BLAS at 16 threads gave 8,561 samples/s, at 8 11,809, at 1 6,348.
BLAS_MAX_THREADS = 8


def use_threads(n: int) -> None:
    """Run numba's kernels on n threads and the step's BLAS products on min(n, BLAS_MAX_THREADS).
    Left alone, OpenBLAS takes every core whatever training.threads says, so one-thread runs
    would not be one thread."""
    numba.set_num_threads(n)
    threadpool_limits(limits=min(n, BLAS_MAX_THREADS), user_api="blas")


@contextlib.contextmanager
def threads_for_call(n: int | None = None):
    """numba and BLAS on n threads for the block (None: as they are, or as the code inside sets
    them), then both back as they were: a library call (scikit-learn's fit and predict) leaves its
    caller's thread settings alone, where a training run sets them for the whole process."""
    before = numba.get_num_threads()
    with threadpool_limits(limits=None, user_api="blas"):  # restores BLAS's limits on leaving
        try:
            if n is not None:
                use_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            yield
        finally:
            numba.set_num_threads(before)


@contextlib.contextmanager
def blas_on_all_threads():
    """BLAS on as many threads as numba for the block: exact scoring's products are large
    (1,024 samples x width x every label), so they use every thread the run has."""
    with threadpool_limits(limits=numba.get_num_threads(), user_api="blas"):
        yield


def reread_openblas_settings() -> bool:
    """Make a running OpenBLAS take up the OPENBLAS_* environment of now. Returns True if it did.

    Why: OpenBLAS reads its environment once, as it loads; slidepy/__init__.py sets
    OPENBLAS_THREAD_TIMEOUT=4 so that its idle threads sleep at once instead of spinning ~0.1 s
    after each product and holding the cores through the numba kernels that follow. A program that
    imported numpy before slidepy (a scikit-learn user's, say) loaded OpenBLAS first, and its steps
    ran slower: DebianDeps 5,001-5,061 samples/s against 6,093-6,173 (2 threads, 200 steps each).
    OpenBLAS exports what it runs at load and around fork: `openblas_read_env` reads the
    environment again, `blas_thread_shutdown_` stops its threads, and the next product starts
    them afresh with the new timeout. Only for an OpenBLAS on its own threads (not OpenMP), only
    with both symbols there; call it while no other thread is inside BLAS.
    """
    for lib in ThreadpoolController().lib_controllers:
        if lib.internal_api != "openblas" or getattr(lib, "threading_layer", "pthreads") != "pthreads":
            continue
        dynlib = lib.dynlib
        if not (hasattr(dynlib, "openblas_read_env") and hasattr(dynlib, "blas_thread_shutdown_")):
            continue
        dynlib.openblas_read_env()
        dynlib.blas_thread_shutdown_()
        return True
    return False
