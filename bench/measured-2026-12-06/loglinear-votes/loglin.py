"""Probe: how the network's softmax and the neighbours' votes combine, on a trained DebianDeps
network: the shipped linear blend (1 - w) p + w v against a log-linear one (product of powers),
(1 - w) log(p + e) + w log(v + e), and a blend of the two's ranks. Usage: python loglin.py CHECKPOINT"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "prototypes-and-gates"))
from network_views import Views  # noqa: E402 - the earlier probes' helper

v = Views(sys.argv[1])
n = v.te.n_samples
kinds = {"linear 0.7": lambda p, q: 0.3 * p + 0.7 * q,
         "linear 0.6": lambda p, q: 0.4 * p + 0.6 * q}
for w in (0.75, 0.8, 0.85, 0.9):
    for e in (1e-4, 1e-3):
        kinds[f"loglin w {w} e {e}"] = (lambda w, e: lambda p, q: (1 - w) * np.log(p + e) + w * np.log(q + e))(w, e)
for a in ():
    # the linear blend plus a bonus for agreement: p * q
    kinds[f"linear 0.7 + {a} pq"] = (lambda a: lambda p, q: 0.3 * p + 0.7 * q + a * np.sqrt(p * q))(a)
sums = {k: np.zeros(5) for k in kinds}
count = 0
for s0, s1 in v.blocks():
    p = v.softmax(s0, s1)
    q, _ = v.votes(v.Ute[s0:s1] @ v.Utr.T)
    for name, f in kinds.items():
        for h in v.hits(f(p, q), s0):
            if h is not None:
                sums[name] += h
    count += sum(1 for i in range(s0, s1) if v.Y[i])
for name in kinds:
    r = sums[name] / count
    print(f"{name:28s} P@1 {r[0]:.4f} P@3 {r[2]:.4f} P@5 {r[4]:.4f}")
