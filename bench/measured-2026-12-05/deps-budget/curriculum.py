"""Experiment: output budget small early, large late. usage: curriculum.py OUT EARLY LATE SWITCH_SHARE"""
import sys, time, json
import numpy as np
from slidepy.data import load_dataset
from slidepy.recipe import auto_config
from slidepy.configfile import load_config, config_from_dict
from slidepy.trainer import Trainer
from slidepy.engine import Engine
from slidepy.constants import SPEC_BUDGET
out, early, late, share = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
D = "/work/shared/data/DebianDeps/"
cfg = auto_config(load_dataset(D + "train.txt"), D + "train.txt", D + "test.txt", run_dir=out)
cfg["model"]["output"]["selection"]["budget"] = max(early, late)
cfg["training"]["threads"] = 2
steps_total = 5235
switch = int(share * steps_total)
orig = Engine.train_step
def train_step(self, data, rows, apply=True):
    last = self.n_layers - 1
    self.spec[last, SPEC_BUDGET] = early if self.step < switch else late
    return orig(self, data, rows, apply)
Engine.train_step = train_step
tr = Trainer(config_from_dict(cfg), run_dir=out, progress=False)
tr.fit(); res = [json.loads(l) for l in open(out + "/metrics.jsonl")][-1]
print(out, early, late, share, json.dumps({k: res.get(k) for k in ("P@1", "P@3", "P@5", "train_seconds", "rebuild_seconds")}))
