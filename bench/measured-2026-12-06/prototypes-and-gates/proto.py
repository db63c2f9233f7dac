"""Probe: label prototypes in the hidden space (the normalised mean of each label's positives'
unit hidden vectors), scored by cosine / temperature and blended beside the softmax and the
neighbours' votes, on a trained DebianDeps network. Usage: python proto.py CHECKPOINT"""
import sys

import numpy as np

from network_views import Views, unit

v = Views(sys.argv[1])
C = np.zeros((v.N, v.D), np.float64)  # each label's sum of its positives' unit hidden vectors
np.add.at(C, v.tr.y_indices, v.Utr[np.repeat(np.arange(v.tr.n_samples), v.counts)])
has = np.linalg.norm(C, axis=1) > 0
C = unit(C).astype(np.float32)
variants = [("net+votes 0.7", 0.7, 0.0, 0.05)]
for T2 in (0.02, 0.05, 0.1):
    variants.append((f"proto alone T {T2}", 0.0, 1.0, T2))
    for u in (0.1, 0.2, 0.3):
        variants.append((f"votes 0.7 proto {u} T {T2} (p shrinks)", 0.7, u, T2))
        variants.append((f"votes 0.6 proto {u} T {T2}", 0.6, u, T2))
hits = {name: np.zeros(5) for name, *_ in variants}
n = 0
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    votes, _ = v.votes(v.Ute[s0:s1] @ v.Utr.T)
    cs = v.Ute[s0:s1] @ C.T
    qs = {}
    for T2 in (0.02, 0.05, 0.1):
        q = np.where(has, cs / T2, -np.inf)
        q = np.exp(q - q.max(1, keepdims=True))
        qs[T2] = q / q.sum(1, keepdims=True)
    for name, w, u, T2 in variants:
        pw = max(0.0, 1 - w - u) if "shrinks" in name or "alone" in name else 1 - w
        for h in v.hits(pw * p + w * votes + u * qs[T2], s0):
            if h is not None:
                hits[name] += h
    n += sum(1 for i in range(s0, s1) if v.Y[i])
for name, h in hits.items():
    print(f"{name:45s} P@1 {h[0]/n:.4f} P@3 {h[2]/n:.4f} P@5 {h[4]/n:.4f}")
