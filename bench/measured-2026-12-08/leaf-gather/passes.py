"""C = 1's fit at each cap on the passes: python passes.py RUN TRAIN 0,1,2,5,10,20"""
import sys, time
from slidepy import reranker as R
from setup import network_and_leaf_set
model, train, rows, sl, neg, _ = network_and_leaf_set(*sys.argv[1:3])
for mp in [int(x) for x in sys.argv[3].split(",")]:
    t = time.perf_counter(); lv = R.fit_leaves(train, sl, 0, rows=rows, n_labels=model.engine.n_labels, negatives=neg, cost=1.0, max_passes=mp)
    print("max_passes", mp, round(time.perf_counter() - t, 1), "s; kept", lv.weights.shape[0], flush=True)
