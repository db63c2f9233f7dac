"""Leave-one-out votes-only P@1 on training rows, hidden vs input space, beside the same on test."""
import sys, glob, numpy as np, scipy.sparse as sp
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import unit_rows
name, trp, tep = sys.argv[1], sys.argv[2], sys.argv[3]
tr = load_dataset(trp); te = load_dataset(tep)
model, _ = Model.load(sorted(glob.glob(f"rec-{name}/checkpoints/*"))[-1])
model.attach_neighbours(tr); eng = model.engine; bank = eng.neighbours
F = max(tr.n_features, te.n_features); N = eng.n_labels
def csr(ds): return sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, F))
def unit(m):
    n = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel()); n[n == 0] = 1
    return (sp.diags(1 / n) @ m).tocsr()
Xtr, Xte = unit(csr(tr)), unit(csr(te))
Ytr = sp.csr_matrix((np.ones(len(bank.y_indices), np.float32), bank.y_indices, bank.y_indptr), shape=(tr.n_samples, N))
Yte = sp.csr_matrix((np.ones(len(te.y_indices), np.float32), te.y_indices, te.y_indptr), shape=(te.n_samples, N))
def top1(S, k=25, temp=0.05):
    idx = np.argpartition(-S, k, axis=1)[:, :k]; sims = np.take_along_axis(S, idx, 1)
    w = np.exp((sims - sims.max(1, keepdims=True)) / temp) * (sims > 0)
    out = np.empty(S.shape[0], np.int64)
    for i in range(S.shape[0]):
        v = np.asarray(w[i] @ Ytr[idx[i]].toarray()).ravel(); out[i] = v.argmax() if v.max() > 0 else -1
    return out
def p1(pred, Y): return np.mean([Y[i, p] > 0 if p >= 0 else False for i, p in enumerate(pred)])
rng = np.random.default_rng(0); R = np.sort(rng.choice(tr.n_samples, 1000, replace=False))
Sh = bank.vectors[R] @ bank.vectors.T; Sh[np.arange(len(R)), R] = -np.inf
Si = (Xtr[R] @ Xtr.T).toarray(); Si[np.arange(len(R)), R] = -np.inf
print(name, "LOO hidden", p1(top1(Sh), Ytr[R]), "input", p1(top1(Si), Ytr[R]))
T = np.sort(rng.choice(te.n_samples, min(2000, te.n_samples), replace=False))
h = np.zeros((len(T), eng.sizes[-1][0]), np.float32); eng.last_hidden(te, T.astype(np.int64), h)
Th = unit_rows(h) @ bank.vectors.T; Ti = (Xte[T] @ Xtr.T).toarray()
print(name, "test hidden", p1(top1(Th), Yte[T]), "input", p1(top1(Ti), Yte[T]), flush=True)
