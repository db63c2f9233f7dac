import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.reranker import fit_leaves
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
model.attach_neighbours(tr)
rows = np.sort(np.random.default_rng(0).choice(te.n_samples, min(5000, te.n_samples), replace=False)).astype(np.int64)
cfg = model.config
sub = te.subset(rows)
full, _, _ = model.engine.predict(tr, k=100, use_lsh=False, votes=False)
def setw(w, sl=50):
    model.config = cfg.model_copy(update={"model": cfg.model.model_copy(update={"reranker": cfg.model.reranker.model_copy(update={"weight": w, "shortlist": sl})})})
model.leaves = None; setw(0.0); print("net", {k: round(v, 4) for k, v in model.evaluate(sub).items() if k.startswith("P@")}, flush=True)
for K, C in [(50, 1.0), (20, 1.0), (100, 1.0), (50, 0.5), (50, 2.0)]:
    t = time.perf_counter()
    model.leaves = fit_leaves(tr, np.ascontiguousarray(full[:, :K]), model.engine.step, n_labels=model.engine.n_labels, cost=C)
    el = time.perf_counter() - t
    for w in (0.1, 0.15):
        setw(w)
        print(K, C, w, f"{el:.1f}s", {k: round(v, 4) for k, v in model.evaluate(sub).items() if k.startswith("P@")}, flush=True)
