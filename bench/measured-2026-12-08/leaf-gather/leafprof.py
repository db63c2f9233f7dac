"""Where the leaves' fit spends its time on a run's final network: shortlists, fits, slice."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
from slidepy.model import training_rows
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train = tr.subset(training_rows(tr.n_samples, held))
t = time.perf_counter(); rows, sl, neg = model.leaf_training_set(train); print("training set", round(time.perf_counter() - t, 1), "s; rows", len(rows), "shortlists", sl.shape, "random pairs", neg[1].shape if isinstance(neg, tuple) else None, flush=True)
print("positives", train.y_indices.shape[0])
for c in [float(x) for x in sys.argv[3].split(",")]:
    t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=model.engine.n_labels, negatives=neg, cost=c)
    print("fit C", c, round(time.perf_counter() - t, 1), "s; kept", lv.weights.shape[0], flush=True)
