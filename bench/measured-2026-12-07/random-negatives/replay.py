"""usage: replay.py RUN TRAIN TEST: a run's held-out share choice again, under the evidence rule
(its saved leaves, fitted without the slice), and the test split's P@k at each share."""
import sys, glob, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.metrics import evaluate_topk
from slidepy import reranker as R
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr.n_samples, model.config.training.seed)
kept = tr.subset(np.setdiff1d(np.arange(tr.n_samples), held))
share, table = model._choose_share(model.leaves, kept, tr.subset(held))
print(run, "held-out", {k: round(v, 5) for k, v in table.items()}, "-> share", share, flush=True)
model.attach_neighbours(tr)
ids, scores, _ = model.engine.predict(te, k=50)
logp = model._log_scores(scores, None)
leaf = R.score_leaves(model.leaves, te, np.arange(te.n_samples), ids)
for w in R.SHARES:
    top = R.rerank(ids, logp, leaf, w, 5)[0]
    r = evaluate_topk(top, te.y_indptr, te.y_indices, (1, 3, 5))
    print(f"test at {w}:", " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
