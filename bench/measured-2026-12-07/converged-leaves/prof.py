"""Stages of Model.fit_reranker on a run's final network, timed."""
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
val = tr.subset(held); train = tr.subset(R.training_rows(tr.n_samples, held))
N = model.engine.n_labels
T = {}
t = time.perf_counter()
rows = np.arange(train.n_samples, dtype=np.int64)
short = model.engine.predict(train, rows, k=100, votes=False)[0]
T['shortlists'] = time.perf_counter() - t; t = time.perf_counter()
per = R.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = R.random_negatives(N, rows, per, generator(0, R.RANDOM_STREAM))
p = R.training_pairs(short, train.y_indptr, train.y_indices, N, neg)
T['pairs'] = time.perf_counter() - t; t = time.perf_counter()
leaves = R.fit_leaves(train, short, 0, n_labels=N, negatives=neg)
T['fit_leaves(incl pairs)'] = time.perf_counter() - t; t = time.perf_counter()
(choice, scores) = model._choose_blend(leaves, train, val, 50)
T['choose'] = time.perf_counter() - t
print({k: round(v, 2) for k, v in T.items()}, "pairs", p[1].shape[0], "per", per, "choice", choice, "E", leaves.weights.shape[0])
