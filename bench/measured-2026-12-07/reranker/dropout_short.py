"""Leaves whose training shortlists come from the network with dropout on (as in training), so
that a training sample's shortlist looks more like a test sample's: DebianDeps, exact scoring."""
import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.reranker import fit_leaves
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
eng = model.engine; out = eng.layers[-1]
W = np.asarray(out.weights); W = W if W.shape[0] == eng.n_labels else W.T
show = lambda r: " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5"))
rng = np.random.default_rng(0)
for p in [float(a) for a in sys.argv[4].split(",")]:
    t = time.perf_counter()
    ids = np.empty((tr.n_samples, 50), np.int32)
    for s in range(0, tr.n_samples, 4096):
        rows = np.arange(s, min(tr.n_samples, s + 4096), dtype=np.int64)
        h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32); eng.last_hidden(tr, rows, h)
        if p > 0:
            h *= (rng.random(h.shape) >= p) / (1 - p)
        z = h @ W.T + np.asarray(out.bias)[None, :]
        top = np.argpartition(-z, 50, 1)[:, :50]
        ids[rows] = np.take_along_axis(top, np.argsort(-np.take_along_axis(z, top, 1), 1), 1)
    model.leaves = fit_leaves(tr, ids, eng.step, n_labels=eng.n_labels)
    print(p, f"{time.perf_counter() - t:.1f} s:", show(model.evaluate(te)), flush=True)
