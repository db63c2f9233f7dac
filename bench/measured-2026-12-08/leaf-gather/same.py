"""C = 1's leaves on a run's final network, timed and saved, to compare two builds: python same.py RUN TRAIN OUT.npz"""
import sys, time
import numpy as np
from slidepy import reranker as R
from setup import network_and_leaf_set
model, train, rows, sl, neg, _ = network_and_leaf_set(*sys.argv[1:3])
t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=model.engine.n_labels, negatives=neg, cost=1.0)
print("fit", round(time.perf_counter() - t, 1), flush=True)
np.savez(sys.argv[3], indptr=lv.indptr, features=lv.features, weights=lv.weights)
