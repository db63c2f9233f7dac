import time, numpy as np
from slidepy.configfile import load_config
from slidepy.data import load_dataset
from slidepy.calibrate import trial_rate
from slidepy.trainer import Trainer
cfg = load_config("runs/s27-tb/h256/config.yaml", ["training.threads=2", "output.run_dir=/tmp/s27-tvr", "training.time_budget_s=null",
                                                   "training.max_steps=400", "eval.every=0", "eval.recall_samples=0"])
train = load_dataset("../shared/data/DebianDeps/train.txt")
print("trial: %.0f samples/s" % trial_rate(cfg, train, 1.4, progress=False))
t = Trainer(cfg, train=train, progress=False)
t.clear_run_dir()
from slidepy.trainer import _start
_start(t)
secs = []
for i in range(400):
    s = t.train_step()
    secs.append(s.seconds)
secs = np.array(secs)
for a, b in ((0, 50), (50, 100), (100, 200), (200, 400)):
    print("run steps %d-%d: %.0f samples/s (engine step seconds only)" % (a, b, 128 * (b - a) / secs[a:b].sum()))
print("trial again: %.0f samples/s" % trial_rate(cfg, train, 1.4, progress=False))
