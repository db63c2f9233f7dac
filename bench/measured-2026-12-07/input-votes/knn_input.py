import sys, time, numpy as np, scipy.sparse as sp
from slidepy.data import load_dataset
def csr(ds, which="x"):
    if which == "x":
        return sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, ds.n_features))
    return sp.csr_matrix((np.ones(len(ds.y_indices), np.float32), ds.y_indices, ds.y_indptr), shape=(ds.n_samples, ds.n_labels))
def unit(m):
    n = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel()); n[n == 0] = 1
    return sp.diags(1 / n) @ m
name = sys.argv[1]
tr = load_dataset(f"/work/shared/data/{name}/train.txt"); te = load_dataset(f"/work/shared/data/{name}/test.txt")
nf = max(tr.n_features, te.n_features)
Xtr = unit(csr(tr)); Xte = unit(csr(te)); Ytr = csr(tr, "y"); Ytr.data[:] = 1; Yte = csr(te, "y")
Xtr.resize(Xtr.shape[0], nf); Xte.resize(Xte.shape[0], nf)
Ytr.resize(Ytr.shape[0], max(tr.n_labels, te.n_labels)); Yte.resize(Yte.shape[0], max(tr.n_labels, te.n_labels))
t = time.time()
for k, temp in [(25, 0.05), (25, 0.1), (50, 0.1), (10, 1.0)]:
    hits = np.zeros(3); 
    for s in range(0, Xte.shape[0], 1024):
        S = (Xte[s:s+1024] @ Xtr.T).toarray()
        idx = np.argpartition(-S, k, axis=1)[:, :k]
        sims = np.take_along_axis(S, idx, 1)
        w = np.exp((sims - sims.max(1, keepdims=True)) / temp) * (sims > 0)
        V = np.zeros((S.shape[0], Ytr.shape[1]), np.float32)
        for i in range(S.shape[0]):
            V[i] = w[i] @ Ytr[idx[i]].toarray()
        top = np.argsort(-V, 1)[:, :5]
        Y = Yte[s:s+1024].toarray()
        rel = np.take_along_axis(Y, top, 1) > 0
        for j, kk in enumerate((1, 3, 5)): hits[j] += rel[:, :kk].sum() / kk
    print(name, k, temp, np.round(hits / Xte.shape[0], 4), f"{time.time()-t:.1f}s", flush=True)
