import glob, sys, time
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
train, val = tr.subset(R.training_rows(tr.n_samples, held)), tr.subset(held)
for _ in range(2):
    t = time.perf_counter(); model._slice_ranking(train, val, 50); print(f"slice ranking {time.perf_counter() - t:.2f} s", flush=True)
t = time.perf_counter(); sec = model.fit_reranker(tr, held); print(f"fit_reranker {sec:.1f} s, C {model.leaves.cost}")
