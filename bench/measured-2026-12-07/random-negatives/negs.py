"""usage: negs.py RUN TRAIN TEST R1,R2,... [n_test]
Leaves trained on the network's shortlists plus r uniformly random labels a sample (random
negatives that calibrate rare labels' leaves), blended at several weights."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
from slidepy.reranker import score_leaves, fit_leaves, SHORTLIST_SAMPLES
run, trp, tep = sys.argv[1:4]
rs = [int(r) for r in sys.argv[4].split(",")]
n_test = int(sys.argv[5]) if len(sys.argv) > 5 else 0
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
rng = np.random.default_rng(1)
rows_te = np.arange(te.n_samples, dtype=np.int64)
if n_test and n_test < te.n_samples:
    rows_te = np.sort(rng.choice(te.n_samples, n_test, replace=False))
ids, scores, _ = model.engine.predict(te, rows_te, k=50)
logp = model._log_scores(scores, None)
sub_y = te.subset(rows_te) if hasattr(te, "subset") else None
def show(name, S):
    order = np.argsort(-S, 1, kind="stable")[:, :5]
    top = np.take_along_axis(ids, order, 1)
    yp = te.y_indptr; yi = te.y_indices
    ind = np.zeros(len(rows_te) + 1, np.int64); ind[1:] = np.cumsum(yp[rows_te + 1] - yp[rows_te])
    idx = np.concatenate([yi[yp[r]:yp[r + 1]] for r in rows_te])
    r = evaluate_topk(top, ind, idx, (1, 3, 5))
    print(name, " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
show("network", logp)
k = 50
rows = np.arange(tr.n_samples, dtype=np.int64)
if tr.n_samples > SHORTLIST_SAMPLES:
    rows = np.sort(rng.choice(tr.n_samples, SHORTLIST_SAMPLES, replace=False)).astype(np.int64)
t = time.perf_counter()
base = np.full((tr.n_samples, k), -1, np.int32)
base[rows] = model.engine.predict(tr, rows, k=k, votes=False)[0]
print(f"shortlists {time.perf_counter() - t:.1f}s", flush=True)
N = model.engine.n_labels
for r in rs:
    sl = base
    if r:
        extra = np.full((tr.n_samples, r), -1, np.int32)
        extra[rows] = rng.integers(0, N, (len(rows), r), dtype=np.int32)
        sl = np.concatenate([base, extra], 1)
    t = time.perf_counter()
    leaves = fit_leaves(tr, sl, model.engine.step, n_labels=N)
    fit_s = time.perf_counter() - t
    leaf = score_leaves(leaves, te, rows_te, ids).astype(np.float64)
    print(f"-- r={r} (about {len(rows) * r / N:.1f} random negatives a label) fit {fit_s:.1f}s, {leaves.weights.size} weights")
    show(f"r={r} alone", leaf)
    for w in (0.1, 0.2, 0.3, 0.5):
        show(f"r={r} hinge3 {w}", (1 - w) * logp - w * np.maximum(1 - leaf, 0) ** 3)
