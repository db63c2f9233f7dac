"""`slidepy` command line: train, evaluate, predict, import, plot, datagen, tune-lsh.

Every error a user can cause is a SlidepyError: printed as one line, exit status 2, no traceback.
An interrupted `train` (Ctrl-C, SIGTERM from a batch scheduler) saves a checkpoint and exits 130
(SIGINT) or 143 (SIGTERM) with the command that resumes it; a second signal while it finishes the
batch and saves exits at once, 130 or 143 as the signal was (the previous checkpoint stays
intact). An operating-system failure (disk full, permissions) is one line and exit status 1.
Warnings (bad lines skipped, a corrupt checkpoint passed over, a rollback) are printed as
`warning: ...` lines on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import click

from .errors import EXIT_SIGINT, CheckpointWriteError, SlidepyError, TrainingInterrupted, interrupt_status

EXIT_USER_ERROR = 2
EXIT_OS_ERROR = 1


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USER_ERROR)


def _os_fail(exc: OSError) -> None:
    click.echo(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", err=True)
    sys.exit(EXIT_OS_ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def _sets_nothing(config_path: str) -> bool:
    """Whether a config file holds no setting (empty, or comments alone)."""
    import yaml

    try:
        with open(config_path, encoding="utf-8") as f:
            return yaml.safe_load(f) is None
    except (OSError, ValueError, yaml.YAMLError):
        return False  # load_config has read it already; any doubt means no note


def _check_out_folder(out_path: str) -> None:
    """Refuse an --out file whose directory does not exist."""
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise SlidepyError(f"--out {out_path}: the directory {folder} does not exist")


def _format_metrics(metrics: dict) -> str:
    keys = [k for k in metrics if k.startswith(("P@", "nDCG@"))]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slidepy")
def main():
    """SLIDE-style sparse training for networks with huge output layers, on many-core CPUs."""
    warnings.showwarning = _show_warning


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config (see configs/). Without it, --train picks every setting from the data.")
@click.option("--train", "train_path", type=click.Path(dir_okay=False),
              help="Training data (XC or LIBSVM). Alone, it asks for the automatic recipe (slidepy/recipe.py); "
                   "with --config, it replaces data.train.")
@click.option("--test", "test_path", type=click.Path(dir_okay=False), help="Test data (replaces data.test).")
@click.option("--index-base", type=click.IntRange(0, 1), default=None,
              help="The data files' first feature id (data.index_base; default 0 for XC files, 1 for LIBSVM ones).")
@click.option("--time-budget", "time_budget", metavar="DURATION",
              help="Stop training after this much training time, e.g. 90s, 5m, 1.5h (training.time_budget_s).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set training.lr=0.01 (repeatable).")
@click.option("--out", "run_dir", type=click.Path(file_okay=False),
              help="Run directory (default: the config's output.run_dir; runs/auto without a config).")
@click.option("--threads", type=click.IntRange(min=1), help="Worker threads (default training.threads, else all cores).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run directory.")
@click.option("--overwrite", is_flag=True,
              help="Start from scratch in a run directory that holds an earlier run (its checkpoints and "
                   "metrics.jsonl are deleted). Without it such a directory is refused.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and the memory estimate; do not train.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Train data-parallel with N Ray workers (default distributed.workers; 0 = one process, "
                   "no Ray). Needs `pip install -e '.[ray]'`.")
@click.option("--ray-address", metavar="auto|HOST:PORT",
              help="Join this Ray cluster (default distributed.ray_address; unset = a local Ray on 127.0.0.1). "
                   "A Ray cluster has no authentication of its own: use one on a trusted network only.")
def train(config_path, train_path, test_path, index_base, time_budget, overrides, run_dir, threads, resume, overwrite,
          dry_run, progress, workers, ray_address):
    """Train a model from a YAML config, or from data alone (--train/--test) with the automatic
    recipe; with --workers N, data-parallel on Ray."""
    overrides = list(overrides)
    for key, value in (("data.train", train_path), ("data.test", test_path)):
        if value is not None:
            overrides.insert(0, f"{key}={json.dumps(value)}")
    if index_base is not None:
        overrides.append(f"data.index_base={index_base}")
    if run_dir is not None:  # quoted: "2024" or "runs #1" is a directory's name, not YAML
        overrides.append(f"output.run_dir={json.dumps(run_dir)}")
    if threads is not None:
        overrides.append(f"training.threads={threads}")
    if workers is not None:
        overrides.append(f"distributed.workers={workers}")
    if ray_address is not None:
        overrides.append(f"distributed.ray_address={json.dumps(ray_address)}")
    trainer = None
    try:
        # Ctrl-C is held until the run is set up (a second one goes through at once): raised
        # inside numba's loading of a cached kernel, it can leave a half-registered function that
        # crashes the process instead of ending it (numba issue 2324); fit() handles its own
        with _interrupts_held():
            from .config import config_to_dict
            from .configfile import load_config, validate_paths
            from .memory import check_memory, estimate_for_config

            if resume and overwrite:
                raise SlidepyError("--resume and --overwrite contradict each other: choose one")
            budget_s = None
            if time_budget is not None:
                from .recipe import parse_duration

                budget_s = parse_duration(time_budget)
                overrides.append(f"training.time_budget_s={budget_s}")
            auto_train, source = None, config_path  # auto_train: the set the automatic recipe read, without a config
            if config_path is None:
                auto_train, source = _auto_config(train_path, test_path, budget_s, overrides)
            cfg = load_config(source, overrides)
            if config_path is not None and cfg.data.train is None and _sets_nothing(config_path):
                click.echo(f"note: {config_path} sets nothing, so every setting is a default: the run trains on "
                           "generated data (data.synthetic)", err=True)
            # a resumed recipe run goes on with the settings it began with, not the recipe's of now
            # (a new trial's rate, or no budget, would change dropout, learning rate, input scale)
            earlier = Path(cfg.output.run_dir) / "config.yaml"
            own_config = auto_train is not None and resume and earlier.is_file()
            if own_config:
                cfg, source = load_config(earlier, overrides), None
            planned = auto_train is not None and budget_s is not None and not own_config
            if dry_run:
                import yaml

                click.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
                if planned and not cfg.distributed.workers:
                    click.echo("note: with --time-budget the run first times a short trial of this network and "
                               "plans dropout, learning rate, warm-up and the evaluations for the passes the budget "
                               "then allows: those may differ from the above", err=True)
                try:
                    validate_paths(cfg, source=config_path)
                except SlidepyError as exc:  # a dry run may describe a config for another machine
                    click.echo(f"warning: {exc}", err=True)
                estimate = estimate_for_config(cfg, train=auto_train)
                click.echo(estimate.report())
                return
            validate_paths(cfg, source=config_path)   # before any work: data files, run directory
            if not resume and not overwrite:  # a run directory in use: refused now, not after the set-up
                from .rundir import RunDir

                RunDir(cfg.output.run_dir).refuse_earlier_run()
            auto_test = None
            if auto_train is not None and not own_config and not cfg.distributed.workers:
                from .trainer import load_test

                auto_test = load_test(cfg, auto_train)  # its errors before the trial, not after it
            estimate = estimate_for_config(cfg, train=auto_train)  # a LIBSVM file's dimensions come from its load
            if cfg.distributed.workers and cfg.distributed.ray_address is None:  # N local replicas
                estimate.parts = {f"{name} x {cfg.distributed.workers} workers": nbytes * cfg.distributed.workers
                                  for name, nbytes in estimate.parts.items()}
            check_memory(estimate)                    # before any allocation
            if cfg.distributed.ray_address is not None and not cfg.distributed.workers:
                raise SlidepyError("--ray-address (distributed.ray_address) needs --workers N "
                                   "(distributed.workers) >= 1")
            if planned and not cfg.distributed.workers:
                source = _recipe_for_budget(cfg, auto_train, train_path, test_path, budget_s, progress)
                cfg = load_config(source, overrides)
            if auto_train is not None:  # say what the automatic recipe chose, and where to edit it
                from .recipe import describe

                click.echo(f"{describe(cfg, auto_train, recipe=source)}; the config: {Path(cfg.output.run_dir) / 'config.yaml'} "
                           "(edit it and pass --config to repeat the run)", err=True)
            if not cfg.distributed.workers:
                # the recipe's training set, loaded as the config says, is the run's: not a second copy
                trainer = _trainer_for(cfg, resume, overwrite, progress, train=None if own_config else auto_train,
                                       test=auto_test)
                trainer.compile()  # here, where a Ctrl-C waits for the set-up to end
            auto_train = None
        if cfg.distributed.workers:
            _train_distributed(cfg, resume, overwrite, progress)
            return
        result = trainer.fit()
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt as exc:
        where = " before training began"
        if trainer is not None and trainer.step > 0:  # fit() saves on its own Ctrl-C: this is a second one
            saved = trainer.run.checkpoints()
            kept = f"the checkpoints in {trainer.run_dir} are intact" if saved else "no checkpoint was written yet"
            where = f" at step {trainer.step}; not saved ({kept})"
            if saved:  # the CLI's runs name their data: the run's own config.yaml resumes them
                run = Path(trainer.run_dir)
                where += f"; resume from step {saved[-1][0]} with: slidepy train --config {run / 'config.yaml'} " \
                         f"--out {run} --resume"
        click.echo(f"interrupted{where}", err=True)
        sys.exit(interrupt_status(exc))
    except CheckpointWriteError as exc:  # the disk's failure, not the user's input
        click.echo(f"error: {exc}; free some space (or fix the permissions) and go on with --resume", err=True)
        sys.exit(EXIT_OS_ERROR)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    t = cfg.training
    if t.time_budget_s is not None and trainer.budget_seconds < 0.9 * t.time_budget_s and trainer.epoch >= t.epochs:
        click.echo(f"note: the run ended at training.epochs ({t.epochs}), after {trainer.budget_seconds:.3g} s "
                   f"of its {t.time_budget_s:g} s budget", err=True)
    on_train = " on the training set (no test set: give --test FILE or data.test for held-out figures)"
    click.echo(f"step {trainer.step}  {_format_metrics(result)}{on_train if result.get('split') == 'train' else ''}"
               f"{_votes_note(result)}  (run dir {trainer.run_dir})")


def _votes_note(result: dict) -> str:
    """Where model.neighbours.space auto took the votes of a final evaluation, and why; nothing
    where none voted (no auto, or the training set scored by the network alone)."""
    loo = result.get("votes_loo_p1")
    if not loo or result.get("split") == "train":
        return ""
    return (f"  votes in the {result['votes_space']} space (held-out P@1 of the votes alone: hidden "
            f"{loo['hidden']:.3f}, input {loo['input']:.3f})")


def _trainer_for(cfg, resume: bool, overwrite: bool, progress: bool, train=None, test=None):
    """The Trainer of a one-process run, its directory cleared (--overwrite) or its newest
    checkpoint loaded (--resume), saying which. `train`: the config's training set, loaded already
    (with its test set `test`, or that is loaded here)."""
    from .trainer import Trainer, load_test

    trainer = Trainer(cfg, progress=progress) if train is None else \
        Trainer(cfg, train=train, test=test if test is not None else load_test(cfg, train), progress=progress)
    if overwrite and trainer.clear_run_dir():
        click.echo(f"deleted the earlier run's checkpoints and metrics in {trainer.run_dir}", err=True)
    if resume:
        if trainer.resume():
            done = trainer.schedule.over(trainer.epoch, trainer.step, trainer.schedule.planned_steps,
                                         trainer.budget_seconds)
            click.echo(f"resumed from step {trainer.step} (epoch {trainer.epoch}) in {trainer.run_dir}"
                       + (": the run had ended there, nothing is left to train" if done else ""), err=True)
        else:
            click.echo(f"no checkpoint in {trainer.run_dir}: starting from scratch", err=True)
    return trainer


@contextlib.contextmanager
def _interrupts_held():
    """SIGINT inside the block is held until the block ends, then raised as KeyboardInterrupt; a
    second one is raised at once (the user really wants out). SIGTERM (a batch scheduler's stop)
    is held alike, then ends the process with a line and status 143, as a stopped run does; nothing
    has been written then. Where no handler can be set (not the main thread), the block runs as it
    is."""
    held = []

    def stop(signum):
        if signum == signal.SIGTERM:
            click.echo("stopped by SIGTERM while setting up, before any work was written", err=True)
            sys.exit(128 + signal.SIGTERM)
        raise KeyboardInterrupt

    def hold(signum, frame):
        if held:
            stop(signum)
        held.append(signum)

    try:
        previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        stop(held[0])


def _auto_config(train_path, test_path, time_budget_s, overrides=()) -> tuple:
    """(the training set, the automatic recipe's config for it): the file is loaded so that the
    recipe sees its shape, as the run will load it: with the `data.*` overrides (--set, and
    --index-base) for its format, index base, bad lines and cache."""
    from .configfile import load_config
    from .recipe import auto_config
    from .trainer import load_data

    if train_path is None:
        raise SlidepyError("give --config FILE, or --train FILE [--test FILE] for the automatic recipe")
    data_overrides = [o for o in overrides if o.startswith("data.")]
    cfg = load_config({"data": {"train": train_path, "test": test_path}}, data_overrides)
    train, _ = load_data(cfg.model_copy(update={"data": cfg.data.model_copy(update={"test": None, "labels": None})}))
    return train, auto_config(train, train_path, test_path, time_budget_s=time_budget_s)


def _recipe_for_budget(cfg, train, train_path, test_path, budget_s: float, progress: bool) -> dict:
    """The automatic recipe's config again, for the passes over `train` that `budget_s` of
    training allows at the rate a short trial of `cfg` measures (calibrate.py)."""
    from .calibrate import trial_rate, trial_seconds
    from .recipe import auto_config, passes_in_budget

    seconds = trial_seconds(budget_s)
    click.echo(f"timing a {seconds:.2g} s trial of the network, to plan for the passes the budget allows...", err=True)
    rate = trial_rate(cfg, train, seconds, progress=progress)
    click.echo(f"a {seconds:.2g} s trial trained {rate:,.0f} samples/s: the budget allows about "
               f"{passes_in_budget(budget_s, rate, train.n_samples):.1f} passes", err=True)
    return auto_config(train, train_path, test_path, time_budget_s=budget_s, samples_per_second=rate)


def _load_models(checkpoints: tuple, threads: int | None) -> list:
    """The models of one or more checkpoints (an ensemble), which must agree on their dimensions
    and loss; the first one's config sets the threads unless --threads does."""
    models = [_load_model(checkpoints[0], threads)]
    for path in checkpoints[1:]:
        models.append(_load_model(path, threads or models[0].config.training.threads))
        a, b = models[0].engine, models[-1].engine
        if (a.n_features, a.n_labels, a.loss) != (b.n_features, b.n_labels, b.loss):
            raise SlidepyError(f"{path} ({b.n_features} features, {b.n_labels} labels, {b.loss} loss) cannot join an "
                               f"ensemble with {checkpoints[0]} ({a.n_features}, {a.n_labels}, {a.loss})")
    return models


def _predict(models: list, data, k: int, lsh: bool, scoring: bool = False):
    """Top-k (ids, scores) of one model, or of an ensemble's mean probabilities (slidepy.ensemble).
    `scoring` (evaluate): on the neighbours' own training samples the network predicts alone."""
    if len(models) == 1:
        if lsh and all(index is None for index in models[0].engine.lsh):
            click.echo("note: --lsh: this model's layers have no index (selection all or random, or a budget of "
                       "every neuron), so it scores every neuron, as without --lsh", err=True)
            lsh = False
        if not lsh:
            _attach_neighbours(models[0], scored=data if scoring else None)
        return models[0].predict(data, k=k, use_lsh=lsh)
    if lsh:
        raise SlidepyError("--lsh scores one model; an ensemble (several --checkpoint) is scored exactly")
    from .ensemble import ensemble_topk

    for model in models:  # each member predicts as it would alone: with its own neighbours' votes
        _attach_neighbours(model, scored=data if scoring else None)

    return ensemble_topk([m.engine for m in models], data, k=k)


def _attach_neighbours(model, scored=None) -> None:
    """With model.neighbours on, build its bank from the config's training data (as `train` does
    at its evaluations); where that data is gone, say so and score with the network alone. So too
    where `scored` (the set `evaluate` scores) holds those very samples (model.same_samples)."""
    from .errors import ConfigError, DataError
    from .model import same_samples
    from .trainer import load_data

    if model.config.model.neighbours.weight <= 0:
        return
    data = model.config.data  # the training set alone: a missing test set or label list is no matter here
    if data.train is None and model.data_named is False:  # its config's synthetic spec is not what it learnt
        click.echo("model.neighbours: the model was trained on data handed in from Python (scikit-learn, "
                   "Trainer(train=...)), which its config names no file of; the neighbours' votes are left out and "
                   "the network scores alone", err=True)
        return
    try:
        train, _ = load_data(model.config.model_copy(update={"data": data.model_copy(update={"test": None,
                                                                                          "labels": None})}))
    except ConfigError as exc:
        where = f", nor from {model.working_dir}, where the model was saved" if model.working_dir else ""
        click.echo(f"model.neighbours: the training data is not at hand ({exc}{where}); the neighbours' votes "
                   f"are left out and the network scores alone", err=True)
        return
    if scored is not None and same_samples(scored, train):
        click.echo(f"{scored.source} is the training set of the neighbours' votes: each sample would vote for "
                   "its own labels, so the network scores alone", err=True)
        return
    try:
        model.attach_neighbours(train)
    except DataError as exc:  # a file of that name, but not the one the model was trained on
        click.echo(f"model.neighbours: {exc}; the neighbours' votes are left out and the network scores alone",
                   err=True)
        return
    bank = model.engine.neighbours
    if bank is not None and bank.loo_precision:  # space auto chose again, as the run's evaluations did
        note = _votes_note({"votes_space": bank.space, "votes_loo_p1": bank.loo_precision})
        click.echo(f"model.neighbours: {note.strip()}", err=True)


def _load_model(checkpoint: str, threads: int | None):
    """The model in a checkpoint, with numba's threads set from --threads, else its config."""
    import numba

    from .model import Model
    from .threads import use_threads
    from .trainer import set_threads

    model, _ = Model.load(checkpoint)
    if threads:
        use_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        set_threads(model.config)
    return model


def _train_distributed(cfg, resume: bool, overwrite: bool, progress: bool) -> None:
    """`train --workers N`: slidepy.distributed drives N Ray actors (Ray is imported only there)."""
    from .distributed import WorkerLost, train_distributed

    try:
        result = train_distributed(cfg, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt as exc:
        click.echo("interrupted; the workers were stopped, not saved (the checkpoints in "
                   f"{cfg.output.run_dir} are intact)", err=True)
        sys.exit(interrupt_status(exc))
    except WorkerLost as exc:  # not the user's doing: like an OS failure
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_OS_ERROR)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(f"step {result['step']}  {_format_metrics(result)}{_votes_note(result)}  "
               f"({result['workers']} workers, {result['samples_per_s']:,.0f} samples/s, "
               f"sync {result['sync_seconds']:.1f} s of {result['loop_seconds']:.1f} s; run dir {result['run_dir']})")


def _load_eval_data(path: str, model, index_base: int | None = None, labels_used: bool = True) -> object:
    from .data import load_dataset

    from .errors import DataError

    n_features = model.engine.n_features
    n_labels = model.engine.n_labels
    if index_base is None:  # the model's own files' (data.index_base), else the format's
        index_base = model.config.data.index_base
    note = _index_base_note(path, model) if index_base is None else None
    try:  # predict reads no labels: any label ids a file holds are no matter
        data = load_dataset(path, n_features=n_features, n_labels=n_labels if labels_used else None,
                            index_base=index_base)
    except DataError as exc:
        if note and "binary file" not in str(exc):  # the ids' base may be what went wrong
            click.echo(f"note: {note}", err=True)
        if "requested" in str(exc) or "out of range: given" in str(exc):
            raise DataError(f"{exc} (the model has {n_features} features, {n_labels} labels)") from None
        raise
    if note:
        click.echo(f"note: {note}", err=True)
    if data.n_samples == 0:
        raise DataError(f"{path}: no samples")
    if data.n_features != n_features or (labels_used and data.n_labels != n_labels):
        raise SlidepyError(f"{path} has {data.n_features} features / {data.n_labels} labels but the model was "
                           f"trained on {n_features} / {n_labels}")
    return data


def _index_base_note(path: str, model) -> str | None:
    """How a headerless file's feature ids are read when the model learnt from an XC file
    (data.index_base_note), or None."""
    from .data import file_format, index_base_note

    train = model.config.data.train
    try:
        train_format = model.train_format or (file_format(train) if train and os.path.exists(train) else None)
        if train_format == "xc":
            learnt_from = f"an XC file ({train})"
        elif train is None and model.data_named is not None:  # trained here, on arrays (an imported model: None)
            learnt_from = "data generated or handed in from Python" if model.data_named is False else "generated data"
        else:
            learnt_from = None
        return index_base_note(path, learnt_from)
    except (OSError, SlidepyError):
        return None  # the load that follows names what is wrong with the file


@main.command()
@click.option("--checkpoint", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Model / checkpoint file; repeat it to score an ensemble (mean of the models' probabilities, "
                   "each with its neighbours' votes where it has them).")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Labelled data file.")
@click.option("--k", "ks", default="1,3,5", show_default=True, help="Comma-separated k for P@k and nDCG@k.")
@click.option("--lsh", is_flag=True, help="Score only the neurons the model's index picks (its k-means clusters or "
                                           "LSH tables) instead of every output neuron; the neighbours' votes are "
                                           "left out.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Scoring threads (default: the model's training.threads; every core where that is null).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--index-base", type=click.IntRange(0, 1), default=None,
              help="The data file's first feature id (default: the model's data.index_base, else 0 for XC files "
                   "and 1 for LIBSVM ones).")
def evaluate(checkpoint, data_path, ks, lsh, threads, as_json, index_base):
    """P@k and nDCG@k of a trained model on a data file (exact scoring by default)."""
    try:
        try:
            k_list = tuple(sorted({int(k) for k in ks.split(",") if k.strip()}))
        except ValueError:
            k_list = ()
        if not k_list or k_list[0] < 1:
            raise SlidepyError(f"--k must list positive integers, e.g. 1,3,5; got {ks!r}")
        from .config import MAX_EVAL_K

        if k_list[-1] > MAX_EVAL_K:  # as eval.k in a config
            raise SlidepyError(f"--k: {k_list[-1]} is larger than {MAX_EVAL_K}, the largest k slidepy scores")
        with _interrupts_held():  # see train
            from .data import unlabelled_note
            from .metrics import evaluate_topk

            models = _load_models(checkpoint, threads)
            data = _load_eval_data(data_path, models[0], index_base)
            note = unlabelled_note(data)
            if note:
                click.echo(f"note: {note}", err=True)
            ids, _ = _predict(models, data, max(k_list), lsh, scoring=True)
        result = evaluate_topk(ids, data.y_indptr, data.y_indices, k_list)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    except (SlidepyError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(json.dumps(result) if as_json else _format_metrics(result))


@main.command()
@click.option("--checkpoint", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Model file; repeat it to predict with an ensemble (names and vectorizer from the first).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Data file (XC or LIBSVM); labels, where a line has them, are not used: a line may be "
                   "features alone.")
@click.option("--text", "texts", multiple=True, metavar="TEXT",
              help="Raw text to predict for (repeatable; one output line each); needs a model saved with its "
                   "text vectorizer by slidepy.sklearn.save_model.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Output file (default: stdout).")
@click.option("--lsh", is_flag=True, help="Score only the neurons the model's index picks (its k-means clusters or "
                                           "LSH tables) instead of every output neuron; the neighbours' votes are "
                                           "left out.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Label names, one per line (default: names stored in the model, else data.labels).")
@click.option("--ids", "ids_only", is_flag=True, help="Write label ids even when names are known.")
@click.option("--threads", type=click.IntRange(min=1), help="Scoring threads (default: the model's training.threads; "
                                                          "every core where that is null).")
@click.option("--index-base", type=click.IntRange(0, 1), default=None,
              help="The data file's first feature id (default: the model's data.index_base, else 0 for XC files "
                   "and 1 for LIBSVM ones).")
def predict(checkpoint, data_path, texts, top_k, out_path, lsh, labels_path, ids_only, threads, index_base):
    """Write the top-k labels with scores for every sample: one line each, `label:score ...`
    (label names when the model knows them, see --labels; ids otherwise)."""
    try:
        if (data_path is None) == (not texts):
            raise SlidepyError("give either --data FILE or --text TEXT")
        if out_path:  # before the predictions, not after
            _check_out_folder(out_path)
        with _interrupts_held():  # see train
            from .checkpoint import read_checkpoint_meta
            from .labels import format_prediction, label_names_for

            models = _load_models(checkpoint, threads)
            model, meta = models[0], read_checkpoint_meta(checkpoint[0])
            if texts:
                data = _text_dataset(texts, meta, model, checkpoint[0])
            else:
                data = _load_eval_data(data_path, model, index_base, labels_used=False)
            names = None if ids_only else label_names_for(model, meta, labels_path)
            ids, scores = _predict(models, data, min(top_k, model.engine.n_labels), lsh)  # no more than there are
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    try:
        out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout
        try:
            for row_ids, row_scores in zip(ids, scores):
                out.write(format_prediction(row_ids, row_scores, names) + "\n")
        finally:
            if out_path:
                out.close()
    except BrokenPipeError:  # `slidepy predict ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        sys.exit(EXIT_OS_ERROR)
    except OSError as exc:
        _os_fail(exc)


def _text_dataset(texts, meta: dict, model, checkpoint):
    """The raw `texts` featurised by the vectorizer stored in the model, as a Dataset."""
    import numpy as np

    from .data import Dataset
    from .text import META_KEY, TextFeatures

    stored = meta.get(META_KEY)
    if stored is None:
        raise SlidepyError(f"{checkpoint} cannot featurise raw text: it holds no text vectorizer. --text works with "
                           "a model trained through scikit-learn, Pipeline(TfidfVectorizer(), SlideClassifier()), "
                           "and saved with slidepy.sklearn.save_model(pipeline, path); for other models write the "
                           "features to a file and use --data")
    features = TextFeatures.from_meta(stored)
    if features.n_features != model.engine.n_features:
        raise SlidepyError(f"{checkpoint}: the stored vectorizer gives {features.n_features} features but the model "
                           f"takes {model.engine.n_features}")
    indptr, indices, values = features.transform(list(texts))
    n = len(texts)
    return Dataset(indptr, indices, values, np.zeros(n + 1, np.int64), np.zeros(0, np.int32),
                   model.engine.n_features, model.engine.n_labels, "--text")


@main.command("import")
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="slidepy model file to write.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting of the generated config, e.g. --set model.output.selection.lsh.l=64.")
@click.option("--layout", type=click.Choice(["out_in", "in_out"]), default="out_in", show_default=True,
              help="How to read square weight matrices: PyTorch's (out, in), or (in, out). Non-square ones are "
                   "oriented by their bias and the previous layer.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Label names, one per line, stored in the model for predict.")
def import_(model_path, out_path, overrides, layout, labels_path):
    """Convert a dense MLP (PyTorch state_dict or nn.Sequential of Linear/ReLU, or an .npz of weights and
    biases) into a slidepy model file; then `slidepy evaluate/predict --lsh` runs it with LSH picking the
    output neurons. Files are read without running code (torch weights_only, NumPy without pickle)."""
    from .importer import import_mlp
    from .labels import read_label_names

    try:
        _check_out_folder(out_path)  # as predict, datagen and plot: a typo is not a new directory
        names = read_label_names(labels_path) if labels_path else None
        summary = import_mlp(model_path, out_path, overrides=list(overrides), layout=layout, label_names=names)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(f"{out_path}: {summary['n_features']} features -> hidden {summary['hidden']} -> {summary['n_labels']} "
               f"labels; output index: {summary['family']}, budget {summary['budget']} "
               f"(exact by default; --lsh to use it)")
    if summary["relu_assumed"]:
        click.echo(f"note: {model_path} holds weights alone, no activations: read as Linear, ReLU, ..., Linear "
                   "(a model saved whole, torch.save(model), has its layers checked)", err=True)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_path", default="curves.png", show_default=True, type=click.Path(dir_okay=False),
              help="Image to write (PNG; other formats by suffix).")
def plot(run_dirs, out_path):
    """Draw P@1/P@5 against training seconds and steps, loss, lsh_recall@10, samples/s and the time
    split of one or more run directories on one figure (needs matplotlib: pip install -e '.[plot]')."""
    from .plot import figure_path, plot_runs

    try:
        _, data = plot_runs(run_dirs, out=out_path)
    except SlidepyError as exc:
        _fail(exc)
    click.echo(f"{figure_path(out_path)}: {len(data)} run(s): " + ", ".join(
        f"{name} ({len(s['eval_step'])} evals, {len(s['log_step'])} logs)" for name, s in data.items()))


SHAPES = {
    "amazon670k": dict(n_features=135_909, n_labels=670_091, nnz=76, labels=(1, 10)),
    "delicious200k": dict(n_features=782_585, n_labels=205_443, nnz=301, labels=(1, 140)),
}


@main.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Training file to write (XC format; .gz compresses).")
@click.option("--test-out", type=click.Path(dir_okay=False), help="Test file to write.")
@click.option("--shape", type=click.Choice(sorted(SHAPES)), help="Preset dimensions of a published dataset.")
@click.option("--n-train", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--n-test", default=2_000, show_default=True, type=click.IntRange(min=1))
@click.option("--features", default=5_000, show_default=True, type=click.IntRange(min=1))
@click.option("--labels", default=2_000, show_default=True, type=click.IntRange(min=2))
@click.option("--nnz", default=20, show_default=True, type=click.IntRange(min=1), help="Mean non-zeros per sample.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
def datagen(out_path, test_out, shape, n_train, n_test, features, labels, nnz, seed):
    """Write a synthetic extreme-classification dataset (learnable: label prototypes + noise)."""
    from .data import dataset_stats, write_dataset
    from .synthetic import make_synthetic

    labels_per_sample = (1, 3)
    if test_out and os.path.abspath(test_out) == os.path.abspath(out_path):
        _fail(SlidepyError(f"--test-out {test_out} is --out too: the test set would overwrite the training set"))
    if shape:
        ctx = click.get_current_context()
        given = [f"--{name}" for name in ("features", "labels", "nnz")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if given:  # the preset sets them: a value given beside it would be dropped without a word
            _fail(SlidepyError(f"--shape {shape} sets {', '.join(given)} itself; give one or the other"))
        preset = SHAPES[shape]
        features, labels, nnz, labels_per_sample = (preset["n_features"], preset["n_labels"], preset["nnz"],
                                                    preset["labels"])
    try:
        train_ds, test_ds = make_synthetic(n_train, n_test, features, labels, nnz_per_sample=nnz,
                                           labels_per_sample=labels_per_sample, seed=seed)
        write_dataset(train_ds, out_path)
        if test_out:
            write_dataset(test_ds, test_out)
    except (SlidepyError, ValueError) as exc:
        _fail(exc)
    click.echo(f"{out_path}: {json.dumps(dataset_stats(train_ds))}")
    if test_out:
        click.echo(f"{test_out}: {json.dumps(dataset_stats(test_ds))}")


@main.command("tune-lsh")
@click.option("--neurons", required=True, type=click.IntRange(min=1), help="Neurons in the layer (N).")
@click.option("--active-fraction", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--recall", default=0.9, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--family", default="srp", show_default=True, type=click.Choice(["srp", "wta", "dwta"]))
@click.option("--bin-size", default=8, show_default=True, type=click.IntRange(min=2))
@click.option("--capacity", default=32, show_default=True, type=click.IntRange(min=1), help="Bucket capacity C.")
def tune_lsh(neurons, active_fraction, recall, family, bin_size, capacity):
    """Suggest K (hashes per table) and L (tables) for a target active fraction and recall,
    from L = log(1 - P) / log(1 - p^K), within the limits a config accepts."""
    from .constants import MAX_BIN_SIZE, MAX_BUCKET_CAPACITY, MAX_K, MAX_L
    from .hashing import random_pair_collision, suggest_k_l
    from .lsh import FAMILY_CODES
    from .tables import table_bytes

    for name, value, most in (("--bin-size", bin_size, MAX_BIN_SIZE), ("--capacity", capacity, MAX_BUCKET_CAPACITY)):
        if value & (value - 1) or value > most:  # as a config's lsh.bin_size / lsh.bucket_capacity
            raise click.BadParameter(f"{value} is not a power of two up to {most}", param_hint=name)
    code = FAMILY_CODES[family]
    k, l = suggest_k_l(neurons, active_fraction, recall, code, bin_size, max_k=MAX_K, max_l=MAX_L)
    bits = 1 if family == "srp" else max(1, (bin_size - 1).bit_length())
    range_pow = min(24, k * bits)
    expected = min(1.0, l * random_pair_collision(code, bin_size) ** k)
    table_mb = table_bytes(l, range_pow, capacity) / 2**20
    click.echo(f"family {family}: k {k}  l {l}  range_pow {range_pow}  bucket_capacity {capacity}")
    click.echo(f"expected active fraction of unrelated neurons ~{expected:.4f} (~{expected * neurons:,.0f} of "
               f"{neurons:,}); tables {table_mb:,.1f} MiB")
    if expected > max(active_fraction, 1.0 / neurons):
        click.echo(f"note: within lsh.l <= {MAX_L} tables, recall {recall:g} of near neurons retrieves more than "
                   f"--active-fraction {active_fraction:g}; a lower --recall gets closer to it", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
