#!/usr/bin/env python
"""Where a training step's time goes, for one config: samples/s and the seconds spent in the
parallel kernel (selection, forward, backward), the row-sparse optimizer and LSH rebuilds.

    python scripts/profile_step.py --config configs/debian-deps.yaml --steps 300 --threads 2
    python scripts/profile_step.py --config configs/debian-nextword.yaml --set training.batch_size=256

Random batches (seeded) from the config's training set, after one warm-up pass that compiles the
kernels; no evaluation, no checkpoints, no run directory of its own beyond a scratch one. On a
shared machine run it a few times, interleaved with whatever it is compared against.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def profile(config_path: str, overrides: list[str], steps: int, seed: int = 0) -> dict:
    """Train `steps` random batches of the config's training set; returns the figures."""
    from slidepy.configfile import load_config
    from slidepy.trainer import Trainer

    cfg = load_config(config_path, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir=run_dir, progress=False)
        engine, data, batch = trainer.engine, trainer.train_data, cfg.training.batch_size
        engine.warmup(data)
        engine.timings.update(kernel=0.0, optimizer=0.0)
        rng = np.random.default_rng(seed)
        rebuild = 0.0
        rows_updated = 0
        started = time.perf_counter()
        for _ in range(steps):
            rows = rng.choice(data.n_samples, min(batch, data.n_samples), replace=False).astype(np.int64)
            rows_updated += engine.train_step(data, rows).rows_updated
            rebuild += engine.maybe_rebuild()
        wall = time.perf_counter() - started
    return {"samples_per_s": steps * min(batch, data.n_samples) / wall, "wall_seconds": wall,
            "kernel_seconds": engine.timings["kernel"], "optimizer_seconds": engine.timings["optimizer"],
            "rebuild_seconds": rebuild, "rows_updated_per_step": rows_updated / max(1, steps),
            "threads": trainer.threads}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"training.threads={args.threads}"] if args.threads else [])
    r = profile(args.config, overrides, args.steps)
    wall = r["wall_seconds"]
    print(f"{r['samples_per_s']:,.0f} samples/s on {r['threads']} threads; kernel {r['kernel_seconds']:.2f} s "
          f"({r['kernel_seconds'] / wall:.0%}), optimizer {r['optimizer_seconds']:.2f} s "
          f"({r['optimizer_seconds'] / wall:.0%}), rebuild {r['rebuild_seconds']:.2f} s "
          f"({r['rebuild_seconds'] / wall:.0%}) of {wall:.2f} s; {r['rows_updated_per_step']:,.0f} rows updated a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
