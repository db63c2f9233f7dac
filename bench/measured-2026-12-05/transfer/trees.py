"""Omikuji and PECOS on any XC train/test pair, 2 threads, with the bench's own runners."""
import sys, json, resource
sys.path.insert(0, '/work/main/scripts'); sys.path.insert(0, '/work/main')
import bench
from slidepy.data import load_dataset
tr, te = sys.argv[1], sys.argv[2]
from slidepy import data as d
import inspect
train = d.load_dataset(tr) if hasattr(d, 'load_dataset') else None
test = d.load_dataset(te)
for name in sys.argv[3].split(','):
    r = getattr(bench, f'_accuracy_{name}')(train, test, {"threads": 2})
    print(name, {k: round(r[k], 4) for k in ('P@1', 'P@3', 'P@5', 'train_seconds')}, 'maxrss_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, flush=True)
