"""A dense non-text XC shape: 128-float embeddings -> 10,000 labels (Zipf popularity, 1-3 a sample).
Each label has a prototype direction; a sample is the normalised mean of its labels' prototypes plus
noise, so that neighbours share labels but no feature names a label (unlike bags of words)."""
import sys
import numpy as np
out, n_train, n_test, L, D, noise, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), 0
rng = np.random.default_rng(seed)
proto = rng.standard_normal((L, D)).astype(np.float32)
pop = 1.0 / (np.arange(L) + 5.0); pop /= pop.sum(); cdf = np.cumsum(pop)
def write(path, n):
    with open(path, "w") as f:
        f.write(f"{n} {D} {L}\n")
        for _ in range(n):
            k = rng.integers(1, 4)
            labs = np.unique(np.minimum(np.searchsorted(cdf, rng.random(k)), L - 1))
            x = proto[labs].mean(axis=0) + noise * rng.standard_normal(D)
            x /= np.linalg.norm(x)
            f.write(",".join(map(str, labs)) + " " + " ".join(f"{j}:{v:.4f}" for j, v in enumerate(x)) + "\n")
import os; os.makedirs(out, exist_ok=True)
write(f"{out}/train.txt", n_train); write(f"{out}/test.txt", n_test)
