"""Test P@k of a finished run's model at other leaf shares (its own leaves and depth)."""
import glob, sys
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
leaves = model.leaves
out = []
for share in map(float, sys.argv[4:]):
    model.leaves = leaves._replace(share=share)
    r = model.evaluate(te)
    out.append(f"{share}: " + " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")))
print(run.split("/")[-1], "depth", leaves.depth, " | ".join(out), flush=True)
