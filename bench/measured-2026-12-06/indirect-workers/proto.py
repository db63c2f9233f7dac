"""The first probe of indirect calls: a parallel driver calling a worker of 12 leaf functions,
directly (numba links the worker's code into the driver's) or through its address
(slidepy.indirect), the driver's compile timed with the worker already compiled.

    python proto.py direct; python proto.py indirect

The worker's module is written into a fresh folder (numba caches only functions of real files),
with an empty JIT cache, so every run compiles."""
import importlib
import sys
import tempfile
import time
from pathlib import Path

import os
scratch = Path(tempfile.mkdtemp())
os.environ["NUMBA_CACHE_DIR"] = str(scratch / "cache")

import numpy as np  # noqa: E402
from numba import njit, prange, typeof, types  # noqa: E402

from slidepy.indirect import call_worker, worker_table  # noqa: E402

LEAF = '''
@njit(cache=True)
def leaf{i}(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3:
            a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s
'''
calls = "\n".join(f"    s += leaf{i}(a, b, n)" for i in range(12))
(scratch / "gen.py").write_text("import numpy as np\nfrom numba import njit\n" + "".join(LEAF.format(i=i) for i in range(12))
                                + f"\n\n@njit(cache=True)\ndef worker(a, b, n, out, t):\n    s = 0.0\n{calls}\n    out[t] = s\n")
sys.path.insert(0, str(scratch))
worker = importlib.import_module("gen").worker


@njit(parallel=True, cache=True)
def driver_direct(a, b, out):
    for t in prange(out.shape[0]):
        worker(a[t], b[t], a.shape[1], out, np.int64(t))


@njit(parallel=True, cache=True)
def driver_indirect(a, b, out, table):
    for t in prange(out.shape[0]):
        call_worker(worker, table, (a[t], b[t], a.shape[1], out, np.int64(t)))


a, b, out = np.random.rand(4, 100), np.random.rand(4, 100), np.zeros(4)
argtypes = (typeof(a[0]), typeof(b[0]), types.int64, typeof(out), types.int64)
started = time.perf_counter()
table = worker_table(worker, argtypes)
print("worker compile", round(time.perf_counter() - started, 2), "s")
started = time.perf_counter()
if sys.argv[1] == "direct":
    driver_direct(a, b, out)
else:
    driver_indirect(a, b, out, table)
print(sys.argv[1], "driver compile + run", round(time.perf_counter() - started, 2), "s")
