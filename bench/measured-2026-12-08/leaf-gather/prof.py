import cProfile, glob, pstats, sys, time
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
run, trp = sys.argv[1:3]
tr = load_dataset(trp)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
model.leaves = None
pr = cProfile.Profile(); pr.enable()
sec = model.fit_reranker(tr, held)
pr.disable()
print("fit_reranker", round(sec, 1), "s; chose C", model.leaves.cost, "share", model.leaves.share, "depth", model.leaves.depth)
pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
