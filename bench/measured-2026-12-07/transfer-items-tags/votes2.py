import sys, glob, time
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep, space = sys.argv[1:5]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
nb = model.config.model.neighbours
for weight, k, temp in [(1.0, 25, 0.05), (1.0, 25, 0.2), (1.0, 50, 0.2), (1.0, 100, 0.5), (0.7, 50, 0.2), (0.7, 100, 0.5)]:
    c = model.config
    model.config = c.model_copy(update={'model': c.model.model_copy(update={'neighbours': nb.model_copy(update=dict(space=space, weight=weight, k=k, temperature=temp, bank_samples=None))})})
    model.attach_neighbours(tr); r = model.evaluate(te)
    print(space, weight, k, temp, {m: round(r[m], 4) for m in ("P@1", "P@3", "P@5")}, flush=True)
