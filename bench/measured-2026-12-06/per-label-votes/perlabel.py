"""Probe: the votes' share per label (the recipe's rule applied to each label's own positives)
against one share for all labels, on a trained DebianDeps network."""
import sys, numpy as np
sys.path.insert(0, "/work/main")
from slidepy.model import Model
from slidepy.data import load_dataset
ck = sys.argv[1]
model, meta = Model.load(ck)
eng = model.engine
tr = load_dataset("/work/main/../shared/data/DebianDeps/train.txt")
te = load_dataset("/work/main/../shared/data/DebianDeps/test.txt")
D = eng.sizes[-1][0]
def hidden(ds):
    out = np.zeros((ds.n_samples, D), np.float32)
    for s in range(0, ds.n_samples, 4096):
        rows = np.arange(s, min(ds.n_samples, s + 4096), dtype=np.int64)
        eng.last_hidden(ds, rows, out[s:s + rows.shape[0]])
    return out
Htr, Hte = hidden(tr), hidden(te)
def unit(x):
    n = np.linalg.norm(x, axis=1, keepdims=True); n[n == 0] = 1; return x / n
Utr, Ute = unit(Htr), unit(Hte)
W, b = eng.layers[-1].weights, eng.layers[-1].bias
N = W.shape[0]
m = np.bincount(tr.y_indices, minlength=N).astype(np.float64)
K, T = 25, 0.05
counts = np.diff(tr.y_indptr)
def scores_block(s0, s1):
    z = Hte[s0:s1] @ W.T + b
    z -= z.max(1, keepdims=True); p = np.exp(z); p /= p.sum(1, keepdims=True)
    sims = Ute[s0:s1] @ Utr.T
    idx = np.argpartition(-sims, K, axis=1)[:, :K]
    v = np.zeros_like(p)
    for i in range(s1 - s0):
        ids = idx[i]; sm = sims[i, ids]; keep = sm > 0; ids, sm = ids[keep], sm[keep]
        if not len(ids): continue
        wts = np.exp((sm - sm.max()) / T); mass = (wts * counts[ids]).sum()
        for j, w in zip(ids, wts):
            v[i, tr.y_indices[tr.y_indptr[j]:tr.y_indptr[j + 1]]] += w / mass
    return p, v
def truth_sets(ds):
    return [set(ds.y_indices[ds.y_indptr[i]:ds.y_indptr[i + 1]].tolist()) for i in range(ds.n_samples)]
Y = truth_sets(te)
variants = {
  "global 0.7": np.full(N, 0.7),
  "global 0.5": np.full(N, 0.5),
  "per-label 2.2/sqrt(m_l) in [0.3,0.7]": np.clip(2.2 / np.sqrt(np.maximum(m, 1)), 0.3, 0.7),
  "per-label 2.2/sqrt(m_l) in [0.1,0.9]": np.clip(2.2 / np.sqrt(np.maximum(m, 1)), 0.1, 0.9),
  "per-label 2.2/sqrt(m_l) in [0.3,0.9]": np.clip(2.2 / np.sqrt(np.maximum(m, 1)), 0.3, 0.9),
}
hits = {k: np.zeros(5) for k in variants}; n = 0
for s0 in range(0, te.n_samples, 1024):
    s1 = min(te.n_samples, s0 + 1024)
    p, v = scores_block(s0, s1)
    for name, w in variants.items():
        sc = (1 - w) * p + w * v
        top = np.argsort(-sc, axis=1)[:, :5]
        for i in range(s1 - s0):
            y = Y[s0 + i]
            if not y: continue
            h = np.cumsum([t in y for t in top[i]])
            hits[name] += h / np.arange(1, 6)
    n += sum(1 for i in range(s0, s1) if Y[i])
for name, h in hits.items():
    print(f"{name:40s} P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}")
