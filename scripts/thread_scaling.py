#!/usr/bin/env python
"""Thread scaling of slidepy training: samples/s of `Engine.train_step` at several thread counts,
measured in interleaved rounds (1, 2, 4, ..., 1, 2, 4, ...) so that drift in the machine's load
hits every count alike; medians over rounds. Meant for a many-core machine (issue 10):

    python scripts/thread_scaling.py --threads 1,2,4,8,16 --out scaling.json \
        --config configs/amazon670k-synthetic.yaml --config configs/debian-nextword.yaml

Each config's data is loaded once (synthetic configs are generated), the kernels are compiled
once, and the LSH rebuild schedule runs as in training (its seconds count). Efficiency of n
threads = (samples/s at n) / (n * samples/s at 1).

First it measures the machine's own ceiling at the same thread counts (benchkit/machine.py):
where a vector multiply-add loop does not scale, no kernel bound by multiply-adds can.
"""

from __future__ import annotations

import argparse
import sys
import json
import statistics
import time
from pathlib import Path

import numba
import numpy as np

from slidepy import Trainer, load_config
from slidepy.threads import use_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit.machine import machine_ceiling  # noqa: E402  (scripts/benchkit)


def measure(trainer: Trainer, threads: list[int], rounds: int, seconds: float) -> dict:
    engine, data = trainer.engine, trainer.train_data
    batch = trainer.config.training.batch_size
    rng = np.random.default_rng(0)
    engine.warmup(data)
    rates = {n: [] for n in threads}
    for _ in range(rounds):
        for n in threads:
            use_threads(n)  # numba's kernels and the BLAS products
            engine.train_step(data, rng.choice(data.n_samples, batch, replace=False))  # settle the pool
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                engine.train_step(data, rng.choice(data.n_samples, batch, replace=False))
                engine.maybe_rebuild()
                done += batch
            rates[n].append(done / (time.perf_counter() - started))
    base = statistics.median(rates[threads[0]]) / threads[0]
    return {str(n): {"samples_per_s": statistics.median(r), "rounds": r,
                     "efficiency": statistics.median(r) / (n * base)} for n, r in rates.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="a slidepy config (repeatable)")
    p.add_argument("--threads", default="1,2,4,8,16")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per (round, thread count)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--out", default="scaling.json")
    opts = p.parse_args()
    threads = [min(int(t), numba.config.NUMBA_NUM_THREADS) for t in opts.threads.split(",")]
    results = {"cores": numba.config.NUMBA_NUM_THREADS, "configs": {}, "ceiling": machine_ceiling(threads)}
    for name, effs in results["ceiling"].items():
        print(f"machine ceiling, {name}: " + "  ".join(f"{n} threads {e:.2f}" for n, e in effs.items()), flush=True)
    for path in opts.config:
        cfg = load_config(path, opts.overrides + ["output.run_dir=/tmp/slidepy-scaling", "training.threads=null"])
        trainer = Trainer(cfg, progress=False)
        results["configs"][path] = measure(trainer, threads, opts.rounds, opts.seconds)
        for n, r in results["configs"][path].items():
            print(f"{path}: {n:>2} threads {r['samples_per_s']:>10,.0f} samples/s  efficiency {r['efficiency']:.2f}",
                  flush=True)
    with open(opts.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
