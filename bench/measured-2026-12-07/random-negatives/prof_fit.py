"""usage: prof_fit.py RUN TRAIN: the parts of Model.fit_reranker's time on a run's final network."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
n = model.engine.n_labels
rows = np.arange(tr.n_samples, dtype=np.int64)
if tr.n_samples > R.SHORTLIST_SAMPLES:
    rows = np.sort(np.random.default_rng(0).choice(tr.n_samples, R.SHORTLIST_SAMPLES, replace=False))
macs = float(rows.shape[0]) * n * model.engine.sizes[-1][0]
indexed = macs > R.EXACT_SHORTLIST_MACS
t0 = time.perf_counter()
short = np.full((tr.n_samples, 50), -1, np.int32)
short[rows] = model.engine.predict(tr, rows, k=50, use_lsh=indexed, votes=False)[0]
t1 = time.perf_counter(); print(f"shortlists ({'lsh' if indexed else 'exact'}) {t1 - t0:.1f} s", flush=True)
for per in (0, 128, 256):
    neg = R.random_negatives(n, np.arange(tr.n_samples), per, np.random.default_rng(1))
    t1 = time.perf_counter()
    p = R.training_pairs(short, tr.y_indptr, tr.y_indices, n, neg); t2 = time.perf_counter()
    lv = R.fit_leaves(tr, short, 0, n_labels=n, negatives=neg); t3 = time.perf_counter()
    print(f"per label {per}: pairs {t2 - t1:.1f} s ({p[1].shape[0] / 1e6:.1f} M), fit_leaves {t3 - t2:.1f} s", flush=True)
