"""usage: blendgrid.py RUN TRAIN TEST [n_test]: refit the run's final leaves as slidepy now fits
them (Model.fit_reranker) and score the test split at a grid of weights."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
run, trp, tep = sys.argv[1:4]
n_test = int(sys.argv[4]) if len(sys.argv) > 4 else 0
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
rows_te = np.arange(te.n_samples, dtype=np.int64)
if n_test and n_test < te.n_samples:
    rows_te = np.sort(np.random.default_rng(1).choice(te.n_samples, n_test, replace=False))
t = time.perf_counter(); s = model.fit_reranker(tr)
print(f"fit {s:.1f}s, {model.leaves.weights.size} weights", flush=True)
from slidepy.reranker import score_leaves
ids, scores, _ = model.engine.predict(te, rows_te, k=50)
logp = model._log_scores(scores, None)
leaf = score_leaves(model.leaves, te, rows_te, ids).astype(np.float64)
yp, yi = te.y_indptr, te.y_indices
ind = np.zeros(len(rows_te) + 1, np.int64); ind[1:] = np.cumsum(yp[rows_te + 1] - yp[rows_te])
idx = np.concatenate([yi[yp[r]:yp[r + 1]] for r in rows_te])
for w in (0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0):
    S = (1 - w) * logp - w * np.maximum(1 - leaf, 0) ** 3
    top = np.take_along_axis(ids, np.argsort(-S, 1, kind="stable")[:, :5], 1)
    r = evaluate_topk(top, ind, idx, (1, 3, 5))
    print(f"w {w}", " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
