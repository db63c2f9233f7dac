"""Where the 670K shape's optimizer time goes: the parts of apply_updates, timed by wrapping them."""
import sys, time, collections
import numpy as np, numba
import slidepy.trainer  # noqa: F401  (the engine keeps the kernels themselves for its compile jobs)
from slidepy import optimizer as opt
sys.path.insert(0, "scripts")
import profile_step

spent = collections.Counter()
def wrap(name):
    f = getattr(opt, name)
    def timed(*a, **k):
        s = time.perf_counter(); r = f(*a, **k); spent[name] += time.perf_counter() - s; return r
    setattr(opt, name, timed)
for n in ("group_records", "adam_update_rows_recorded", "adam_update_rows", "touched_rows"):
    wrap(n)
threads = int(sys.argv[1])
r = profile_step.profile("configs/amazon670k-synthetic.yaml", [f"training.threads={threads}"], 300)
print(threads, "thread(s):", f"{r['samples_per_s']:,.0f} samples/s, optimizer {r['optimizer_seconds']:.2f} s;",
      {k: round(v, 2) for k, v in spent.items()})
