"""How fast this machine trains a network on a dataset: a moment's training of a throwaway copy,
so that the automatic recipe can count the passes a time budget allows (recipe.passes_in_budget)
and choose the settings for that many.

The trial runs the real training steps (Engine.train_step) on random batches of the training set
with the threads the run will use, after compiling the kernels, which the run then finds done
(its start record shows the compile seconds near 0). It leaves out the index rebuilds, which
passes_in_budget charges as a share of the budget instead: in a trial of 1.5 s one rebuild more
or less moved DebianDeps' rate 2x (3,402-7,727 samples/s). Its weights are thrown away and
nothing is written. A fresh network's steps are not a trained one's: the trials' estimates were
0.7-0.8x the passes the runs then trained (DebianDeps under 30 s 3.3-3.7 for 3.9-4.8,
DebianNextWord under 60 s 0.64-0.74 for 0.90-1.00; bench/measured-2026-12-06/time-budget-passes/),
which the rules they feed, changing at 1 and 2 passes, can stand."""

from __future__ import annotations

import time

from .config import Config
from .data import Dataset
from .model import Model, max_labels
from .rng import generator
from .trainer import compile_with_notice, label_rate, said_if_slow, set_threads

TRIAL_SECONDS = 2.0  # at most: enough steps to average a step's cost over a few batches' draws
TRIAL_SHARE = 0.05   # of the time budget at most, since the trial's time is the user's too
MIN_STEPS = 5
TRIAL_STREAM = 0x54524C  # "TRL": the random stream of the trial's batches (rng.py)


def trial_seconds(time_budget_s: float) -> float:
    """Seconds of trial steps for a run with this time budget: TRIAL_SECONDS, or TRIAL_SHARE of a
    budget shorter than TRIAL_SECONDS / TRIAL_SHARE."""
    return min(TRIAL_SECONDS, TRIAL_SHARE * time_budget_s)


def trial_rate(config: Config, train: Dataset, seconds: float, *, progress: bool = True) -> float:
    """Training samples a second for `config`'s network on `train`, with the threads the config
    asks for: about `seconds` of steps (at least MIN_STEPS) of a throwaway model after the kernels
    compile (with the trainer's notice on stderr if that takes a while), timed over their later
    half: the first steps write the weights' and moments' pages for the first time, which the
    run's later steps do not pay (the whole trial's rate was 0.86-0.94 of its later half's on
    DebianDeps and DebianNextWord)."""
    set_threads(config)
    # its cluster index from one Lloyd iteration, not INITIAL_KMEANS_ITERS: a step's cost is its
    # budget of rows, however good the clusters, and the run builds its own index again (15 s at
    # 10^5 labels on 2 cores for the four)
    with said_if_slow("building the trial's network and its index", progress):
        model = Model.build(config, train.n_features, train.n_labels, max_labels(train), label_rate=label_rate(train),
                            index_first_iters=1)
    engine = model.engine
    engine.lr = config.training.lr
    compile_with_notice(engine, train, progress)
    draw = generator(config.training.seed, TRIAL_STREAM)
    batch = min(config.training.batch_size, train.n_samples)
    started, ends = time.perf_counter(), []  # ends: seconds from the start to the end of each step
    while len(ends) < MIN_STEPS or ends[-1] < seconds:
        engine.train_step(train, draw.choice(train.n_samples, batch, replace=False))
        ends.append(time.perf_counter() - started)
    half = next(i for i, end in enumerate(ends) if end >= ends[-1] / 2)  # the first step ending in the later half
    if half == len(ends) - 1:  # one step took half the trial: the whole trial's rate
        return len(ends) * batch / ends[-1]
    return (len(ends) - 1 - half) * batch / (ends[-1] - ends[half])
