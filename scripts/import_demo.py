#!/usr/bin/env python
"""Run a dense PyTorch model sparsely: import it with `slidepy import`, then compare P@1 and
inference samples/s of PyTorch's own dense forward pass, slidepy exact scoring and slidepy LSH
scoring, on the same test set and the same number of threads.

    python scripts/torch_baseline.py --train DebianDeps/train.txt --test DebianDeps/test.txt \\
        --epochs 3 --threads 2 --save-model debian_torch.pt
    python scripts/import_demo.py --model debian_torch.pt --test test.txt --threads 2 \\
        [--set model.output.selection.lsh.l=32 ...]

Timing: every system scores the whole test set in batches of 512 (PyTorch: EmbeddingBag +
ReLU + Linear + topk, under no_grad), after one warm-up pass; the best of --repeats passes is
reported. The data file is read without a binary cache (nothing is written beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _torch_topk(params, test, k, batch=512):
    import torch
    import torch.nn.functional as F

    ids = []
    with torch.no_grad():
        for start in range(0, test.n_samples, batch):
            stop = min(test.n_samples, start + batch)
            lo, hi = test.x_indptr[start], test.x_indptr[stop]
            idx = torch.from_numpy(test.x_indices[lo:hi].astype(np.int64))
            offsets = torch.from_numpy((test.x_indptr[start:stop] - lo).astype(np.int64))
            vals = torch.from_numpy(test.x_values[lo:hi])
            h = F.embedding_bag(idx, params["w1"], offsets, mode="sum", per_sample_weights=vals) + params["b1"]
            logits = F.linear(torch.relu(h), params["w2"], params["b2"])
            ids.append(torch.topk(logits, k, dim=1).indices.numpy())
    return np.concatenate(ids)


def _best_time(fn, repeats):
    fn()  # warm-up (compilation, caches)
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="PyTorch state_dict from torch_baseline.py --save-model")
    p.add_argument("--test", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", metavar="OUT.json")
    a = p.parse_args(argv)

    import numba
    try:
        import torch
    except ImportError:
        sys.exit("this script needs PyTorch: pip install torch==2.13.0 --index-url "
                 "https://download.pytorch.org/whl/cpu (or the '.[torch]' extra)")

    from slidepy.data import load_dataset
    from slidepy.importer import import_mlp
    from slidepy.metrics import evaluate_topk
    from slidepy.trainer import Trainer

    torch.set_num_threads(a.threads)
    test = load_dataset(a.test, cache=False)
    params = torch.load(a.model, map_location="cpu", weights_only=True)
    result = {"threads": a.threads, "n_test": test.n_samples, "torch": torch.__version__}
    ks = (1, 3, 5)

    seconds, ids = _best_time(lambda: _torch_topk(params, test, 5), a.repeats)
    result["pytorch_dense"] = {**evaluate_topk(ids.astype(np.int32), test.y_indptr, test.y_indices, ks),
                               "samples_per_s": test.n_samples / seconds}

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        started = time.perf_counter()
        result["import"] = import_mlp(a.model, path, overrides=a.overrides)
        result["import"]["seconds"] = time.perf_counter() - started
        trainer = Trainer.load(path)
    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    for name, use_lsh in (("slidepy_exact", False), ("slidepy_lsh", True)):
        seconds, out = _best_time(lambda: trainer.engine.predict(test, None, k=5, use_lsh=use_lsh), a.repeats)
        ids, _, active = out
        result[name] = {**evaluate_topk(ids, test.y_indptr, test.y_indices, ks),
                        "samples_per_s": test.n_samples / seconds,
                        "active_output_neurons": float(active[-1])}
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
