"""What the probes here share: a trained DebianDeps network's hidden vectors of both splits, its
softmax, the neighbours' votes as slidepy's model.neighbours computes them, and P@1..5 counting."""
import os

import numpy as np

from slidepy.data import load_dataset
from slidepy.model import Model

# another XC train/test pair (a directory ending in /) through the DATA variable
DATA = os.environ.get("DATA", "/work/main/../shared/data/DebianDeps/")


def unit(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return x / n


class Views:
    def __init__(self, checkpoint):
        model, _ = Model.load(checkpoint)
        self.eng = model.engine
        self.tr, self.te = load_dataset(DATA + "train.txt"), load_dataset(DATA + "test.txt")
        self.D = self.eng.sizes[-1][0]
        self.Htr, self.Hte = self.hidden(self.tr), self.hidden(self.te)
        self.Utr, self.Ute = unit(self.Htr), unit(self.Hte)
        self.W, self.b = self.eng.layers[-1].weights, self.eng.layers[-1].bias
        self.N = self.W.shape[0]
        self.counts = np.diff(self.tr.y_indptr)
        te = self.te
        self.Y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]].tolist()) for i in range(te.n_samples)]

    def hidden(self, ds):
        out = np.zeros((ds.n_samples, self.D), np.float32)
        for s in range(0, ds.n_samples, 4096):
            rows = np.arange(s, min(ds.n_samples, s + 4096), dtype=np.int64)
            self.eng.last_hidden(ds, rows, out[s:s + rows.shape[0]])
        return out

    def softmax(self, s0, s1):
        z = self.Hte[s0:s1] @ self.W.T + self.b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def votes(self, sims, k=25, temperature=0.05):
        """Each row's votes from its k most similar training samples (similarities `sims`, one
        row per test sample), each counting exp(similarity / temperature), shared over its labels."""
        tr = self.tr
        idx = np.argpartition(-sims, k, axis=1)[:, :k]
        v = np.zeros((sims.shape[0], self.N), np.float32)
        best = np.zeros(sims.shape[0])
        for i in range(sims.shape[0]):
            ids = idx[i]
            sm = sims[i, ids]
            keep = sm > 0
            ids, sm = ids[keep], sm[keep]
            if not len(ids):
                continue
            best[i] = sm.max()
            wts = np.exp((sm - sm.max()) / temperature)
            mass = (wts * self.counts[ids]).sum()
            for j, w in zip(ids, wts):
                v[i, tr.y_indices[tr.y_indptr[j]:tr.y_indptr[j + 1]]] += w / mass
        return v, best

    def hits(self, scores, s0):
        """(rows, 5) precision at 1..5 of each row's top 5 (rows without labels: None)."""
        top = np.argpartition(-scores, 5, axis=1)[:, :5]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        out = []
        for i in range(scores.shape[0]):
            y = self.Y[s0 + i]
            out.append(np.cumsum([t in y for t in top[i]]) / np.arange(1, 6) if y else None)
        return out

    def blocks(self, size=1024):
        for s0 in range(0, self.te.n_samples, size):
            yield s0, min(self.te.n_samples, s0 + size)
