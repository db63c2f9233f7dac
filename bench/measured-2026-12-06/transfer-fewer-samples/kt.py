"""Probe: the hidden-space votes' k and temperature on a trained network, shares 0.7 and 0.9.
Usage: DATA=dir/ python kt.py CKPT"""
import os
import sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "prototypes-and-gates"))
from network_views import Views  # noqa: E402

v = Views(sys.argv[1])
grid = [(10, 0.05), (25, 0.05), (50, 0.05), (25, 0.03), (25, 0.1), (50, 0.1)]
hits = {(k, t, w): np.zeros(5) for k, t in grid for w in (0.7, 0.9)}
n = 0
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    sims = v.Ute[s0:s1] @ v.Utr.T
    for k, t in grid:
        vh, _ = v.votes(sims, k=k, temperature=t)
        for w in (0.7, 0.9):
            for h in v.hits((1 - w) * p + w * vh, s0):
                if h is not None:
                    hits[(k, t, w)] += h
    n += sum(1 for i in range(s0, s1) if v.Y[i])
for key, h in hits.items():
    print(key, f"P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}", flush=True)
