"""usage: tolgrid.py RUN TRAIN TEST n_test: leaves fitted as Model.fit_reranker fits them, at
several (tolerance, max_passes, random negatives a label); P@k alone and blended on test."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
from slidepy import reranker as R
run, trp, tep, n_test = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
variants = [tuple(float(x) for x in v.split(":")) for v in sys.argv[5].split(",")]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
n = model.engine.n_labels
rows_te = np.sort(np.random.default_rng(1).choice(te.n_samples, min(n_test, te.n_samples), replace=False))
ids, scores, _ = model.engine.predict(te, rows_te, k=50)
logp = model._log_scores(scores, None)
yp, yi = te.y_indptr, te.y_indices
ind = np.zeros(len(rows_te) + 1, np.int64); ind[1:] = np.cumsum(yp[rows_te + 1] - yp[rows_te])
idx = np.concatenate([yi[yp[r]:yp[r + 1]] for r in rows_te])
rows = np.arange(tr.n_samples, dtype=np.int64)
if tr.n_samples > R.SHORTLIST_SAMPLES:
    rows = np.sort(np.random.default_rng(0).choice(tr.n_samples, R.SHORTLIST_SAMPLES, replace=False))
macs = float(rows.shape[0]) * n * model.engine.sizes[-1][0]
short = np.full((tr.n_samples, 50), -1, np.int32)
short[rows] = model.engine.predict(tr, rows, k=50, use_lsh=macs > R.EXACT_SHORTLIST_MACS, votes=False)[0]
def show(name, S):
    top = np.take_along_axis(ids, np.argsort(-S, 1, kind="stable")[:, :5], 1)
    r = evaluate_topk(top, ind, idx, (1, 3, 5))
    return f"{name} " + " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5"))
for tol, passes, per in variants:
    neg = R.random_negatives(n, np.arange(tr.n_samples), int(per), np.random.default_rng(1))
    t = time.perf_counter()
    lv = R.fit_leaves(tr, short, 0, n_labels=n, negatives=neg, tolerance=tol, max_passes=int(passes))
    sec = time.perf_counter() - t
    leaf = R.score_leaves(lv, te, rows_te, ids).astype(np.float64)
    out = [show("alone", leaf)] + [show(f"{w}", (1 - w) * logp - w * np.maximum(1 - leaf, 0) ** 3) for w in (0.1, 0.2, 0.5)]
    print(f"tol {tol} passes {int(passes)} per {int(per)}: {sec:.1f} s |", " | ".join(out), flush=True)
