"""Time a 670K-row SRP rebuild's parts at 1 and 2 numba threads (BLAS limited alike)."""
import time
import numpy as np, numba
from threadpoolctl import threadpool_limits
from slidepy.lsh import LshIndex, _max_norm, _squared_norms
from slidepy.configfile import load_config
from slidepy.model import lsh_options

cfg = load_config("configs/amazon670k-synthetic.yaml", [])
opts = lsh_options(cfg.model.output.selection.lsh)
N, D = 670091, 128
rng = np.random.default_rng(0)
w = (rng.standard_normal((N, D)) * 0.05).astype(np.float32)
b = np.zeros(N, np.float32)
idx = LshIndex(1, (D, N), opts, seed=0, budget=512)
idx.rebuild(w, False, bias=b)  # compile
for threads in (1, 2, 1, 2):
    numba.set_num_threads(threads)
    with threadpool_limits(threads):
        t = {}
        s = time.perf_counter(); norms = _squared_norms(w, b); idx.max_norm = _max_norm(norms); t["norms"] = time.perf_counter() - s
        s = time.perf_counter(); idx._hash_neurons(w, b, idx.codes, norms); t["hash"] = time.perf_counter() - s
        s = time.perf_counter(); idx._fill_tables(); t["fill"] = time.perf_counter() - s
        s = time.perf_counter(); idx.rebuild(w, False, bias=b); t["rebuild"] = time.perf_counter() - s
    print(threads, {k: round(v, 3) for k, v in t.items()}, flush=True)
