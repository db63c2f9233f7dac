"""The big run's parts on the test split: network alone, recall@k, votes with the whole bank."""
import glob, sys, time
import numpy as np
from slidepy.data import load_dataset
from slidepy.model import Model
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
leaves = model.leaves
rows = np.arange(5000, dtype=np.int64)
def show(name):
    s = time.perf_counter()
    ids, _ = model.predict(te, k=5, rows=rows)
    y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]]) for i in rows]
    p = [np.mean([len(y[j] & set(ids[j, :k])) / k for j in range(len(rows))]) for k in (1, 3, 5)]
    print(name, " / ".join(f"{v:.4f}" for v in p), f"({time.perf_counter() - s:.1f} s)", flush=True)
model.leaves = leaves._replace(share=0.0)
show("network alone (5,000 test samples)")
ids, _ = model.predict(te, k=1000, rows=rows)
y = [set(te.y_indices[te.y_indptr[i]:te.y_indptr[i + 1]]) for i in rows]
for d in (5, 50, 400, 1000):
    print("recall@", d, round(float(np.mean([len(y[j] & set(ids[j, :d])) / len(y[j]) for j in range(len(rows)) if y[j]])), 4))
model.leaves = leaves
show(f"leaves as chosen ({leaves.share}, {leaves.depth}, C {leaves.cost})")
nb = model.config.model.neighbours
for w in (0.3, 0.7):
    m = model.config.model.model_copy(update={"neighbours": nb.model_copy(update={"weight": w, "bank_samples": None})})
    model.config = model.config.model_copy(update={"model": m})
    model.attach_neighbours(tr)
    model.leaves = leaves._replace(share=0.0)
    show(f"votes {w}, whole bank, no leaves")
    model.leaves = leaves
    show(f"votes {w}, whole bank, leaves as chosen")
