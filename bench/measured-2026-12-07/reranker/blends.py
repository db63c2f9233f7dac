"""usage: blends.py RUN TRAIN TEST [hinge3 weights, e.g. 0.05,0.1,0.3]

Blend forms for the leaves on a run's final network (whole test split): the l3-hinge geometric
blend as built, the raw leaf score added to the log-score, and log-sigmoid of it."""
import sys, glob, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
from slidepy.reranker import score_leaves
run, trp, tep = sys.argv[1:4]
hinge_weights = [float(w) for w in sys.argv[4].split(",")] if len(sys.argv) > 4 else [0.05, 0.1, 0.15, 0.2]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
rows = np.arange(te.n_samples, dtype=np.int64)
ids, scores, _ = model.engine.predict(te, rows, k=50)
logp = model._log_scores(scores, None)
leaf = score_leaves(model.leaves, te, rows, ids).astype(np.float64)
def show(name, S):
    order = np.argsort(-S, 1, kind="stable")[:, :5]
    top = np.take_along_axis(ids, order, 1)
    r = evaluate_topk(top, te.y_indptr, te.y_indices, (1, 3, 5))
    print(name, " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
show("network", logp)
for w in hinge_weights:
    show(f"hinge3 {w}", (1 - w) * logp - w * np.maximum(1 - leaf, 0) ** 3)
for w in (0.2, 0.5, 0.7, 1.0, 1.5, 2.0):
    show(f"linear {w}", logp + w * leaf)
for w in ():
    show(f"logsig {w}", logp - w * np.logaddexp(0, -leaf))
for w in (0.2, 0.3):
    show(f"sqhinge {w}", logp - w * np.maximum(1 - leaf, 0) ** 2)
