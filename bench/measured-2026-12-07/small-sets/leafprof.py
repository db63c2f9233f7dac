"""Where the leaves' seconds go on a run's final network: shortlists, pairs, fitting."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
N = model.engine.n_labels
t = time.perf_counter()
rows = np.arange(tr.n_samples, dtype=np.int64)
short = model.engine.predict(tr, rows, k=100, votes=False)[0]
t1 = time.perf_counter(); print(f"exact shortlists of {tr.n_samples}: {t1 - t:.1f} s", flush=True)
per = R.random_negatives_per_label(N, tr.n_samples, tr.y_indices.shape[0])
neg = R.random_negatives(N, rows, per, np.random.default_rng(0))
t2 = time.perf_counter()
p = R.training_pairs(short, tr.y_indptr, tr.y_indices, N, neg)
t3 = time.perf_counter(); print(f"pairs {p[1].shape[0]:,} ({per} random a label): {t3 - t2:.1f} s", flush=True)
R.fit_leaves(tr, short, 0, n_labels=N, negatives=neg)
t4 = time.perf_counter(); print(f"fit_leaves (pairs included): {t4 - t3:.1f} s", flush=True)
for n in (16384, 32768):
    sub = np.sort(np.random.default_rng(1).choice(tr.n_samples, n, replace=False))
    t5 = time.perf_counter(); R.fit_leaves(tr, short[sub], 0, rows=sub, n_labels=N, negatives=neg)
    print(f"fit_leaves on {n} shortlists: {time.perf_counter() - t5:.1f} s", flush=True)
