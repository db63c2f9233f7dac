import numpy as np, numba, time
from numba import njit, prange
exec(open("proto.py").read().split("rng = np.random")[0])

@njit(parallel=True, fastmath=True)
def neuron_major4(W, H, rows, start, pos_b, pos_a, G, Z, dHt, nchunk):
    R = rows.shape[0]
    D = W.shape[1]
    for t in prange(nchunk):
        lo = R * t // nchunk; hi = R * (t + 1) // nchunk
        for r in range(lo, hi):
            w = W[rows[r]]
            k = start[r]; e = start[r + 1]
            while k + 4 <= e:
                h0 = H[pos_b[k]]; h1 = H[pos_b[k+1]]; h2 = H[pos_b[k+2]]; h3 = H[pos_b[k+3]]
                s0 = np.float32(0.0); s1 = np.float32(0.0); s2 = np.float32(0.0); s3 = np.float32(0.0)
                for j in range(D):
                    x = w[j]
                    s0 += x * h0[j]; s1 += x * h1[j]; s2 += x * h2[j]; s3 += x * h3[j]
                Z[pos_b[k], pos_a[k]] = s0; Z[pos_b[k+1], pos_a[k+1]] = s1
                Z[pos_b[k+2], pos_a[k+2]] = s2; Z[pos_b[k+3], pos_a[k+3]] = s3
                k += 4
            while k < e:
                h = H[pos_b[k]]
                s = np.float32(0.0)
                for j in range(D):
                    s += w[j] * h[j]
                Z[pos_b[k], pos_a[k]] = s
                k += 1
        acc = dHt[t]
        for r in range(lo, hi):
            w = W[rows[r]]
            k = start[r]; e = start[r + 1]
            while k + 4 <= e:
                a0 = acc[pos_b[k]]; a1 = acc[pos_b[k+1]]; a2 = acc[pos_b[k+2]]; a3 = acc[pos_b[k+3]]
                g0 = G[pos_b[k], pos_a[k]]; g1 = G[pos_b[k+1], pos_a[k+1]]; g2 = G[pos_b[k+2], pos_a[k+2]]; g3 = G[pos_b[k+3], pos_a[k+3]]
                for j in range(D):
                    x = w[j]
                    a0[j] += g0 * x; a1[j] += g1 * x; a2[j] += g2 * x; a3[j] += g3 * x
                k += 4
            while k < e:
                ab = acc[pos_b[k]]; g = G[pos_b[k], pos_a[k]]
                for j in range(D):
                    ab[j] += g * w[j]
                k += 1

rng = np.random.default_rng(0)
N, D, B, A = 22875, 512, 128, 1024
W = rng.standard_normal((N, D)).astype(np.float32)
for U_target in (3000, 10000, 20000):
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
    dHt = np.zeros((nt, B, D), np.float32); Z2 = np.zeros_like(Z); Z3 = np.zeros_like(Z)
    per_sample(W, H, ids, G, Z, dH); neuron_major(W, H, rows, start, pos_b, pos_a, G, Z2, dHt, nt)
    dHt[:] = 0; neuron_major4(W, H, rows, start, pos_b, pos_a, G, Z3, dHt, nt)
    assert np.allclose(Z, Z3, atol=1e-2); assert np.allclose(dH, dHt.sum(0), atol=1e-1)
    ts, tn, t4 = [], [], []
    for _ in range(7):
        t0 = time.perf_counter(); per_sample(W, H, ids, G, Z, dH); ts.append(time.perf_counter() - t0)
        dHt[:] = 0
        t0 = time.perf_counter(); neuron_major(W, H, rows, start, pos_b, pos_a, G, Z2, dHt, nt); dHt.sum(0); tn.append(time.perf_counter() - t0)
        dHt[:] = 0
        t0 = time.perf_counter(); neuron_major4(W, H, rows, start, pos_b, pos_a, G, Z3, dHt, nt); dHt.sum(0); t4.append(time.perf_counter() - t0)
    print(f"union {len(rows)}: per-sample {np.median(ts)*1e3:.1f} ms, neuron-major {np.median(tn)*1e3:.1f}, x4 {np.median(t4)*1e3:.1f} ms")
