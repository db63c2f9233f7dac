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
for mp in [int(x) for x in sys.argv[3].split(",")]:
    t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=model.engine.n_labels, negatives=neg, cost=1.0, max_passes=mp)
    print("max_passes", mp, round(time.perf_counter() - t, 1), "s; kept", lv.weights.shape[0], flush=True)
