import sys, glob, time, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.reranker import fit_leaves
run, trp, tep, mode = sys.argv[1:5]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
model.attach_neighbours(tr)
rows = np.sort(np.random.default_rng(0).choice(te.n_samples, min(5000, te.n_samples), replace=False)).astype(np.int64)
cfg = model.config
t = time.perf_counter()
ids, _, _ = model.engine.predict(tr, k=50, use_lsh=(mode == "lsh"), votes=False)
t1 = time.perf_counter()
model.leaves = fit_leaves(tr, ids, model.engine.step, n_labels=model.engine.n_labels)
print(f"{mode}: shortlists {t1-t:.1f} s, leaves {time.perf_counter()-t1:.1f} s", flush=True)
for w in (0.1, 0.15):
    model.config = cfg.model_copy(update={"model": cfg.model.model_copy(update={"reranker": cfg.model.reranker.model_copy(update={"weight": w})})})
    print(w, {k: round(v, 4) for k, v in model.evaluate(te.subset(rows)).items() if k.startswith("P@")}, flush=True)
