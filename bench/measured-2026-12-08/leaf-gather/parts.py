import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model, training_rows
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train = tr.subset(training_rows(tr.n_samples, held))
rows, sl, neg = model.leaf_training_set(train)
n_labels = model.engine.n_labels
t = time.perf_counter(); pi, pr, pos = R.training_pairs(sl, train.y_indptr, train.y_indices, n_labels, neg, rows); print("training_pairs", round(time.perf_counter()-t,2), "pairs", pr.shape[0], flush=True)
t = time.perf_counter(); R.training_pairs(sl, train.y_indptr, train.y_indices, n_labels, neg, rows); print("training_pairs again", round(time.perf_counter()-t,2), flush=True)
t = time.perf_counter(); sc = R.unit_scales(train); print("unit_scales", round(time.perf_counter()-t,2), flush=True)
for mp in (0, 1):
    t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=n_labels, negatives=neg, cost=1.0, max_passes=mp)
    print("fit max_passes", mp, round(time.perf_counter() - t, 1), flush=True)
