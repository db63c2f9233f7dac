import sys, glob, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
rows = np.sort(np.random.default_rng(0).choice(tr.n_samples, 2000, replace=False)).astype(np.int64)
ids = model.engine.predict(tr, rows, k=5, votes=False)[0]
yp, yi = tr.y_indptr, tr.y_indices
ind = np.zeros(len(rows) + 1, np.int64); ind[1:] = np.cumsum(yp[rows + 1] - yp[rows])
idx = np.concatenate([yi[yp[r]:yp[r + 1]] for r in rows])
print(run, evaluate_topk(ids, ind, idx, (1, 5)))
