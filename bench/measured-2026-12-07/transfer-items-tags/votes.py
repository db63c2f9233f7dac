"""Votes on a trained run's final checkpoint: each (space, weight, k, temperature) on the test split, and auto's LOO."""
import sys, glob, time, dataclasses
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
nb = model.config.model.neighbours
def setn(**kw):
    c = model.config
    model.config = c.model_copy(update={'model': c.model.model_copy(update={'neighbours': nb.model_copy(update=kw)})})
for space, weight, k, temp in [(s, w, k, t) for s in ("hidden", "input") for (w, k, t) in
                               ((1.0, 25, 0.05), (0.3, 25, 0.05), (0.5, 25, 0.05), (0.7, 25, 0.05))] + [("auto", 0.5, 25, 0.05)]:
    setn(space=space, weight=weight, k=k, temperature=temp, bank_samples=None)
    t = time.time(); model.attach_neighbours(tr); ta = time.time() - t
    t = time.time(); r = model.evaluate(te); te_s = time.time() - t
    b = model.engine.neighbours
    print(space, weight, k, temp, {m: round(r[m], 4) for m in ("P@1", "P@3", "P@5")}, "attach", round(ta, 1), "eval", round(te_s, 1), b.space, b.loo_precision, flush=True)
model.detach_neighbours(); r = model.evaluate(te); print("network", {m: round(r[m], 4) for m in ("P@1", "P@3", "P@5")})
