"""Probe: the votes' share as a function of the nearest training sample's cosine, on a trained
DebianDeps network: the best share in each fifth of the test split (an upper bound, chosen on the
test answers). Usage: python gate.py CHECKPOINT"""
import sys

import numpy as np

from network_views import Views

v = Views(sys.argv[1])
ws = np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
top1 = np.zeros((v.te.n_samples, len(ws)))
p5 = np.zeros((v.te.n_samples, len(ws)))
msim = np.zeros(v.te.n_samples)
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    votes, msim[s0:s1] = v.votes(v.Ute[s0:s1] @ v.Utr.T)
    for a, w in enumerate(ws):
        for i, h in enumerate(v.hits((1 - w) * p + w * votes, s0)):
            if h is not None:
                top1[s0 + i, a], p5[s0 + i, a] = h[0], h[4]
valid = np.array([len(y) > 0 for y in v.Y])
print("global", [round(top1[valid, a].mean(), 4) for a in range(len(ws))])
bins = np.digitize(msim, np.quantile(msim[valid], [0.2, 0.4, 0.6, 0.8]))
orc1 = orc5 = 0
for k in range(5):
    m = valid & (bins == k)
    print(f"bin {k} maxsim>={msim[m].min():.3f} n {m.sum()} P@1 by w", np.round(top1[m].mean(0), 4),
          "P@5", np.round(p5[m].mean(0), 4))
    orc1 += top1[m].sum(0).max()
    orc5 += p5[m].sum(0).max()
print("oracle per-bin P@1", orc1 / valid.sum(), "P@5", orc5 / valid.sum())
