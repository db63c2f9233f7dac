import sys, glob, time
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
nb = model.config.model.neighbours
for space, weight, bank in [("auto", 0.3, 65536), ("hidden", 0.3, 65536), ("hidden", 0.3, 32768), ("hidden", 0.5, 65536)]:
    c = model.config
    model.config = c.model_copy(update={'model': c.model.model_copy(update={'neighbours': nb.model_copy(update=dict(space=space, weight=weight, k=25, temperature=0.05, bank_samples=bank))})})
    t = time.time(); model.attach_neighbours(tr); r = model.evaluate(te)
    print(space, weight, bank, {m: round(r[m], 4) for m in ("P@1", "P@3", "P@5")}, round(time.time() - t, 1), model.engine.neighbours.space, model.engine.neighbours.loo_precision, flush=True)
