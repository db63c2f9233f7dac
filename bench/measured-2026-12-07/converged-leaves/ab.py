"""Old against new leaves on a run's final network: fit seconds and test P@k at the run's (share, depth)."""
import glob, sys, time, json, importlib.util
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as new
from slidepy.rng import generator
sys.path.insert(0, "/work/exp/s37")
import reranker_old as old
run, trp, tep = sys.argv[1:4]
MP = int(sys.argv.pop()) if sys.argv[-1].isdigit() else 20
share, depth = float(sys.argv[4]), int(sys.argv[5])
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = new.validation_rows(tr, 0)
train = tr.subset(new.training_rows(tr.n_samples, held)) if held is not None else tr
N = model.engine.n_labels
rows = np.arange(train.n_samples, dtype=np.int64)
n_rows, indexed = new.shortlist_plan(train.n_samples, N, model.engine.sizes[-1][0], model.engine.lsh[-1] is not None)
if n_rows < train.n_samples:
    rows = np.sort(generator(0, new.SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False)).astype(np.int64)
short = model.engine.predict(train, rows, k=100, use_lsh=indexed, votes=False)[0]
per = new.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = new.random_negatives(N, np.arange(train.n_samples), per, generator(0, new.RANDOM_STREAM))
model.attach_neighbours(train)
for name, mod in [(a, {"old": old, "new": new}[a]) for a in sys.argv[6:]]:
    mod.fit_leaves(train.subset(np.arange(50)), short[:50], 0, rows=np.arange(50), n_labels=N)  # compile
    t = time.perf_counter()
    leaves = mod.fit_leaves(train, short, model.engine.step, rows=rows, n_labels=N, negatives=neg, max_passes=MP)
    sec = time.perf_counter() - t
    model.leaves = new.Leaves(*leaves[:6], share=share)._replace(depth=depth)
    r = model.evaluate(te)
    print(name, f"fit {sec:.2f} s", "E", leaves.weights.shape[0], {k: round(r[k], 4) for k in ("P@1", "P@3", "P@5")}, flush=True)
