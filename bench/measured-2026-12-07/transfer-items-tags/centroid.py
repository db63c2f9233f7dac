"""Potential of input-space label centroids (each label: the normalised sum of its training
positives' unit input rows; a sample's score for it: the cosine) beside the model's own blended
scores (network + its neighbours' votes as configured), on up to 5,000 test samples."""
import sys, glob, numpy as np, scipy.sparse as sp
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import blended_scores
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
model.attach_neighbours(tr)
eng = model.engine; bank = eng.neighbours; out = eng.layers[-1]; N = eng.n_labels
F = max(tr.n_features, te.n_features)
def unit(ds):
    m = sp.csr_matrix((ds.x_values.astype(np.float32), ds.x_indices, ds.x_indptr), shape=(ds.n_samples, F))
    m.sum_duplicates(); n = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel()); n[n == 0] = 1
    return sp.diags(1 / n) @ m
Xtr, Xte = unit(tr), unit(te)
Ytr = sp.csr_matrix((np.ones(len(tr.y_indices), np.float32), tr.y_indices, tr.y_indptr), shape=(tr.n_samples, N))
C = (Ytr.T @ Xtr).tocsr(); cn = np.sqrt(np.asarray(C.multiply(C).sum(1)).ravel()); cn[cn == 0] = 1
C = sp.diags(1 / cn) @ C
print("centroids nnz", C.nnz, flush=True)
Yte = sp.csr_matrix((np.ones(len(te.y_indices), np.float32), te.y_indices, te.y_indptr), shape=(te.n_samples, N))
rows_all = np.random.default_rng(0).choice(te.n_samples, min(5000, te.n_samples), replace=False)
alphas = [0, 0.1, 0.2, 0.3, 0.5, 1.0]; temps = [0.02, 0.05, 0.1]
hits = {(t, a): np.zeros(3) for t in temps for a in alphas}
def score(S, Y, acc):
    top = np.argpartition(-S, 5, 1)[:, :5]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1), 1)
    rel = np.take_along_axis(Y, top, 1) > 0
    for j, kk in enumerate((1, 3, 5)): acc[j] += rel[:, :kk].sum() / kk
for s in range(0, len(rows_all), 500):
    rows = np.sort(rows_all[s:s + 500]).astype(np.int64)
    h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32)
    eng.last_hidden(te, rows, h)
    base = blended_scores(h, out.weights, out.bias, bank)
    Y = Yte[rows].toarray(); cos = (Xte[rows] @ C.T).toarray()
    for t in temps:
        z = np.exp((cos - cos.max(1, keepdims=True)) / t); z /= z.sum(1, keepdims=True)
        for a in alphas:
            score((1 - a) * base + a * z, Y, hits[(t, a)])
n = len(rows_all)
for key, v in hits.items(): print(key, np.round(v / n, 4), flush=True)
