#!/usr/bin/env python
"""slidepy benchmark suite: slidepy against dense PyTorch and the tree classifiers Omikuji and PECOS.

    python scripts/bench.py --out bench                 # the full matrix (make bench)
    python scripts/bench.py --out bench --quick         # small sizes, checks the plumbing (make bench-quick)
    python scripts/bench.py --datasets debian-deps --systems lsh,random,torch,omikuji,pecos --threads 2
    python scripts/bench.py --datasets amazon670k --systems lsh,torch --threads 1,2 --no-accuracy

Writes into <out>: results.json (every number, and the `targets` list), results.md (the same as
Markdown tables) and curve-<dataset>.png (P@1 against training seconds, one per dataset; skipped
with a note if matplotlib is missing). Parsed data is cached under <out>/cache, never beside the
data files.

Systems
-------
* lsh / random / all: slidepy. On a dataset with a shipped config (configs/<dataset>.yaml, see
  SHIPPED_CONFIGS; `--config NAME=PATH` names another), each is that config as users run it
  (loaded with load_config), with only the output layer's selection mode overridden where it
  differs; the one whose mode the config ships is "slidepy" in the targets. On the synthetic
  shapes they use the bench's own settings (lsh_settings). Evaluation is always exact (every label
  scored), whatever `inference` the config asks for.
* torch: the same network in dense PyTorch (scripts/torch_baseline.py's train_torch): hidden size,
  learning rate and batch size from the config.
* omikuji: Omikuji 0.5 with its default hyper-parameters.
* pecos: PECOS XR-Linear with its defaults: rows of X L2-normalised (as PECOS's own text
  featurizer gives them), PIFA label embeddings, hierarchical k-means, XLinearModel.train, top-5
  by model.predict(only_topk=5).

How each figure is measured
---------------------------
* Every system runs in its own subprocess (`bench.py --worker SPEC.json`), so the peak RSS
  (VmHWM) is that system's alone.
* Accuracy runs (one worker per system and dataset, one after another): a number of epochs (the
  config's, or --epochs; torch its own, --torch-epochs), capped by --max-steps / --max-seconds,
  exact evaluation on the whole test split (or its first --eval-subset samples, the same for every
  system) at every epoch end and `ceil(evals / epochs)` points per epoch. They give P@1/P@3/P@5,
  the P@1-against-training-seconds curve, the time each system takes to reach each other system's
  final P@1, training samples/s, JIT compile seconds and peak RSS. Training time excludes
  evaluation and JIT compilation and includes LSH table rebuilds. A tree has one point (its
  training time, its P@1); its training time includes its clustering. The slidepy loop is
  Trainer.fit's own: Trainer.train_step (epoch order, train step, scheduled rebuild) and
  Trainer.evaluate.
* Throughput (samples/s) is also measured interleaved: one long-lived worker per neural system,
  and the parent asks them in turn (A, B, C, A, B, C, ...) for a timed segment of
  `segment_seconds` of training; each of the `repeats` rounds runs every thread count in turn.
  Reported: the median per system and the ratios of the medians. Other jobs on a shared machine
  slow every system alike within a round.
* Memory bandwidth: a large NumPy copy (median of a few) against slidepy lsh's achieved
  output-layer weight-row traffic during its throughput segments (see `row_traffic_bytes`).
* Targets (benchkit/targets.py): the issues' goals, as ratios measured in this one run; a target
  whose systems did not run is "not run", never a pass.

The parts live in scripts/benchkit/ (its __init__ maps them); this file is the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit/ beside this file, however it is run

from benchkit import REPO  # noqa: E402  (first: it keeps the environment as the user started the bench)
from benchkit.datasets import DEFAULT_DATASETS, QUICK_DATASETS, REAL_PATHS, SYNTHETIC_SHAPES  # noqa: E402
from benchkit.matrix import parse_config_map, run_benchmark  # noqa: E402
from benchkit.systems import ALL_MAX_LABELS  # noqa: E402
from benchkit.worker import worker_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench", help="output directory (default bench)")
    p.add_argument("--quick", action="store_true", help="small sizes: check the plumbing in a few minutes")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma list of {', '.join(list(SYNTHETIC_SHAPES) + list(REAL_PATHS))}")
    p.add_argument("--systems", default=None,
                   help="comma list of lsh, all, random, torch, omikuji, pecos (default: all of them; the trees "
                        "only on real data); `slidepy` = the mode the dataset's config ships")
    p.add_argument("--config", action="append", metavar="NAME=PATH",
                   help="the slidepy config for dataset NAME (default configs/<dataset>.yaml where shipped)")
    p.add_argument("--data-root", default=None,
                   help="where ../shared/data is (default: found from the repository root upwards)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training samples (synthetic: generated, default 10000, quick 2000; real: the first N)")
    p.add_argument("--eval-subset", type=int, default=None,
                   help="test samples scored (synthetic default 1000; real: the whole test split)")
    p.add_argument("--noise-fraction", type=float, default=0.55,
                   help="synthetic noise fraction (default 0.55; 0.2, the generator's default, is too easy)")
    p.add_argument("--epochs", type=float, default=None,
                   help="epochs of every neural system (default: the config's; torch per --torch-epochs)")
    p.add_argument("--torch-epochs", type=float, default=None,
                   help="epochs of dense PyTorch (default --epochs, else 10 on debian-deps and 1 on debian-nextword)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on the steps of each neural accuracy run")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="cap on the training seconds of each neural accuracy run (trees are not capped)")
    p.add_argument("--evals", type=int, default=4, help="eval points per accuracy run (at least; plus every epoch end)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's, else 128")
    p.add_argument("--lr", type=float, default=None, help="default: the config's, else 1e-3")
    p.add_argument("--threads", default="1,2",
                   help="thread counts for throughput/scaling, e.g. 1,2,4,8,16; accuracy runs use the largest")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds per thread count (default 3; quick 2)")
    p.add_argument("--segment-seconds", type=float, default=None, help="timed segment length (default 6; quick 1.5)")
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="wall-clock cap per worker subprocess")
    p.add_argument("--all-accuracy", action="store_true",
                   help=f"also run `all` on label sets >= {ALL_MAX_LABELS:,} (skipped by default: too slow)")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--no-cold-start", action="store_true",
                   help="skip timing the quick start from a clean checkout with an empty JIT cache")
    p.add_argument("--worker", metavar="JSON_SPEC", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.worker:
        return worker_main(opts.worker)
    sys.path.insert(0, str(REPO))
    opts.config_map = parse_config_map(opts.config or [])
    if opts.segment_seconds is None:
        opts.segment_seconds = 1.5 if opts.quick else 6.0
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 3
    if opts.quick and opts.datasets == ",".join(DEFAULT_DATASETS):
        opts.datasets = ",".join(QUICK_DATASETS)
    run_benchmark(opts)
    print()
    print((Path(opts.out) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
