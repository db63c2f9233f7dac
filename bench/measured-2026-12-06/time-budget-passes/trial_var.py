import sys, time
from slidepy.data import load_dataset
from slidepy.recipe import auto_config, passes_in_budget
from slidepy.configfile import config_from_dict
from slidepy.calibrate import trial_rate, trial_seconds
path, budget = sys.argv[1], float(sys.argv[2])
tr = load_dataset(path)
cfg = config_from_dict(auto_config(tr, path, None, time_budget_s=budget))
for i in range(3):
    t0 = time.perf_counter()
    r = trial_rate(cfg, tr, trial_seconds(budget), progress=False)
    print(f"rate {r:,.0f} passes {passes_in_budget(budget, r, tr.n_samples):.2f} call {time.perf_counter()-t0:.1f}s", flush=True)
