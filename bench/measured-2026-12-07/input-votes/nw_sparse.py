"""The input-space votes on DebianNextWord through the sparse path (blend_input), timed, beside nw_knn.py's dense scan."""
import time, numpy as np
from slidepy.data import load_dataset
from slidepy.neighbours import NeighbourBank, input_postings, blend_input, unique_labels
from slidepy.metrics import evaluate_topk
from slidepy.scoring import topk_rows
tr = load_dataset("/work/shared/data/DebianNextWord/train.txt"); te = load_dataset("/work/shared/data/DebianNextWord/test.txt")
post = input_postings(tr); yp, yi = unique_labels(tr.y_indptr, tr.y_indices)
rng = np.random.default_rng(0); rows = np.sort(rng.choice(te.n_samples, 5000, replace=False)).astype(np.int64)
N = max(tr.n_labels, te.n_labels)
for k, temp in [(25, 0.05), (100, 0.2)]:
    bank = NeighbourBank(np.zeros((tr.n_samples, 0), np.float32), yp, yi, k, 1.0, temp, space="input", postings=post)
    t = time.time(); ids = np.empty((len(rows), 5), np.int32); vals = np.empty((len(rows), 5), np.float32)
    for s in range(0, len(rows), 256):
        part = rows[s:s+256]; votes = np.zeros((len(part), N), np.float32)
        blend_input(votes, np.zeros(N, np.float32), bank, te, part, 1.0)
        topk_rows(votes, np.zeros(N, np.float32), ids[s:s+256], vals[s:s+256])
    sub = te.subset(rows)
    print(k, temp, {m: round(v, 4) for m, v in evaluate_topk(ids, sub.y_indptr, sub.y_indices, (1, 3, 5)).items() if m.startswith("P")}, f"{time.time()-t:.1f}s", flush=True)
