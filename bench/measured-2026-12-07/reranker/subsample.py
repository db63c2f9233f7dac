"""Leaves whose negatives come from the shortlists of a random S of the training samples (every
sample still gives its positives): DebianNextWord's one-pass network, whole test split."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.reranker import fit_leaves
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
show = lambda r: " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5"))
for S in [int(a) for a in sys.argv[4].split(",")]:
    t = time.perf_counter()
    rows = np.sort(np.random.default_rng(0).choice(tr.n_samples, min(S, tr.n_samples), replace=False)).astype(np.int64)
    ids = np.full((tr.n_samples, 50), -1, np.int32)
    ids[rows] = model.engine.predict(tr, rows, k=50, use_lsh=True, votes=False)[0]
    t1 = time.perf_counter()
    model.leaves = fit_leaves(tr, ids, model.engine.step, n_labels=model.engine.n_labels)
    t2 = time.perf_counter()
    print(S, f"shortlists {t1 - t:.1f} s, leaves {t2 - t1:.1f} s:", show(model.evaluate(te)), flush=True)
