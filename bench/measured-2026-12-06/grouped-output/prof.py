import sys, time, collections
import numpy as np
from slidepy import engine as E, grouped as G
from slidepy.model import Model
from slidepy.data import load_dataset
model, meta = Model.load(sys.argv[1]); eng = model.engine
data = load_dataset(sys.argv[2]); rng = np.random.default_rng(0); eng.lr = 1e-4
T = collections.defaultdict(float)
def wrap(mod, name, key=None):
    real = getattr(mod, name)
    def f(*a, **k):
        t0 = time.perf_counter(); r = real(*a, **k); T[key or name] += time.perf_counter() - t0; return r
    setattr(mod, name, f)
for n in ("union_columns", "group_pairs", "grouped_logits", "grouped_loss", "grouped_backward", "drop_zero_pairs", "order_union", "scatter_dense_logits", "gather_dense_grads"):
    wrap(G, n)
wrap(E, "score_centroids_batch")
from slidepy import optimizer as O
for n in ("adam_update_grouped", "adam_update_gathered", "adam_update_rows", "touched_rows"): wrap(O, n)
import os
if os.environ.get("SHARE"): G.grouped_output_step.__defaults__ = (float(os.environ["SHARE"]),)
real_tb = E.Engine._train_batch
def tb(kernel_args, phase, *a):
    t0 = time.perf_counter(); real_tb(kernel_args, phase, *a); T[f"train_batch phase {phase}"] += time.perf_counter() - t0
E.Engine._train_batch = staticmethod(tb)
eng.output_path = sys.argv[3]
for _ in range(3): eng.train_step(data, rng.choice(data.n_samples, 128, replace=False).astype(np.int64))
T.clear(); k0 = dict(eng.timings)
n = 40
for _ in range(n): eng.train_step(data, rng.choice(data.n_samples, 128, replace=False).astype(np.int64))
for k, v in sorted(T.items(), key=lambda kv: -kv[1]): print(f"{k:28s} {v/n*1e3:6.2f} ms")
print({k: round((eng.timings[k]-k0[k])/n*1e3, 2) for k in k0})
