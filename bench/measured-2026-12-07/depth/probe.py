"""usage: probe.py RUN TRAIN TEST N_TEST FIT_KS PREDICT_KS [SHARES]
Does the leaves' re-ranking lose labels that the network ranks past its top 50? For the run's
final network: the share of test labels inside the network's top K (K in PREDICT_KS), and P@1/3/5
when the leaves (refitted on training shortlists of each k in FIT_KS, all training samples, with
random negatives a label as many as k:r gives, default reranker.RANDOM_NEGATIVES) re-rank the top
K at SHARES (default 0.3,0.5,0.7,0.9)."""
import glob
import sys
import time

import numpy as np

from slidepy.data import load_dataset
from slidepy.metrics import evaluate_topk
from slidepy.model import Model
from slidepy.reranker import (SHORTLIST_SAMPLES, fit_leaves, random_negatives, random_negatives_per_label, rerank,
                              score_leaves)

run, trp, tep = sys.argv[1:4]
n_test = int(sys.argv[4])
fits = [tuple(int(v) for v in (spec + ":0").split(":")[:2]) for spec in sys.argv[5].split(",")]
predict_ks = [int(k) for k in sys.argv[6].split(",")]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
rng = np.random.default_rng(1)
rows_te = np.sort(rng.choice(te.n_samples, min(n_test, te.n_samples), replace=False)).astype(np.int64)
sub = te.subset(rows_te)
SHARES = [float(w) for w in (sys.argv[7] if len(sys.argv) > 7 else "0.3,0.5,0.7,0.9").split(",")]
kmax = max(predict_ks)
ids, scores, _ = model.engine.predict(te, rows_te, k=kmax)
logp = model._log_scores(scores, None)


def show(name, top):
    r = evaluate_topk(top[:, :5], sub.y_indptr, sub.y_indices, (1, 3, 5))
    print(f"{name:40s}", " / ".join(f"{r[f'P@{k}']:.4f}" for k in (1, 3, 5)), flush=True)


show("network", ids)
n_true = np.diff(sub.y_indptr)
for k in predict_ks:
    hits = sum(np.isin(sub.y_indices[sub.y_indptr[i]:sub.y_indptr[i + 1]], ids[i, :k]).sum() for i in range(len(rows_te)))
    print(f"recall of the network's top {k}: {hits / n_true.sum():.4f}")
N = model.engine.n_labels
rows = np.arange(tr.n_samples, dtype=np.int64)
if tr.n_samples > SHORTLIST_SAMPLES:
    rows = np.sort(rng.choice(tr.n_samples, SHORTLIST_SAMPLES, replace=False)).astype(np.int64)
base = model.engine.predict(tr, rows, k=max(k for k, _ in fits), votes=False)[0]
for fk, r in fits:
    negatives = random_negatives(N, np.arange(tr.n_samples), r or random_negatives_per_label(N, tr.n_samples),
                                 np.random.default_rng(2))
    sl = np.full((tr.n_samples, fk), -1, np.int32)
    sl[rows] = base[:, :fk]
    t = time.perf_counter()
    leaves = fit_leaves(tr, sl, model.engine.step, n_labels=N, negatives=negatives)
    print(f"-- leaves on training top {fk}, {r or 'default'} random a label: fit {time.perf_counter() - t:.1f} s, {leaves.weights.size} weights")
    leaf_all = score_leaves(leaves, te, rows_te, ids)
    for k in predict_ks:
        for w in SHARES:
            top, _ = rerank(ids[:, :k], logp[:, :k], leaf_all[:, :k], w, 5)
            show(f"fit {fk}:{r} re-rank top {k} share {w}", top)
