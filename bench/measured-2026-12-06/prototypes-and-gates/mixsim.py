"""Probe: label prototypes in the hidden space (the normalised mean of each label's positives'
unit hidden vectors), scored by cosine / temperature and blended beside the softmax and the
neighbours' votes, on a trained DebianDeps network."""
import sys, numpy as np
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

import scipy.sparse as sp
def csr(ds):
    return sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, int(max(ds.x_indices.max(), 0)) + 1 if False else 49416))
Xtr, Xte = csr(tr), csr(te)
def unit_sp(X):
    n = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel()); n[n == 0] = 1
    return sp.diags(1 / n) @ X
Xtr, Xte = unit_sp(Xtr).tocsr(), unit_sp(Xte).tocsr()
XtrT = Xtr.T.tocsr()
K, T = 25, 0.05
counts = np.diff(tr.y_indptr)
Y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]].tolist()) for i in range(te.n_samples)]
alphas = [1.0, 0.9, 0.8, 0.7]
hits = {a: np.zeros(5) for a in alphas}; n = 0
for s0 in range(0, te.n_samples, 1024):
    s1 = min(te.n_samples, s0 + 1024)
    z = Hte[s0:s1] @ W.T + b
    z -= z.max(1, keepdims=True); p = np.exp(z); p /= p.sum(1, keepdims=True)
    sh = Ute[s0:s1] @ Utr.T
    st = (Xte[s0:s1] @ XtrT).toarray()
    for a in alphas:
        sims = a * sh + (1 - a) * st
        idx = np.argpartition(-sims, K, axis=1)[:, :K]
        v = np.zeros_like(p)
        for i in range(s1 - s0):
            ids = idx[i]; sm = sims[i, ids]; keep = sm > 0; ids, sm = ids[keep], sm[keep]
            if not len(ids): continue
            wts = np.exp((sm - sm.max()) / T); mass = (wts * counts[ids]).sum()
            for j, w in zip(ids, wts):
                v[i, tr.y_indices[tr.y_indptr[j]:tr.y_indptr[j + 1]]] += w / mass
        sc = 0.3 * p + 0.7 * v
        top = np.argpartition(-sc, 5, axis=1)[:, :5]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sc, top, 1), 1), 1)
        for i in range(s1 - s0):
            y = Y[s0 + i]
            if not y: continue
            hits[a] += np.cumsum([t in y for t in top[i]]) / np.arange(1, 6)
    n += sum(1 for i in range(s0, s1) if Y[i])
for a, h in hits.items():
    print(f"alpha {a}: P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}")
