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

K, T = 25, 0.05
counts = np.diff(tr.y_indptr)
Y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]].tolist()) for i in range(te.n_samples)]
ws = np.array([0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0])
top1 = np.zeros((te.n_samples, len(ws))); p5 = np.zeros((te.n_samples, len(ws))); msim = np.zeros(te.n_samples)
for s0 in range(0, te.n_samples, 1024):
    s1 = min(te.n_samples, s0 + 1024)
    z = Hte[s0:s1] @ W.T + b
    z -= z.max(1, keepdims=True); p = np.exp(z); p /= p.sum(1, keepdims=True)
    sims = Ute[s0:s1] @ Utr.T
    idx = np.argpartition(-sims, K, axis=1)[:, :K]
    v = np.zeros_like(p)
    for i in range(s1 - s0):
        ids = idx[i]; sm = sims[i, ids]; keep = sm > 0; ids, sm = ids[keep], sm[keep]
        if not len(ids): continue
        msim[s0+i] = sm.max()
        wts = np.exp((sm - sm.max()) / T); mass = (wts * counts[ids]).sum()
        for j, w in zip(ids, wts):
            v[i, tr.y_indices[tr.y_indptr[j]:tr.y_indptr[j + 1]]] += w / mass
    for a, w in enumerate(ws):
        sc = (1-w)*p + w*v
        top = np.argpartition(-sc, 5, axis=1)[:, :5]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sc, top, 1), 1), 1)
        for i in range(s1-s0):
            y = Y[s0+i]
            top1[s0+i, a] = top[i,0] in y
            p5[s0+i, a] = sum(t in y for t in top[i]) / 5
valid = np.array([len(y) > 0 for y in Y])
print("global", [round(top1[valid, a].mean(), 4) for a in range(len(ws))])
q = np.quantile(msim[valid], [0.2,0.4,0.6,0.8])
bins = np.digitize(msim, q)
orc1 = 0; orc5 = 0
for k in range(5):
    m = valid & (bins == k)
    r1 = top1[m].mean(0); r5 = p5[m].mean(0)
    print(f"bin {k} maxsim>={msim[m].min():.3f} n {m.sum()} P@1 by w", np.round(r1,4), "P@5", np.round(r5,4))
    orc1 += top1[m].sum(0).max(); orc5 += p5[m].sum(0).max()
print("oracle per-bin P@1", orc1/valid.sum(), "P@5", orc5/valid.sum())
