"""Probes of the machine the benchmark runs on, for reading slidepy's figures against: the copy
bandwidth, and how vector and scalar work scale with threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_CEILING_KERNELS = None  # (vector_work, scalar_work) once ceiling_kernels has built them


def ceiling_kernels():
    """machine_ceiling's probes, (vector_work, scalar_work), built on first use and uncached: they
    compile in a second, and bench.py's tree and torch workers never import numba.
    vector_work(rows, ids, scale, outs, reps): outs[t] += reps x sum_j scale[j] rows[ids[t, j]];
    scalar_work(outs, reps): outs[t, 0] = a chain of reps dependent multiply-adds."""
    global _CEILING_KERNELS
    if _CEILING_KERNELS is None:
        from numba import njit, prange

        @njit(fastmath=True)
        def axpy_rows(rows, ids, scale, out):
            for j in range(ids.shape[0]):
                row = rows[ids[j]]
                v = scale[j]
                for a in range(out.shape[0]):
                    out[a] += v * row[a]

        @njit(parallel=True, fastmath=True)
        def vector_work(rows, ids, scale, outs, reps):
            for t in prange(outs.shape[0]):
                for _ in range(reps):
                    axpy_rows(rows, ids[t], scale, outs[t])

        @njit(parallel=True)
        def scalar_work(outs, reps):
            for t in prange(outs.shape[0]):
                x = 1.0
                for _ in range(reps):
                    x = x * 1.0000001 + 1e-9
                outs[t, 0] = x

        _CEILING_KERNELS = (vector_work, scalar_work)
    return _CEILING_KERNELS


def machine_ceiling(threads: list[int], seconds: float = 0.5) -> dict:
    """The machine's own thread scaling, for reading slidepy's against: {probe: {n: efficiency}},
    efficiency = time at threads[0] / time at n for the same work per thread (1.0 is perfect).

    Two probes: "vector_fma", each thread multiply-adding 64 cache-resident 512-float rows into its
    own output (the shape of the kernels' dot products and row updates), and "scalar", a chain of
    dependent multiply-adds (latency-bound). Where the vector probe does not scale while the scalar
    one does, the cores share their vector units (hyperthread siblings, or a VM's vCPUs that are):
    on the 2-vCPU development VM the vector probe ran at 14.7 GMAC/s on one thread and 6.7 per
    thread on two (0.36-0.53 over six runs) while the scalar one scaled 1.0, so Bibtex's step, bound by
    multiply-adds, gains nothing from a second thread there."""
    from slidepy.threads import use_threads

    vector_work, scalar_work = ceiling_kernels()
    rng = np.random.default_rng(0)
    rows = rng.random((400, 512), dtype=np.float32)  # 800 KB: in L2, as a layer's hot rows
    ids = rng.integers(0, rows.shape[0], (max(threads), 64))
    scale = rng.random(64, dtype=np.float32)
    outs = np.zeros((max(threads), 512), np.float32)
    jobs = {"vector_fma": lambda n, reps: vector_work(rows, ids[:n], scale, outs[:n], reps),
            "scalar": lambda n, reps: scalar_work(outs[:n], reps * 4096)}
    result = {}
    for name, run in jobs.items():
        use_threads(1)
        run(1, 1)  # compile
        started = time.perf_counter()
        run(1, 100)
        reps = max(1, int(100 * seconds / max(time.perf_counter() - started, 1e-6)))
        times = {}
        for n in threads:
            use_threads(n)
            started = time.perf_counter()
            run(n, reps)
            times[n] = time.perf_counter() - started
        result[name] = {str(n): times[threads[0]] / times[n] for n in threads}
    return result


def memory_bandwidth(nbytes: int, repeats: int = 5, threads: tuple = (1,)) -> dict:
    """Copy bandwidth: bytes read + written per second by np.copyto of `nbytes`, median of
    `repeats`, on one thread (copy_GBps) and on each count in `threads` (copy_GBps_by_threads:
    that many Python threads each copying its own contiguous slice; np.copyto releases the GIL).
    The lsh traffic it is set against is measured at the run's largest thread count, so the
    comparison takes the copy at that count: one thread's copy understates what two can move."""
    n = nbytes // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in

    def timed(t: int) -> float:
        bounds = np.linspace(0, n, t + 1).astype(np.int64)
        parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        times = []
        with ThreadPoolExecutor(max_workers=t) as pool:
            for _ in range(repeats):
                t0 = time.perf_counter()
                list(pool.map(lambda pair: np.copyto(*pair), parts))
                times.append(time.perf_counter() - t0)
        return float(np.median(times))

    seconds = {t: timed(t) for t in sorted({1, *(int(t) for t in threads)})}
    med = seconds[1]
    by_threads = {str(t): 2 * n * 4 / seconds[t] / 1e9 for t in sorted({int(t) for t in threads})}
    return {"bytes": n * 4, "repeats": repeats, "median_seconds": med, "copy_GBps": 2 * n * 4 / med / 1e9,
            "copy_GBps_by_threads": by_threads,
            "note": "read + write bytes per second of a NumPy copy (one thread; by_threads: slices on T threads)"}
