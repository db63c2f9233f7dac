"""A dense, non-text extreme-classification set: 256 real features (embeddings, sensor
summaries), 10,000 labels with a long tail, 1-3 labels a sample. Each label has a prototype;
a sample is the mean of its labels' prototypes plus noise, standardised per feature."""
import sys
import numpy as np

rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
out = sys.argv[1]
D, L, n_train, n_test = 256, 10_000, 40_000, 10_000
protos = rng.standard_normal((L, D)).astype(np.float32)
# labels' frequencies: Zipf-like
p = 1.0 / np.arange(1, L + 1) ** 0.8
p /= p.sum()

def make(n):
    k = rng.integers(1, 4, size=n)
    labs = [np.unique(rng.choice(L, size=ki, p=p)) for ki in k]
    x = np.stack([protos[l].mean(0) for l in labs]) + 0.9 * rng.standard_normal((n, D)).astype(np.float32)
    return x, labs

xtr, ytr = make(n_train)
xte, yte = make(n_test)
mu, sd = xtr.mean(0), xtr.std(0)
for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
    x = (x - mu) / sd
    with open(f"{out}/{name}.txt", "w") as f:
        f.write(f"{x.shape[0]} {D} {L}\n")
        for xi, yi in zip(x, y):
            f.write(",".join(map(str, yi)) + " " + " ".join(f"{j}:{v:.4g}" for j, v in enumerate(xi)) + "\n")
