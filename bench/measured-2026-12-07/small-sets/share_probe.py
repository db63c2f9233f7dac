"""A finished run's final network and leaves, scored on the test split at other (share, depth) pairs."""
import glob, sys
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
leaves = model.leaves
for share, depth in [(leaves.share, leaves.depth), (0.2, 50), (0.3, 50), (0.5, 50)]:
    model.leaves = leaves._replace(share=share, depth=depth)
    r = model.evaluate(te)
    print(share, depth, " / ".join(f"{r[f'P@{k}']:.4f}" for k in (1, 3, 5)), flush=True)
