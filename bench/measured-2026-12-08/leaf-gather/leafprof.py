"""Where the leaves' fit spends its time on a run's final network: the training set, then a fit at each C.
python leafprof.py RUN TRAIN 1,4"""
import sys, time
from slidepy import reranker as R
from setup import network_and_leaf_set
model, train, rows, sl, neg, sec = network_and_leaf_set(*sys.argv[1:3])
print("training set", round(sec, 1), "s; rows", len(rows), "shortlists", sl.shape, "random pairs", neg[1].shape,
      "positives", train.y_indices.shape[0], flush=True)
for c in [float(x) for x in sys.argv[3].split(",")]:
    t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=model.engine.n_labels, negatives=neg, cost=c)
    print("fit C", c, round(time.perf_counter() - t, 1), "s; kept", lv.weights.shape[0], flush=True)
