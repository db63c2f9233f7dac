"""DebianNextWord: the config's 1-epoch network blended with input-space votes (5,000 test samples)."""
import glob, numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import input_postings, input_similarities, blend_rows, unique_labels
from slidepy.metrics import evaluate_topk
from slidepy.scoring import topk_rows, tiled_logits
tr = load_dataset("/work/shared/data/DebianNextWord/train.txt"); te = load_dataset("/work/shared/data/DebianNextWord/test.txt")
model, _ = Model.load(sorted(glob.glob("nw-cfg/checkpoints/*"))[-1]); eng = model.engine; out = eng.layers[-1]
post = input_postings(tr); yp, yi = unique_labels(tr.y_indptr, tr.y_indices)
rng = np.random.default_rng(0); rows = np.sort(rng.choice(te.n_samples, 5000, replace=False)).astype(np.int64)
N = eng.n_labels; sub = te.subset(rows)
cfgs = [(100, 0.2), (400, 0.05)]; alphas = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]
res = {(c, a): (np.empty((len(rows), 5), np.int32), np.empty((len(rows), 5), np.float32)) for c in cfgs for a in alphas}
for s in range(0, len(rows), 64):
    part = rows[s:s+64]; b = len(part)
    h = np.zeros((b, eng.sizes[-1][0]), np.float32); eng.last_hidden(te, part, h)
    z = tiled_logits(h, out.weights) + out.bias; z -= z.max(1, keepdims=True); p = np.exp(z); p /= p.sum(1, keepdims=True)
    sims = input_similarities(post, te, part)
    for k, temp in cfgs:
        votes = np.zeros((b, N), np.float32)
        blend_rows(votes, np.zeros(N, np.float32), sims, np.int64(k), yp, yi, np.float64(1.0), np.float64(temp),
                   np.empty((b, k), np.int32), np.empty((b, k), np.float32))
        for a in alphas:
            ids, vals = res[((k, temp), a)]
            topk_rows(((1 - a) * p + a * votes).astype(np.float32), np.zeros(N, np.float32), ids[s:s+b], vals[s:s+b])
for key, (ids, _) in res.items():
    print(key, {m: round(v, 4) for m, v in evaluate_topk(ids, sub.y_indptr, sub.y_indices, (1, 3, 5)).items() if m.startswith("P")}, flush=True)
