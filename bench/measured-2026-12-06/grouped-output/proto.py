import numpy as np, numba, time
from numba import njit, prange

@njit(parallel=True, fastmath=True)
def per_sample(W, H, ids, G, Z, dH):
    B, A = ids.shape
    D = W.shape[1]
    for b in prange(B):
        h = H[b]
        for a in range(A):
            w = W[ids[b, a]]
            s = np.float32(0.0)
            for j in range(D):
                s += w[j] * h[j]
            Z[b, a] = s
        acc = np.zeros(D, np.float32)
        for a in range(A):
            w = W[ids[b, a]]
            g = G[b, a]
            for j in range(D):
                acc[j] += g * w[j]
        dH[b] = acc

@njit(parallel=True, fastmath=True)
def neuron_major(W, H, rows, start, pos_b, pos_a, G, Z, dHt, nchunk):
    R = rows.shape[0]
    D = W.shape[1]
    for t in prange(nchunk):
        lo = R * t // nchunk; hi = R * (t + 1) // nchunk
        for r in range(lo, hi):
            w = W[rows[r]]
            for k in range(start[r], start[r + 1]):
                b = pos_b[k]
                h = H[b]
                s = np.float32(0.0)
                for j in range(D):
                    s += w[j] * h[j]
                Z[b, pos_a[k]] = s
        # backward (in reality after loss)
        acc = dHt[t]
        for r in range(lo, hi):
            w = W[rows[r]]
            for k in range(start[r], start[r + 1]):
                b = pos_b[k]
                g = G[b, pos_a[k]]
                ab = acc[b]
                for j in range(D):
                    ab[j] += g * w[j]

rng = np.random.default_rng(0)
N, D, B, A = 22875, 512, 128, 1024
W = rng.standard_normal((N, D)).astype(np.float32)
for U_target in (3000, 10000, 20000):
    # Zipf-ish over a union
    pool = rng.choice(N, U_target, replace=False)
    p = 1.0 / np.arange(1, U_target + 1) ** 0.5; p /= p.sum()
    ids = np.stack([rng.choice(pool, A, replace=False, p=p) for _ in range(B)]).astype(np.int32)
    H = rng.standard_normal((B, D)).astype(np.float32)
    G = rng.standard_normal((B, A)).astype(np.float32)
    Z = np.zeros((B, A), np.float32); dH = np.zeros((B, D), np.float32)
    flat = ids.ravel(); order = np.argsort(flat, kind="stable")
    rows, counts = np.unique(flat, return_counts=True)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    pos_b = (order // A).astype(np.int32); pos_a = (order % A).astype(np.int32)
    nt = numba.get_num_threads()
    dHt = np.zeros((nt, B, D), np.float32); Z2 = np.zeros_like(Z)
    per_sample(W, H, ids, G, Z, dH); neuron_major(W, H, rows, start, pos_b, pos_a, G, Z2, dHt, nt)
    assert np.allclose(Z, Z2, atol=1e-2), np.abs(Z-Z2).max()
    assert np.allclose(dH, dHt.sum(0), atol=1e-1)
    ts, tn = [], []
    for _ in range(7):
        t0 = time.perf_counter(); per_sample(W, H, ids, G, Z, dH); ts.append(time.perf_counter() - t0)
        dHt[:] = 0
        t0 = time.perf_counter(); neuron_major(W, H, rows, start, pos_b, pos_a, G, Z2, dHt, nt); dHt.sum(0); tn.append(time.perf_counter() - t0)
    print(f"union {len(rows)}: per-sample {np.median(ts)*1e3:.1f} ms, neuron-major {np.median(tn)*1e3:.1f} ms, ratio {np.median(ts)/np.median(tn):.2f}")
