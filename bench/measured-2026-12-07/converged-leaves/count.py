import glob, sys, time
import numpy as np
from numba import njit
sys.path.insert(0, "/work/exp/s37")
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as new
from slidepy.neighbours import unit_scales
from slidepy.rng import generator

@njit(cache=False)
def passes_of(pair_indptr, pair_rows, positive, x_indptr, x_indices, x_values, scales, nf, tol, maxp, shrink, shuffle):
    n_labels = pair_indptr.shape[0] - 1
    out = np.zeros(n_labels, np.int64); work = np.zeros(n_labels, np.int64)
    w = np.zeros(nf + 1, np.float32)
    most = np.max(pair_indptr[1:] - pair_indptr[:-1])
    alpha = np.zeros(most); diag = np.zeros(most); active = np.zeros(most, np.int64)
    for j in range(n_labels):
        lo, hi = pair_indptr[j], pair_indptr[j + 1]
        rows = pair_rows[lo:hi]; pos = positive[lo:hi]
        n = hi - lo; bias = nf
        for i in range(n):
            diag[i] = (1.0 if scales[rows[i]] > 0 else 0.0) + 1.0 + 0.5; alpha[i] = 0.0; active[i] = i
        w[:] = 0
        n_active = n; ceiling = np.inf; it = 0
        for _ in range(maxp):
            it += 1
            largest = 0.0; highest = -np.inf; s_at = 0
            if shuffle:
                for a in range(n_active - 1, 0, -1):
                    b = np.random.randint(0, a + 1)
                    active[a], active[b] = active[b], active[a]
            while s_at < n_active:
                i = active[s_at]; r = rows[i]; y = 1.0 if pos[i] else -1.0
                dot = 0.0
                for p in range(x_indptr[r], x_indptr[r + 1]):
                    dot += w[x_indices[p]] * x_values[p]
                work[j] += 1
                g = y * (dot * scales[r] + w[bias]) - 1.0 + 0.5 * alpha[i]
                if alpha[i] == 0.0:
                    if shrink and g > ceiling:
                        n_active -= 1
                        active[s_at], active[n_active] = active[n_active], active[s_at]
                        continue
                    pg = min(g, 0.0)
                else:
                    pg = g
                largest = max(largest, abs(pg)); highest = max(highest, pg)
                if pg != 0.0:
                    old = alpha[i]; alpha[i] = max(old - g / diag[i], 0.0); step = (alpha[i] - old) * y
                    sc = step * scales[r]
                    for p in range(x_indptr[r], x_indptr[r + 1]):
                        w[x_indices[p]] += sc * x_values[p]
                    w[bias] += step
                s_at += 1
            if largest < tol:
                if n_active == n:
                    break
                n_active = n; ceiling = np.inf; continue
            ceiling = highest if highest > 0.0 else np.inf
        out[j] = it
    return out, work

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
sc = unit_scales(train)
c = np.diff(ip)
for shrink, shuffle in ((True, True), (False, True)):
    t = time.perf_counter()
    it, work = passes_of(ip, pr, pos, train.x_indptr, train.x_indices, train.x_values, sc, train.n_features, 0.1, 20, shrink, shuffle)
    print("shrink", shrink, "shuffle", shuffle, f"{time.perf_counter()-t:.1f} s", "passes mean", it.mean(), "at 20:", (it >= 20).mean(),
          "work/pairs", work.sum() / c.sum(), "pairs-weighted passes", (it * c).sum() / c.sum(),
          "share of work in labels at 20", work[it >= 20].sum() / work.sum())
