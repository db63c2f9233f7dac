import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
n = model.engine.n_labels
rows = np.sort(np.random.default_rng(0).choice(tr.n_samples, min(tr.n_samples, 20000), replace=False))
short = np.full((tr.n_samples, 50), -1, np.int32)
short[rows] = model.engine.predict(tr, rows, k=50, votes=False)[0]
neg = R.random_negatives(n, np.arange(tr.n_samples), 128, np.random.default_rng(1))
for mp in (1, 2, 5, 20, 50):
    for tol in (0.1, 0.5):
        t = time.perf_counter(); lv = R.fit_leaves(tr, short, 0, n_labels=n, negatives=neg, max_passes=mp, tolerance=tol)
        print(f"max_passes {mp} tol {tol}: {time.perf_counter() - t:.1f} s, {lv.weights.size} weights", flush=True)
