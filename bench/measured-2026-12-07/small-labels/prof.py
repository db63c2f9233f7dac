import glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
from slidepy.rng import generator
tr = load_dataset("/work/shared/data/Bibtex/train.txt")
model = Model.load(max(glob.glob("/work/exp/s38/bib/ep4_rr-0/checkpoints/step-*.npz")))[0]
N = model.engine.n_labels
for rep in range(2):
    T = {}
    t = time.perf_counter(); rows = np.arange(tr.n_samples, dtype=np.int64)
    for depth in (100, 20):
        t = time.perf_counter(); short = model.engine.predict(tr, rows, k=depth, votes=False)[0]; T[f'shortlists k={depth}'] = time.perf_counter() - t
        per = R.random_negatives_per_label(N, tr.n_samples, tr.y_indices.shape[0])
        t = time.perf_counter(); neg = R.random_negatives(N, np.arange(tr.n_samples), per, generator(0, R.RANDOM_STREAM)); T['negatives'] = time.perf_counter() - t
        t = time.perf_counter(); p = R.training_pairs(short, tr.y_indptr, tr.y_indices, N, neg, rows); T[f'pairs k={depth} ({p[1].shape[0]})'] = time.perf_counter() - t
        t = time.perf_counter(); R.fit_leaves(tr, short, 0, rows=rows, n_labels=N, negatives=neg); T[f'fit_leaves k={depth}'] = time.perf_counter() - t
    t = time.perf_counter(); model.fit_reranker(tr); T['fit_reranker'] = time.perf_counter() - t
    print({k: round(v, 3) for k, v in T.items()}, 'per label negatives', per)
