"""Leaves at other stopping tolerances / costs on a run's final network: fit seconds and test P@k."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
from slidepy.rng import generator
run, trp, tep = sys.argv[1:4]
share, depth = float(sys.argv[4]), int(sys.argv[5])
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train = tr.subset(R.training_rows(tr.n_samples, held)) if held is not None else tr
N = model.engine.n_labels
rows = np.arange(train.n_samples, dtype=np.int64)
n_rows, indexed = R.shortlist_plan(train.n_samples, N, model.engine.sizes[-1][0], model.engine.lsh[-1] is not None)
if n_rows < train.n_samples:
    rows = np.sort(generator(0, R.SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False)).astype(np.int64)
short = model.engine.predict(train, rows, k=100, use_lsh=indexed, votes=False)[0]
per = R.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = R.random_negatives(N, np.arange(train.n_samples), per, generator(0, R.RANDOM_STREAM))
model.attach_neighbours(train)
for spec in sys.argv[6:]:
    tol, cost = map(float, spec.split(","))
    t = time.perf_counter()
    leaves = R.fit_leaves(train, short, model.engine.step, rows=rows, n_labels=N, negatives=neg, tolerance=tol, cost=cost)
    sec = time.perf_counter() - t
    slice_note = ""
    if held is not None:
        choice, table = model._choose_blend(leaves, train, tr.subset(held), 50)
        slice_note = f"slice at ({share}, {depth}) {table[(share, depth)]:.4f}, chooses {choice} {table[choice]:.4f}"
        model.attach_neighbours(train)
    model.leaves = leaves._replace(share=share, depth=depth)
    r = model.evaluate(te)
    print(f"tol {tol} C {cost}: fit {sec:.2f} s", {k: round(r[k], 4) for k in ("P@1", "P@3", "P@5")}, slice_note, flush=True)
