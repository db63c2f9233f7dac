"""Input-space votes alone on DebianNextWord (a test subset), with slidepy's kernels."""
import time, numpy as np
from slidepy.data import load_dataset
from slidepy.neighbours import input_postings, input_similarities, blend_rows, unique_labels
from slidepy.metrics import evaluate_topk
from slidepy.scoring import topk_rows
tr = load_dataset("/work/shared/data/DebianNextWord/train.txt"); te = load_dataset("/work/shared/data/DebianNextWord/test.txt")
t = time.time(); post = input_postings(tr); print("postings", f"{time.time()-t:.1f}s", post.rows.shape)
yp, yi = unique_labels(tr.y_indptr, tr.y_indices)
rng = np.random.default_rng(0); rows = np.sort(rng.choice(te.n_samples, 5000, replace=False)).astype(np.int64)
N = max(tr.n_labels, te.n_labels)
for k, temp in [(25, 0.05), (100, 0.05), (400, 0.05), (100, 0.2)]:
    t = time.time(); ids = np.empty((len(rows), 5), np.int32); vals = np.empty((len(rows), 5), np.float32)
    for s in range(0, len(rows), 64):
        part = rows[s:s+64]
        sims = input_similarities(post, te, part)
        votes = np.zeros((len(part), N), np.float32)
        blend_rows(votes, np.zeros(N, np.float32), sims, np.int64(k), yp, yi, np.float64(1.0), np.float64(temp),
                   np.empty((len(part), k), np.int32), np.empty((len(part), k), np.float32))
        topk_rows(votes, np.zeros(N, np.float32), ids[s:s+64], vals[s:s+64])
    sub = te.subset(rows)
    print(k, temp, {m: round(v, 4) for m, v in evaluate_topk(ids, sub.y_indptr, sub.y_indices, (1, 3, 5)).items() if m.startswith("P")}, f"{time.time()-t:.1f}s", flush=True)
