"""How fast this machine trains a network on a dataset: a moment's training of a throwaway copy,
so that the automatic recipe can count the passes a time budget allows (recipe.passes_in_budget)
and choose the settings for that many.

The trial runs the real kernels (Engine.train_step, and the index rebuilds its schedule asks
for) on random batches of the training set with the threads the run will use, after compiling
them, which the run then finds done. Its weights are thrown away and nothing is written. The
rate of a fresh network is not the rate of a trained one (on DebianDeps the first steps ran 1.2x
the mean of a 30 s run, on DebianNextWord 0.7x), which the passes' rules, with steps between
settings of 2x or more, can stand.
"""

from __future__ import annotations

import time

from .config import Config
from .data import Dataset
from .model import Model, max_labels
from .rng import generator
from .trainer import compile_with_notice, label_rate, set_threads

TRIAL_SECONDS = 2.0  # at most: enough steps to average a step's cost and meet a rebuild or two
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
    run's later steps do not pay (the whole trial's rate was 0.87-0.94 of its later half's on
    DebianDeps and DebianNextWord)."""
    set_threads(config)
    model = Model.build(config, train.n_features, train.n_labels, max_labels(train), label_rate=label_rate(train))
    engine = model.engine
    engine.lr = config.training.lr
    compile_with_notice(engine, train, progress)
    draw = generator(config.training.seed, TRIAL_STREAM)
    batch = min(config.training.batch_size, train.n_samples)
    started, ends = time.perf_counter(), []  # ends: seconds from the start to the end of each step
    while len(ends) < MIN_STEPS or ends[-1] < seconds:
        engine.train_step(train, draw.choice(train.n_samples, batch, replace=False))
        engine.maybe_rebuild()
        ends.append(time.perf_counter() - started)
    half = next(i for i, end in enumerate(ends) if end >= ends[-1] / 2)  # the first step ending in the later half
    if half == len(ends) - 1:  # one step took half the trial: the whole trial's rate
        return len(ends) * batch / ends[-1]
    return (len(ends) - 1 - half) * batch / (ends[-1] - ends[half])
