"""The run's own leaves against the probe's path on the same 5,000 test samples."""
import glob, sys
import numpy as np
from slidepy.data import load_dataset
from slidepy.metrics import evaluate_topk
from slidepy.model import Model
from slidepy.reranker import rerank, score_leaves
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
path = max(glob.glob(f"{run}/checkpoints/step-*.npz"), key=lambda p: int(p.split("step-")[1].split(".")[0]))
model = Model.load(path)[0]
print(path, model.leaves.share, model.leaves.depth, model.leaves.step, model.engine.step)
model.attach_neighbours(tr)
rng = np.random.default_rng(1)
rows = np.sort(rng.choice(te.n_samples, 5000, replace=False)).astype(np.int64)
sub = te.subset(rows)
def show(name, top):
    r = evaluate_topk(top[:, :5], sub.y_indptr, sub.y_indices, (1, 3, 5))
    print(f"{name:30s}", " / ".join(f"{r[f'P@{k}']:.4f}" for k in (1, 3, 5)), flush=True)
show("model.predict", model.predict(te, k=5, rows=rows)[0])
ids, scores, _ = model.engine.predict(te, rows, k=200)
logp = model._log_scores(scores, None)
show("network", ids)
leaf = score_leaves(model.leaves, te, rows, ids)
for d in (50, 200):
    for w in (0.5, 0.7, 0.9):
        show(f"own leaves top {d} share {w}", rerank(ids[:, :d], logp[:, :d], leaf[:, :d], w, 5)[0])
