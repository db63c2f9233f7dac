"""The leaves of a run's final network refitted with other random-negative rules; test P@k and seconds."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
import slidepy.model as M
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, model.config.training.seed)
model.attach_neighbours(tr.subset(R.training_rows(tr.n_samples, held)) if held is not None else tr)
orig = R.random_negatives_per_label
for rep in range(2):
  for cap in [None] + [int(x) for x in sys.argv[4].split(",")]:
    M.random_negatives_per_label = (lambda n, rows, pos=0, cap=cap: min(cap, orig(n, rows, pos))) if cap else orig
    model.leaves = None
    t = time.perf_counter(); s = model.fit_reranker(tr, held)
    ev = model.evaluate(te)
    print(f"negatives cap {cap}: per label {M.random_negatives_per_label(tr.n_labels, tr.n_samples, tr.y_indices.shape[0])}"
          f" fit {s:.2f} s share {model.leaves.share} depth {model.leaves.depth} C {model.leaves.cost}"
          f" P@1 {ev['P@1']:.4f} P@3 {ev['P@3']:.4f} P@5 {ev['P@5']:.4f}", flush=True)
