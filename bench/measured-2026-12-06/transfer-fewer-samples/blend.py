"""Probe: on a trained network, P@1/3/5 of the softmax alone, of the hidden-space votes at several
shares, and of votes from tf-idf (input-space) neighbours. Usage: DATA=dir/ python blend.py CKPT"""
import os
import sys
import numpy as np
import scipy.sparse as sp
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "prototypes-and-gates"))
from network_views import Views  # noqa: E402

v = Views(sys.argv[1])
F = int(max(v.tr.x_indices.max(), v.te.x_indices.max())) + 1

def unit_rows(ds):
    X = sp.csr_matrix((ds.x_values, ds.x_indices, ds.x_indptr), shape=(ds.n_samples, F))
    n = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel()); n[n == 0] = 1
    return (sp.diags(1 / n) @ X).tocsr()

Xte, XtrT = unit_rows(v.te), unit_rows(v.tr).T.tocsr()
combos = {"net": (1, 0, 0)}
for w in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0):
    combos[f"hid{w}"] = (1 - w, w, 0)
for w in (0.3, 0.5, 0.7):
    combos[f"tfidf{w}"] = (1 - w, 0, w)
for a, b in ((0.2, 0.4), (0.3, 0.5), (0.2, 0.6), (0.1, 0.6)):
    combos[f"both{b}+{1-a-b:.1f}"] = (a, b, 1 - a - b)
hits = {c: np.zeros(5) for c in combos}
n = 0
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    vh, _ = v.votes(v.Ute[s0:s1] @ v.Utr.T)
    vt, _ = v.votes((Xte[s0:s1] @ XtrT).toarray())
    for c, (a, b, d) in combos.items():
        for h in v.hits(a * p + b * vh + d * vt, s0):
            if h is not None:
                hits[c] += h
    n += sum(1 for i in range(s0, s1) if v.Y[i])
for c, h in hits.items():
    print(f"{c:14s} P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}", flush=True)
