import time, sys, numpy as np, numba
from numba import njit, types
from slidepy import Trainer, load_config
from slidepy import kernels
from slidepy.precompile import signature
cfg = load_config("configs/quickstart.yaml", ["training.max_steps=2", "output.run_dir=" + __import__("tempfile").mkdtemp()])
tr = Trainer(cfg, progress=False); tr.fit()
captured = {}
orig = kernels.train_batch
sig_new = None
for s in orig.signatures:
    sig_new = s
print(len(orig.signatures), "signatures")
def to_list(t):
    return types.ListType(t.dtype) if isinstance(t, types.UniTuple) else t
sig_list = tuple(to_list(t) if i in (0, 2, 3) else t for i, t in enumerate(sig_new))
for label, sig in [(sys.argv[1], sig_new if sys.argv[1] == "tuple" else sig_list)]:
    fresh = njit(parallel=True)(orig.py_func)
    t = time.perf_counter(); fresh.compile(sig); print(label, f"{time.perf_counter()-t:.2f} s")
cres = list(fresh.overloads.values())[0]
for pipe, passes in cres.metadata["pipeline_times"].items():
    items = sorted(((v.run, k) for k, v in passes.items()), reverse=True)[:5]
    print(label, pipe, ", ".join(f"{k.split('_',1)[-1]} {t:.2f}" for t, k in items))
