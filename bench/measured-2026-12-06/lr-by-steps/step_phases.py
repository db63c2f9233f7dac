"""Where a late training step goes: load a checkpoint, train 300 random batches at a small rate,
time each phase of Engine.train_step. Usage: python step_phases.py CHECKPOINT THREADS."""
import sys, time, numpy as np
import slidepy.engine as E
from slidepy.trainer import Trainer
T = {}
def wrap(obj, name, key):
    f = getattr(obj, name)
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); T[key] = T.get(key, 0) + time.perf_counter() - t; return r
    setattr(obj, name, g)
orig_tb = E.Engine._train_batch
def tb(kargs, phase, *rest):
    t = time.perf_counter(); orig_tb(kargs, phase, *rest); T[f"phase{phase}"] = T.get(f"phase{phase}", 0) + time.perf_counter() - t
E.Engine._train_batch = staticmethod(tb)
wrap(E, "union_output_step", "union_output")
wrap(E, "score_centroids_batch", "centroids")
wrap(E, "apply_updates", "optimizer")
tr = Trainer.load(sys.argv[1], load_data_from_config=True)
import numba; numba.set_num_threads(int(sys.argv[2]))
from slidepy.threads import use_threads; use_threads(int(sys.argv[2]))
eng, data = tr.engine, tr.train_data
eng.lr = 1e-4
rng = np.random.default_rng(0)
for s in range(30):
    eng.train_step(data, rng.choice(data.n_samples, 128, replace=False).astype(np.int64))
T.clear(); t0 = time.perf_counter(); n = 300; rb = 0
for s in range(n):
    eng.train_step(data, rng.choice(data.n_samples, 128, replace=False).astype(np.int64)); rb += eng.maybe_rebuild()
wall = time.perf_counter() - t0
print({k: round(v / n * 1e3, 3) for k, v in sorted(T.items())}, "ms/step; wall", round(wall / n * 1e3, 3), "rebuild", round(rb/n*1e3,3), "density", eng.output_density)
