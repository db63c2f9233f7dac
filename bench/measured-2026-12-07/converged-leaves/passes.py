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
n_rows, indexed = new.shortlist_plan(train.n_samples, N, model.engine.sizes[-1][0], model.engine.lsh[-1] is not None)
if n_rows < train.n_samples:
    rows = np.sort(generator(0, new.SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False)).astype(np.int64)
short = model.engine.predict(train, rows, k=100, use_lsh=indexed, votes=False)[0]
per = new.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = new.random_negatives(N, np.arange(train.n_samples), per, generator(0, new.RANDOM_STREAM))
ip, pr, pos = new.training_pairs(short, train.y_indptr, train.y_indices, N, neg, rows)
c = np.diff(ip); print("pairs per label: mean", c.mean(), "max", c.max(), "top10 share", np.sort(c)[-10:].sum() / c.sum(), "positives", pos.sum())
for mod in (old, new):
    mod.fit_leaves(train.subset(np.arange(50)), short[:50], 0, rows=np.arange(50), n_labels=N)
for mp in map(int, sys.argv[3:]):
    for name, mod in (("old", old), ("new", new)):
        t = time.perf_counter()
        mod.fit_leaves(train, short, 0, rows=rows, n_labels=N, negatives=neg, max_passes=mp)
        print(name, mp, f"{time.perf_counter() - t:.2f} s", flush=True)
