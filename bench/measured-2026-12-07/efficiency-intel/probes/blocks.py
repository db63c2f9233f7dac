import time, numpy as np, numba
from slidepy import hashing as hs
N, D = 100_000, 130
rng = np.random.default_rng(0)
w = rng.standard_normal((N, D)).astype(np.float32)
params = hs.make_hash_params(hs.FAMILY_SRP, D, 12, 50, density=0.33, seed=1)
hm = hs.srp_hash_major(params)
out = np.empty((N, 50), np.int32)
hs.hash_rows_srp(params, w, 12, out, hash_major=hm)
for threads in (1, 2):
    numba.set_num_threads(threads)
    for rows in (16, 32, 64, 128, 256, 512):
        hs.SRP_BLOCK_MAX_ROWS = rows; hs.SRP_BLOCK_MIN_ROWS = rows
        best = 1e9
        for _ in range(3):
            s = time.perf_counter(); hs.hash_rows_srp(params, w, 12, out, hash_major=hm); best = min(best, time.perf_counter() - s)
        print(threads, rows, round(best * 6.7, 3), flush=True)
