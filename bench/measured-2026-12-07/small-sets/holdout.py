"""usage: holdout.py MAX_SHARE slidepy-train-args...: the recipe with a held-out slice of at least
MIN_VALIDATION samples wherever that is at most MAX_SHARE of the training set (0: as shipped)."""
import sys
import numpy as np
from slidepy import reranker, trainer
from slidepy.rng import generator

share = float(sys.argv.pop(1))


def rows(train, seed):
    n = min(reranker.VALIDATION_SAMPLES, int(train.n_samples * reranker.VALIDATION_SHARE))
    if share > 0 and train.n_samples * share >= reranker.MIN_VALIDATION:
        n = max(n, reranker.MIN_VALIDATION)
    if n < reranker.MIN_VALIDATION:
        return None
    pool = np.flatnonzero(reranker.single_rows(train))
    if pool.shape[0] < n:
        return None
    return np.sort(generator(seed, reranker.VALIDATION_STREAM).choice(pool, n, replace=False)).astype(np.int64)


trainer.validation_rows = rows
import os
from slidepy import model as _model
if os.environ.get("SHARES"):
    d = list(reranker.choose_blend.__defaults__)
    d[0] = tuple(float(v) for v in os.environ["SHARES"].split(","))
    reranker.choose_blend.__defaults__ = tuple(d)
if os.environ.get("DEPTHS"):
    _model.DEPTHS = tuple(int(v) for v in os.environ["DEPTHS"].split(","))
from slidepy.__main__ import run
sys.argv[0] = "slidepy"
run()
