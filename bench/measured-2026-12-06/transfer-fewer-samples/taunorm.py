"""Probe: tau-normalised output rows (Kang et al. 2020, 'Decoupling representation and classifier'):
score_j = h . w_j / ||w_j||^tau + b_j * bscale, with and without the hidden-space votes (share 0.7).
Usage: DATA=dir/ python taunorm.py CKPT"""
import os
import sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "prototypes-and-gates"))
from network_views import Views  # noqa: E402

v = Views(sys.argv[1])
norms = np.linalg.norm(v.W, axis=1)
print("row norms: min %.3f median %.3f max %.3f; corr with log count %.3f" % (
    norms.min(), np.median(norms), norms.max(),
    np.corrcoef(norms, np.log1p(np.bincount(v.tr.y_indices, minlength=v.N)))[0, 1]))
W0, b0 = v.W.copy(), v.b.copy()
taus = (0.0, 0.25, 0.5, 0.75, 1.0)
hits = {(t, w): np.zeros(5) for t in taus for w in (0.0, 0.7)}
n = 0
vcache = {}
for s0, s1 in v.blocks():
    vh, _ = v.votes(v.Ute[s0:s1] @ v.Utr.T)
    for t in taus:
        v.W = W0 / np.maximum(norms, 1e-6)[:, None] ** t
        v.b = b0
        p = v.softmax(s0, s1)
        for w in (0.0, 0.7):
            for h in v.hits((1 - w) * p + w * vh, s0):
                if h is not None:
                    hits[(t, w)] += h
    n += sum(1 for i in range(s0, s1) if v.Y[i])
for (t, w), h in hits.items():
    print(f"tau {t:4} votes {w}: P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}", flush=True)
