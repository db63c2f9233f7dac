"""Model.fit_reranker with the slice, at reranker.COSTS given: seconds, choice, test P@k."""
import glob, sys, time
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy import reranker as R
import slidepy.model as M
run, trp, tep = sys.argv[1:4]
tr, te = load_dataset(trp), load_dataset(tep)
model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
held = R.validation_rows(tr, 0)
for spec in sys.argv[4:]:
    M.COSTS = tuple(float(c) for c in spec.split(","))
    model.leaves = None
    sec = model.fit_reranker(tr, held)
    lv = model.leaves
    r = model.evaluate(te)
    t = model.share_scores
    best_first = max((k for k in t if k[0] == 1.0), key=t.get)
    print(f"costs {spec}: {sec:.1f} s -> C {lv.cost} share {lv.share} depth {lv.depth} (slice {t[(lv.cost, lv.share, lv.depth)]:.4f}; best at C 1 {best_first} {t[best_first]:.4f}; best {max(t, key=t.get)} {max(t.values()):.4f}): test",
          " / ".join(f"{r[k]:.4f}" for k in ("P@1", "P@3", "P@5")), flush=True)
