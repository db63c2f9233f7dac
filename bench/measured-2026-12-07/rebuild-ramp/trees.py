"""Omikuji and PECOS on any XC train/test pair, 2 threads, with the bench's own runners."""
import sys, resource
sys.path.insert(0, '/work/main/scripts')
from benchkit import worker
from slidepy.data import load_dataset
train, test = load_dataset(sys.argv[1]), load_dataset(sys.argv[2])
for name in sys.argv[3].split(','):
    r = getattr(worker, f'_accuracy_{name}')(train, test, {"threads": 2})
    print(name, {k: round(r[k], 4) for k in ('P@1', 'P@3', 'P@5', 'train_seconds')}, 'maxrss_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, flush=True)
