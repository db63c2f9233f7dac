import glob, sys, time
import numpy as np
sys.path.insert(0, "/work/exp/s37")
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as new
import reranker_old as old
from slidepy.rng import generator
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = new.validation_rows(tr, 0)
train = tr.subset(new.training_rows(tr.n_samples, held)) if held is not None else tr
N = model.engine.n_labels
rows = np.arange(train.n_samples, dtype=np.int64)
short = model.engine.predict(train, rows, k=100, votes=False)[0]
per = new.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = new.random_negatives(N, rows, per, generator(0, new.RANDOM_STREAM))
new.training_pairs(short[:10], train.y_indptr[:11], train.y_indices[:train.y_indptr[10]], N)
for name, mod in (("old", old), ("new", new), ("old", old), ("new", new)):
    t = time.perf_counter(); p = mod.training_pairs(short, train.y_indptr, train.y_indices, N, neg); dt = time.perf_counter() - t
    print(name, f"{dt:.2f} s", p[1].shape[0], flush=True)
    if name == "old": ref = p
    else: print("equal", all(np.array_equal(a, b) for a, b in zip(p, ref)))
