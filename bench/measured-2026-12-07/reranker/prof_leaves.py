import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.reranker import fit_leaves, training_pairs
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
t = time.perf_counter(); ids, _, _ = model.engine.predict(tr, k=50, use_lsh=True, votes=False); t1 = time.perf_counter()
print(f"lsh shortlists {t1 - t:.1f} s", flush=True)
p = training_pairs(ids, tr.y_indptr, tr.y_indices, model.engine.n_labels); t2 = time.perf_counter()
print(f"pairs {t2 - t1:.1f} s ({p[1].shape[0] / 1e6:.1f} M)", flush=True)
fit_leaves(tr, ids, 0, n_labels=model.engine.n_labels); t3 = time.perf_counter()
print(f"fit_leaves (pairs again + fit) {t3 - t2:.1f} s", flush=True)
