"""A run's final model on its whole test split, with its re-ranking leaves and without them."""
import sys, glob
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
model.attach_neighbours(tr)
show = lambda r: " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5"))
print(run, "with leaves", show(model.evaluate(te)), flush=True)
model.leaves = None
print(run, "without", show(model.evaluate(te)), flush=True)
