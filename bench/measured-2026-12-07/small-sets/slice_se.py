"""The slice's paired gain of the chosen (share, depth) over the default, in standard errors, for a finished auto run."""
import glob, sys
import numpy as np
from slidepy import reranker as R
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, model.config.training.seed)
val, rest = tr.subset(held), tr.subset(R.training_rows(tr.n_samples, held))
model.attach_neighbours(rest)
rows = np.arange(val.n_samples, dtype=np.int64)
ids, scores, _ = model.engine.predict(val, rows, k=400)
logp = model._log_scores(scores, None)
leaf = R.score_leaves(model.leaves, val, rows, ids)
def per(share, depth):
    head = R.rerank(ids[:, :depth], logp[:, :depth], leaf[:, :depth], share, 5)[0]
    return R.sample_precision(head, val.y_indptr, val.y_indices)
base, best = per(0.1, 50), per(model.leaves.share, model.leaves.depth)
g = best - base
print(f"slice {val.n_samples}, chosen ({model.leaves.share}, {model.leaves.depth}): mean gain {g.mean():.4f}, "
      f"SE {g.std(ddof=1) / np.sqrt(len(g)):.4f}, {g.mean() / (g.std(ddof=1) / np.sqrt(len(g))):.1f} SE")
