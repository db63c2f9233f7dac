"""Where the trial's rate differs from the run's: a fresh recipe network's steps timed in windows, dropout as given."""
import sys, time, numpy as np
from slidepy.configfile import config_from_dict
from slidepy.data import load_dataset
from slidepy.model import Model, max_labels
from slidepy.recipe import auto_config
from slidepy.trainer import compile_with_notice, label_rate, set_threads
trp, dropout, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
train = load_dataset(trp)
d = auto_config(train, trp, None, time_budget_s=90)
d["model"]["dropout"] = dropout
cfg = config_from_dict(d); set_threads(cfg)
model = Model.build(cfg, train.n_features, train.n_labels, max_labels(train), label_rate=label_rate(train), index_first_iters=1)
eng = model.engine; eng.lr = cfg.training.lr
compile_with_notice(eng, train, False)
rng = np.random.default_rng(0)
t0 = time.perf_counter(); last = t0
for s in range(1, steps + 1):
    eng.train_step(train, rng.choice(train.n_samples, 128, replace=False))
    if s % 50 == 0:
        now = time.perf_counter(); print(f"dropout {dropout} steps {s-49}-{s}: {50*128/(now-last):,.0f} samples/s", flush=True); last = now
