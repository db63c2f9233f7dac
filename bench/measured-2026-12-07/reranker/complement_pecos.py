"""How much a per-label linear model adds to the network: PECOS' top-20 scores blended with the
recipe model's own scores (network + its votes) on 5,000 test samples."""
import sys, glob, numpy as np, scipy.sparse as sp
sys.path.insert(0, '/work/main/scripts')
from benchkit.worker import csr_features, csr_labels
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import blended_scores
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
x, y = csr_features(tr, normalize=True), csr_labels(tr)
pm = XLinearModel.train(x, y, C=Indexer.gen(LabelEmbeddingFactory.create(y, x, method="pifa"), threads=2), threads=2)
model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
model.attach_neighbours(tr)
eng = model.engine; bank = eng.neighbours; out = eng.layers[-1]; N = eng.n_labels
rows_all = np.sort(np.random.default_rng(0).choice(te.n_samples, min(5000, te.n_samples), replace=False)).astype(np.int64)
xt = csr_features(te, normalize=True)
Yte = sp.csr_matrix((np.ones(len(te.y_indices), np.float32), te.y_indices, te.y_indptr), shape=(te.n_samples, N))
alphas = [0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0]
hits = {a: np.zeros(3) for a in alphas}
for s in range(0, len(rows_all), 500):
    rows = rows_all[s:s + 500]
    h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32); eng.last_hidden(te, rows, h)
    base = blended_scores(h, out.weights, out.bias, bank, te, rows)
    pr = pm.predict(xt[rows], only_topk=20, threads=2).toarray()[:, :N]
    pr = pr / np.maximum(pr.sum(1, keepdims=True), 1e-9)  # a distribution over its top 20
    Y = Yte[rows].toarray()
    for a in alphas:
        S = (1 - a) * base + a * pr
        top = np.argsort(-S, 1)[:, :5]; rel = np.take_along_axis(Y, top, 1) > 0
        for j, k in enumerate((1, 3, 5)): hits[a][j] += rel[:, :k].sum() / k
for a, v in hits.items(): print("pecos share", a, np.round(v / len(rows_all), 4), flush=True)
