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
# prototypes: sum of unit hidden vectors of each label's positives
C = np.zeros((N, D), np.float64)
rows = np.repeat(np.arange(tr.n_samples), np.diff(tr.y_indptr))
np.add.at(C, tr.y_indices, Utr[rows])
has = np.linalg.norm(C, axis=1) > 0
C = unit(C).astype(np.float32)
K, T = 25, 0.05
counts = np.diff(tr.y_indptr)
def blocks(s0, s1):
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
    cs = Ute[s0:s1] @ C.T
    qs = {}
    for T2 in (0.02, 0.05, 0.1):
        q = np.where(has, cs / T2, -np.inf); q -= q.max(1, keepdims=True); q = np.exp(q); q /= q.sum(1, keepdims=True)
        qs[T2] = q
    return p, v, qs
Y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]].tolist()) for i in range(te.n_samples)]
variants = [("net+votes 0.7", 0.7, 0.0, 0.05)]
for T2 in (0.02, 0.05, 0.1):
    variants.append((f"proto alone T {T2}", 0.0, 1.0, T2))
    for u in (0.1, 0.2, 0.3):
        variants.append((f"votes 0.7 proto {u} T {T2} (p shrinks)", 0.7, u, T2))
        variants.append((f"votes 0.6 proto {u} T {T2}", 0.6, u, T2))
hits = {v[0]: np.zeros(5) for v in variants}; n = 0
for s0 in range(0, te.n_samples, 1024):
    s1 = min(te.n_samples, s0 + 1024)
    p, v, qs = blocks(s0, s1)
    for name, w, u, T2 in variants:
        pw = max(0.0, 1 - w - u) if "shrinks" in name or "alone" in name else 1 - w
        sc = pw * p + w * v + u * qs[T2]
        top = np.argpartition(-sc, 5, axis=1)[:, :5]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sc, top, 1), 1), 1)
        for i in range(s1 - s0):
            y = Y[s0 + i]
            if not y: continue
            h = np.cumsum([t in y for t in top[i]])
            hits[name] += h / np.arange(1, 6)
    n += sum(1 for i in range(s0, s1) if Y[i])
    print("block", s0, flush=True)
for name, h in hits.items():
    print(f"{name:45s} P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}")
