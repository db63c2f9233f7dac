"""usage: dupes.py TRAIN TEST: the share of the held-out slice's inputs (and of the test split's)
found verbatim among the other training rows; and of contiguous blocks."""
import sys, numpy as np
from slidepy.data import load_dataset
from slidepy import reranker as R
tr, te = load_dataset(sys.argv[1]), load_dataset(sys.argv[2])
def keys(d, rows):
    out = []
    for r in rows:
        lo, hi = d.x_indptr[r], d.x_indptr[r + 1]
        out.append(hash((tuple(d.x_indices[lo:hi].tolist()), tuple(np.round(d.x_values[lo:hi], 4).tolist()))))
    return np.array(out)
n = tr.n_samples
held = R.validation_rows(n, 0)
rest = np.setdiff1d(np.arange(n), held)
k_rest = set(keys(tr, rest).tolist())
print("random slice in rest:", np.mean([k in k_rest for k in keys(tr, held)]))
print("test in train:", np.mean([k in k_rest for k in keys(te, np.arange(min(te.n_samples, 20000)))]))
block = np.arange(n - len(held), n)
k_front = set(keys(tr, np.arange(n - len(held))).tolist())
print("last block in the rest:", np.mean([k in k_front for k in keys(tr, block)]))
