"""Step time of the output paths on a trained DebianDeps network (late-training state), interleaved."""
import sys, time
import numpy as np
from slidepy.model import Model
from slidepy.data import load_dataset

ckpt, train = sys.argv[1], sys.argv[2]
paths = sys.argv[3].split(",") if len(sys.argv) > 3 else ["per-sample", "grouped", "products"]
import os
from slidepy import grouped as G
if os.environ.get("SHARE"):
    G.grouped_output_step.__defaults__ = (float(os.environ["SHARE"]),)
model, meta = Model.load(ckpt)
eng = model.engine
data = load_dataset(train)
rng = np.random.default_rng(0)
B = 128
eng.lr = 1e-4  # a late, small step: the state hardly moves between rounds
def run(path, steps):
    eng.output_path = path
    k0, o0 = eng.timings["kernel"], eng.timings["optimizer"]
    t0 = time.perf_counter()
    dens = []
    for _ in range(steps):
        eng.train_step(data, rng.choice(data.n_samples, B, replace=False).astype(np.int64))
        dens.append(eng.output_density)
    t = time.perf_counter() - t0
    return t / steps * 1e3, (eng.timings["kernel"] - k0) / steps * 1e3, (eng.timings["optimizer"] - o0) / steps * 1e3, np.mean(dens)
for p in paths:
    run(p, 3)  # compile
res = {p: [] for p in paths}
for rnd in range(3):
    for p in paths:
        res[p].append(run(p, 40))
for p in paths:
    a = np.array(res[p])
    print(f"{p:11s} ms/step median {np.median(a[:,0]):6.1f} (kernel {np.median(a[:,1]):5.1f}, optimizer {np.median(a[:,2]):5.1f}) rounds {np.round(a[:,0],1).tolist()} density {a[:,3].mean():.3f}")
