"""Probe: the neighbours chosen by alpha x the hidden cosine + (1 - alpha) x the tf-idf cosine, on
a trained DebianDeps network (votes k 25, temperature 0.05, share 0.7). Usage: python mixsim.py CHECKPOINT"""
import sys

import numpy as np
import scipy.sparse as sp

from network_views import Views

v = Views(sys.argv[1])


def unit_rows(ds):
    X = sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, 49416))
    n = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())
    n[n == 0] = 1
    return (sp.diags(1 / n) @ X).tocsr()


Xte, XtrT = unit_rows(v.te), unit_rows(v.tr).T.tocsr()
alphas = [1.0, 0.9, 0.8, 0.7]
hits = {a: np.zeros(5) for a in alphas}
n = 0
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    sh, st = v.Ute[s0:s1] @ v.Utr.T, (Xte[s0:s1] @ XtrT).toarray()
    for a in alphas:
        votes, _ = v.votes(a * sh + (1 - a) * st)
        for h in v.hits(0.3 * p + 0.7 * votes, s0):
            if h is not None:
                hits[a] += h
    n += sum(1 for i in range(s0, s1) if v.Y[i])
for a, h in hits.items():
    print(f"alpha {a}: P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}")
