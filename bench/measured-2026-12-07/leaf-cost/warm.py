"""Fit time of the leaves at C = 1, 2, 4: cold fits against the warm-started path (alphas scaled by ratio x s)."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
from slidepy.rng import generator
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train = tr.subset(R.training_rows(tr.n_samples, held)) if held is not None else tr
N = model.engine.n_labels
rows = np.arange(train.n_samples, dtype=np.int64)
n_rows, indexed = R.shortlist_plan(train.n_samples, N, model.engine.sizes[-1][0], model.engine.lsh[-1] is not None)
if n_rows < train.n_samples:
    rows = np.sort(generator(0, R.SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False)).astype(np.int64)
short = model.engine.predict(train, rows, k=100, use_lsh=indexed, votes=False)[0]
per = R.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = R.random_negatives(N, np.arange(train.n_samples), per, generator(0, R.RANDOM_STREAM))
kw = dict(rows=rows, n_labels=N, negatives=neg)
R.fit_leaves(train, short[:50], 0, rows=rows[:50], n_labels=N)  # compile
cold = {}
for c in (1.0, 2.0, 4.0):
    t = time.perf_counter(); cold[c] = R.fit_leaves(train, short, 0, cost=c, **kw); print(f"cold C {c}: {time.perf_counter() - t:.2f} s", flush=True)
for s in (0.5, 1.0):
    R.WARM_SCALE = s
    t = time.perf_counter(); path = R.fit_leaves_path(train, short, 0, costs=(1.0, 2.0, 4.0), **kw)
    print(f"path 1,2,4 scale x{s}: {time.perf_counter() - t:.2f} s; weights kept", [path[c].weights.shape[0] for c in path],
          "cold", [cold[c].weights.shape[0] for c in cold],
          "max |bias diff|", [float(np.abs(path[c].weights[path[c].indptr[1:] - 1] - cold[c].weights[cold[c].indptr[1:] - 1]).max()) for c in path], flush=True)
