"""Micro-benchmark (usage: bf16.py N): per-sample gathered dot products, 128 samples x 640 of N rows x 512, float32 rows vs bf16 rows (uint16, widened by a shift); one and two threads."""
import time, numpy as np, numba
from numba import njit, prange

import sys; N, D, B, A = int(sys.argv[1]), 512, 128, 640
rng = np.random.default_rng(0)
W32 = (rng.standard_normal((N, D)) * 0.05).astype(np.float32)
W16 = (W32.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation
H = np.maximum(rng.standard_normal((B, D)), 0).astype(np.float32)
ids = np.stack([rng.choice(N, A, replace=N < A) for _ in range(B)]).astype(np.int32)

@njit(parallel=True, fastmath=True)
def fwd(W, H, ids, out):
    for b in prange(H.shape[0]):
        h = H[b]
        for a in range(ids.shape[1]):
            row = W[ids[b, a]]
            s = np.float32(0.0)
            for j in range(h.shape[0]):
                s += np.float32(row[j]) * h[j]
            out[b, a] = s

@njit(parallel=True, fastmath=True)
def fwd16(W, H, ids, out):
    for b in prange(H.shape[0]):
        h = H[b]
        tmp = np.empty(h.shape[0], np.uint32)
        f = tmp.view(np.float32)
        for a in range(ids.shape[1]):
            row = W[ids[b, a]]
            for j in range(h.shape[0]):
                tmp[j] = np.uint32(row[j]) << 16
            s = np.float32(0.0)
            for j in range(h.shape[0]):
                s += f[j] * h[j]
            out[b, a] = s

out32 = np.zeros((B, A), np.float32); out16 = np.zeros((B, A), np.float32)
fwd(W32, H, ids, out32); fwd16(W16, H, ids, out16)
print("max abs diff", float(np.abs(out32 - out16).max()), "scale", float(np.abs(out32).max()))
for threads in (1, 2):
    numba.set_num_threads(threads)
    for name, f, W, out in (("f32", fwd, W32, out32), ("bf16", fwd16, W16, out16)) * 2:
        t = time.perf_counter()
        for _ in range(20): f(W, H, ids, out)
        dt = (time.perf_counter() - t) / 20
        print(threads, name, f"{dt*1e3:.2f} ms", f"{B*A*D/dt/1e9:.1f} GMAC/s")
