"""The fit's fixed costs: the pairs, the rows' scales, a fit without passes and with one: python parts.py RUN TRAIN"""
import sys, time
from slidepy import reranker as R
from setup import network_and_leaf_set
model, train, rows, sl, neg, _ = network_and_leaf_set(*sys.argv[1:3])
n_labels = model.engine.n_labels
for what in ("training_pairs", "training_pairs again"):
    t = time.perf_counter(); pi, pr, pos = R.training_pairs(sl, train.y_indptr, train.y_indices, n_labels, neg, rows)
    print(what, round(time.perf_counter() - t, 2), "pairs", pr.shape[0], flush=True)
t = time.perf_counter(); R.unit_scales(train); print("unit_scales", round(time.perf_counter() - t, 2), flush=True)
for mp in (0, 1):
    t = time.perf_counter(); R.fit_leaves(train, sl, 0, rows=rows, n_labels=n_labels, negatives=neg, cost=1.0, max_passes=mp)
    print("fit max_passes", mp, round(time.perf_counter() - t, 1), flush=True)
