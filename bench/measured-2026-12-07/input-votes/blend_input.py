"""Potential of input-space votes on top of the recipe model's blended scores (test split)."""
import sys, glob, numpy as np, scipy.sparse as sp
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import blended_scores
name = sys.argv[1]
tr = load_dataset(f"/work/shared/data/{name}/train.txt"); te = load_dataset(f"/work/shared/data/{name}/test.txt")
ck = sorted(glob.glob(f"rec-{name}/checkpoints/*"))[-1]
model, meta = Model.load(ck)
model.attach_neighbours(tr)
eng = model.engine; bank = eng.neighbours; out = eng.layers[-1]
N = eng.n_labels; nf = eng.sizes[0][0] if False else None
def csr(ds):
    return sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, max(tr.n_features, te.n_features)))
def unit(m):
    n = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel()); n[n == 0] = 1
    return sp.diags(1 / n) @ m
Xtr, Xte = unit(csr(tr)), unit(csr(te))
Ytr = sp.csr_matrix((np.ones(len(bank.y_indices), np.float32), bank.y_indices, bank.y_indptr), shape=(tr.n_samples, N))
Yte = sp.csr_matrix((np.ones(len(te.y_indices), np.float32), te.y_indices, te.y_indptr), shape=(te.n_samples, N))
alphas = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
cfgs = [(25, 0.05), (10, 1.0), (25, 0.1)]
hits = {(c, a): np.zeros(3) for c in cfgs for a in alphas}
hits_none = np.zeros(3)
def score(S, Y, acc):
    top = np.argsort(-S, 1)[:, :5]
    rel = np.take_along_axis(Y, top, 1) > 0
    for j, kk in enumerate((1, 3, 5)): acc[j] += rel[:, :kk].sum() / kk
B = 512
for s in range(0, te.n_samples, B):
    rows = np.arange(s, min(te.n_samples, s + B), dtype=np.int64)
    h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32)
    eng.last_hidden(te, rows, h, None) if False else eng.last_hidden(te, rows, h)
    base = blended_scores(h, out.weights, out.bias, bank)
    Y = Yte[rows].toarray()
    Sim = (Xte[rows] @ Xtr.T).toarray()
    for (k, temp) in cfgs:
        idx = np.argpartition(-Sim, k, axis=1)[:, :k]
        sims = np.take_along_axis(Sim, idx, 1)
        w = np.exp((sims - sims.max(1, keepdims=True)) / temp) * (sims > 0)
        V = np.zeros_like(base)
        for i in range(len(rows)):
            V[i] = w[i] @ Ytr[idx[i]].toarray()
        tot = V.sum(1, keepdims=True); tot[tot == 0] = 1; V /= tot  # a distribution, like the blended scores
        for a in alphas:
            score((1 - a) * base + a * V, Y, hits[((k, temp), a)])
n = te.n_samples
for key, v in hits.items(): print(name, key, np.round(v / n, 4), flush=True)
