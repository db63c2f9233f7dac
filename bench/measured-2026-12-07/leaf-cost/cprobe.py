"""Joint choice of the SVM's C with (share, depth) on the held-out slice; test P@k at the choices."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
from slidepy.rng import generator
run, trp, tep = sys.argv[1:4]
costs = [float(c) for c in sys.argv[4].split(",")]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train = tr.subset(R.training_rows(tr.n_samples, held))
val = tr.subset(held)
N = model.engine.n_labels
rows = np.arange(train.n_samples, dtype=np.int64)
n_rows, indexed = R.shortlist_plan(train.n_samples, N, model.engine.sizes[-1][0], model.engine.lsh[-1] is not None)
if n_rows < train.n_samples:
    rows = np.sort(generator(0, R.SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False)).astype(np.int64)
short = model.engine.predict(train, rows, k=100, use_lsh=indexed, votes=False)[0]
per = R.random_negatives_per_label(N, train.n_samples, train.y_indices.shape[0])
neg = R.random_negatives(N, np.arange(train.n_samples), per, generator(0, R.RANDOM_STREAM))
model.attach_neighbours(train)
depths = tuple(sorted({min(d * 50, N) for d in R.DEPTHS}))
vrows = np.arange(val.n_samples, dtype=np.int64)
ids, scores, _ = model.engine.predict(val, vrows, k=depths[-1])
logs = model._log_scores(scores, None)
fitted, per_sample, keys = {}, [], []
for c in costs:
    t = time.perf_counter()
    leaves = R.fit_leaves(train, short, model.engine.step, rows=rows, n_labels=N, negatives=neg, cost=c)
    print(f"C {c}: fit {time.perf_counter() - t:.2f} s", flush=True)
    fitted[c] = leaves
    ls = R.score_leaves(leaves, val, vrows, ids)
    for d in depths:
        for s in R.SHARES:
            top = R.rerank_top(ids, logs, ls, s, d, 5)[0]
            per_sample.append(R.sample_precision(top, val.y_indptr, val.y_indices)); keys.append((c, s, d))
P = np.stack(per_sample); means = P.mean(1)
def rule(allowed):
    idx = [i for i, k in enumerate(keys) if k[0] in allowed]
    best = max(idx, key=lambda i: means[i])
    base = keys.index((costs[0], R.WEIGHT, depths[0]))
    gain = P[best] - P[base]
    ok = gain.mean() > R.EVIDENCE * gain.std(ddof=1) / np.sqrt(len(gain))
    return keys[best] if ok else keys[base], keys[best], means[best], means[base], gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))
for allowed in ([costs[0]], costs[:2], costs):
    chosen, best, mb, m0, z = rule(allowed)
    c, s, d = chosen
    model.leaves = fitted[c]._replace(share=s, depth=d)
    r = model.evaluate(te)
    print(f"costs {allowed}: best {best} {mb:.4f} vs base {m0:.4f} (z {z:.1f}) -> {chosen}: test",
          " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
for c in costs:  # best per cost on the slice
    idx = [i for i, k in enumerate(keys) if k[0] == c]
    b = max(idx, key=lambda i: means[i]); print(f"  C {c}: slice best {keys[b]} {means[b]:.4f}")
