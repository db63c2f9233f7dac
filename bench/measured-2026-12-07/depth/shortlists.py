"""usage: shortlists.py RUN TRAIN TEST N_TEST SPEC,...
Where the leaves' training shortlists come from: for the run's final network, leaves fitted
(128 random negatives a label) on shortlists of the top 50 of n training samples drawn at random,
scored exactly or through the LSH index (SPEC: exact:n or lsh:n), each with its seconds; P@1/3/5
of 5,000 test samples re-ranked over the network's top 50 and 200 at shares 0.5-0.9."""
import glob
import sys
import time

import numpy as np

from slidepy.data import load_dataset
from slidepy.metrics import evaluate_topk
from slidepy.model import Model
from slidepy.reranker import fit_leaves, random_negatives, random_negatives_per_label, rerank, score_leaves

run, trp, tep = sys.argv[1:4]
n_test = int(sys.argv[4])
specs = [(s.split(":")[0], int(s.split(":")[1])) for s in sys.argv[5].split(",")]
tr, te = load_dataset(trp), load_dataset(tep)
path = max(glob.glob(f"{run}/checkpoints/step-*.npz"), key=lambda p: int(p.split("step-")[1].split(".")[0]))
model = Model.load(path)[0]
model.attach_neighbours(tr)
rng = np.random.default_rng(1)
rows_te = np.sort(rng.choice(te.n_samples, min(n_test, te.n_samples), replace=False)).astype(np.int64)
sub = te.subset(rows_te)
ids, scores, _ = model.engine.predict(te, rows_te, k=200)
logp = model._log_scores(scores, None)
N = model.engine.n_labels
negatives = random_negatives(N, np.arange(tr.n_samples), random_negatives_per_label(N, tr.n_samples),
                             np.random.default_rng(2))


def show(name, top):
    r = evaluate_topk(top[:, :5], sub.y_indptr, sub.y_indices, (1, 3, 5))
    print(f"{name:34s}", " / ".join(f"{r[f'P@{k}']:.4f}" for k in (1, 3, 5)), flush=True)


show("network", ids)
for how, n in specs:
    rows = np.sort(rng.choice(tr.n_samples, min(n, tr.n_samples), replace=False)).astype(np.int64)
    t = time.perf_counter()
    sl = np.full((tr.n_samples, 50), -1, np.int32)
    sl[rows] = model.engine.predict(tr, rows, k=50, use_lsh=how == "lsh", votes=False)[0]
    t_short = time.perf_counter() - t
    leaves = fit_leaves(tr, sl, model.engine.step, n_labels=N, negatives=negatives)
    print(f"-- {how} shortlists of {len(rows)} samples: {t_short:.1f} s, fit {time.perf_counter() - t - t_short:.1f} s")
    leaf = score_leaves(leaves, te, rows_te, ids)
    for d in (50, 200):
        for w in (0.5, 0.7, 0.9):
            show(f"{how}:{n} top {d} share {w}", rerank(ids[:, :d], logp[:, :d], leaf[:, :d], w, 5)[0])
