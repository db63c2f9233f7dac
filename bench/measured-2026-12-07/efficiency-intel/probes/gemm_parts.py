import time, numpy as np, numba
from threadpoolctl import threadpool_limits
from slidepy.hashing import srp_dense_projections, combine_sign_rows
from slidepy.lsh import LshIndex
from slidepy.configfile import load_config
from slidepy.model import lsh_options
cfg = load_config("configs/amazon670k-synthetic.yaml", [])
opts = lsh_options(cfg.model.output.selection.lsh)
N, D = 670091, 128
rng = np.random.default_rng(0)
w = (rng.standard_normal((N, D)) * 0.05).astype(np.float32)
b = np.zeros(N, np.float32)
idx = LshIndex(1, (D, N), opts, seed=0, budget=512)
idx.rebuild(w, False, bias=b)
dense = srp_dense_projections(idx.params)
head = np.ascontiguousarray(dense[:, :D])
print(dense.shape, (dense != 0).mean())
tw = idx.transformed_rows(w, b)
for threads in (1, 2, 1, 2):
    numba.set_num_threads(threads)
    with threadpool_limits(threads):
        for blk in (4096, 16384):
            s = time.perf_counter()
            for st in range(0, N, blk):
                p = tw[st:st + blk] @ dense.T
            g = time.perf_counter() - s
            s = time.perf_counter()
            for st in range(0, N, blk):
                p = w[st:st + blk] @ head.T
            g2 = time.perf_counter() - s
            signs = np.empty((threads, dense.shape[0]), np.int32)
            s = time.perf_counter()
            for st in range(0, N, blk):
                combine_sign_rows(idx.params.spec, p[:min(blk, N - st)], np.int64(idx.range_pow), idx.codes[st:st + blk], signs)
            c = time.perf_counter() - s
        print(threads, blk, "gemm130", round(g, 3), "gemm128", round(g2, 3), "combine", round(c, 3), flush=True)
