"""`slidepy` command line: train, evaluate, predict, datagen, tune-lsh.

Every error a user can cause is a SlidepyError: printed as one line, exit status 2, no traceback.
An interrupted `train` (Ctrl-C, SIGTERM from a batch scheduler) saves a checkpoint and exits 130
(SIGINT) or 143 (SIGTERM) with the command that resumes it; a second Ctrl-C while it finishes the
batch and saves exits 130 at once (the previous checkpoint stays intact). An operating-system
failure (disk full, permissions) is one line and exit status 1. Warnings (bad lines skipped, a
corrupt checkpoint passed over, a rollback) are printed as `warning: ...` lines on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click

from .errors import SlidepyError

EXIT_USER_ERROR = 2
EXIT_OS_ERROR = 1
EXIT_SIGINT = 130


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USER_ERROR)


def _os_fail(exc: OSError) -> None:
    click.echo(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", err=True)
    sys.exit(EXIT_OS_ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def _format_metrics(metrics: dict) -> str:
    keys = [k for k in metrics if k.startswith(("P@", "nDCG@"))]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slidepy")
def main():
    """SLIDE-style sparse training for networks with huge output layers, on many-core CPUs."""
    warnings.showwarning = _show_warning


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config (see configs/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set training.lr=0.01 (repeatable).")
@click.option("--out", "run_dir", type=click.Path(file_okay=False), help="Run directory (default output.run_dir).")
@click.option("--threads", type=click.IntRange(min=1), help="Worker threads (default training.threads, else all cores).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run directory.")
@click.option("--overwrite", is_flag=True,
              help="Start from scratch in a run directory that holds an earlier run (its checkpoints and "
                   "metrics.jsonl are deleted). Without it such a directory is refused.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and the memory estimate; do not train.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Train data-parallel with N Ray workers (default distributed.workers; 0 = one process, "
                   "no Ray). Needs `pip install slidepy[ray]`.")
@click.option("--ray-address", metavar="auto|HOST:PORT",
              help="Join this Ray cluster (default distributed.ray_address; unset = a local Ray on 127.0.0.1). "
                   "A Ray cluster has no authentication of its own: use one on a trusted network only.")
def train(config_path, overrides, run_dir, threads, resume, overwrite, dry_run, progress, workers, ray_address):
    """Train a model from a YAML config."""
    from .config import config_to_dict, load_config, validate_paths
    from .memory import check_memory, estimate_for_config
    from .trainer import Trainer, TrainingInterrupted

    overrides = list(overrides)
    if run_dir is not None:
        overrides.append(f"output.run_dir={run_dir}")
    if threads is not None:
        overrides.append(f"training.threads={threads}")
    if workers is not None:
        overrides.append(f"distributed.workers={workers}")
    if ray_address is not None:
        overrides.append(f"distributed.ray_address={json.dumps(ray_address)}")
    trainer = None
    try:
        if resume and overwrite:
            raise SlidepyError("--resume and --overwrite contradict each other: choose one")
        cfg = load_config(config_path, overrides)
        if dry_run:
            import yaml

            click.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
            try:
                validate_paths(cfg)
            except SlidepyError as exc:  # a dry run may describe a config for another machine
                click.echo(f"warning: {exc}", err=True)
            estimate = estimate_for_config(cfg)
            click.echo(estimate.report())
            return
        validate_paths(cfg)                       # before any work: data files, run directory
        estimate = estimate_for_config(cfg)
        if cfg.distributed.workers and cfg.distributed.ray_address is None:  # N local replicas
            estimate.parts = {f"{name} x {cfg.distributed.workers} workers": nbytes * cfg.distributed.workers
                              for name, nbytes in estimate.parts.items()}
        check_memory(estimate)                    # before any allocation
        if cfg.distributed.ray_address is not None and not cfg.distributed.workers:
            raise SlidepyError("--ray-address (distributed.ray_address) needs --workers N (distributed.workers) >= 1")
        if cfg.distributed.workers:
            _train_distributed(cfg, resume, overwrite, progress)
            return
        trainer = Trainer(cfg, progress=progress)
        if overwrite and trainer.clear_run_dir():
            click.echo(f"deleted the earlier run's checkpoints and metrics in {trainer.run_dir}", err=True)
        if resume:
            if trainer.resume():
                click.echo(f"resumed from step {trainer.step} (epoch {trainer.epoch}) in {trainer.run_dir}", err=True)
            else:
                click.echo(f"no checkpoint in {trainer.run_dir}: starting from scratch", err=True)
        result = trainer.fit()
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        where = ""
        if trainer is not None:
            where = f" at step {trainer.step}; not saved (the checkpoints in {trainer.run_dir} are intact)"
        click.echo(f"interrupted{where}", err=True)
        sys.exit(EXIT_SIGINT)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(f"step {trainer.step}  {_format_metrics(result)}  (run dir {trainer.run_dir})")


def _train_distributed(cfg, resume: bool, overwrite: bool, progress: bool) -> None:
    """`train --workers N`: slidepy.distributed drives N Ray actors (Ray is imported only there)."""
    from .distributed import WorkerLost, train_distributed
    from .trainer import TrainingInterrupted

    try:
        result = train_distributed(cfg, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("interrupted; the workers were stopped, not saved (the checkpoints in "
                   f"{cfg.output.run_dir} are intact)", err=True)
        sys.exit(EXIT_SIGINT)
    except WorkerLost as exc:  # not the user's doing: like an OS failure
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_OS_ERROR)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(f"step {result['step']}  {_format_metrics(result)}  ({result['workers']} workers, "
               f"{result['samples_per_s']:,.0f} samples/s, sync {result['sync_seconds']:.1f} s of "
               f"{result['loop_seconds']:.1f} s; run dir {result['run_dir']})")


def _load_eval_data(path: str, trainer) -> object:
    from .data import load_dataset

    from .errors import DataError

    n_features = trainer.engine.n_features
    n_labels = trainer.engine.n_labels
    try:
        data = load_dataset(path, n_features=n_features, n_labels=n_labels)
    except DataError as exc:
        if "was requested" in str(exc) or "out of range: given" in str(exc):
            raise DataError(f"{exc} (the model has {n_features} features, {n_labels} labels)") from None
        raise
    if data.n_samples == 0:
        raise DataError(f"{path}: no samples")
    if data.n_features != n_features or data.n_labels != n_labels:
        raise SlidepyError(f"{path} has {data.n_features} features / {data.n_labels} labels but the model was "
                           f"trained on {n_features} / {n_labels}")
    return data


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Model / checkpoint file.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Labelled data file.")
@click.option("--k", "ks", default="1,3,5", show_default=True, help="Comma-separated k for P@k and nDCG@k.")
@click.option("--lsh", is_flag=True, help="Score with the LSH tables instead of every output neuron.")
@click.option("--threads", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(checkpoint, data_path, ks, lsh, threads, as_json):
    """P@k and nDCG@k of a trained model on a data file (exact scoring by default)."""
    import numba

    from .metrics import evaluate_topk
    from .trainer import Trainer

    try:
        k_list = tuple(sorted({int(k) for k in ks.split(",") if k.strip()}))
        if not k_list or k_list[0] < 1:
            raise SlidepyError(f"--k must list positive integers, got {ks!r}")
        if threads:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        trainer = Trainer.load(checkpoint)
        data = _load_eval_data(data_path, trainer)
        ids, _, _ = trainer.engine.predict(data, None, k=max(k_list), use_lsh=lsh)
        result = evaluate_topk(ids, data.y_indptr, data.y_indices, k_list)
    except (SlidepyError, ValueError) as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    click.echo(json.dumps(result) if as_json else _format_metrics(result))


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Data file (labels ignored).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Output file (default: stdout).")
@click.option("--lsh", is_flag=True, help="Score with the LSH tables instead of every output neuron.")
def predict(checkpoint, data_path, top_k, out_path, lsh):
    """Write the top-k labels with scores for every sample: one line each, `label:score ...`."""
    from .trainer import Trainer

    try:
        trainer = Trainer.load(checkpoint)
        data = _load_eval_data(data_path, trainer)
        ids, scores, _ = trainer.engine.predict(data, None, k=top_k, use_lsh=lsh)
    except SlidepyError as exc:
        _fail(exc)
    except OSError as exc:
        _os_fail(exc)
    try:
        out = open(out_path, "w") if out_path else sys.stdout
        try:
            for row_ids, row_scores in zip(ids, scores):
                out.write(" ".join(f"{i}:{s:.6g}" for i, s in zip(row_ids, row_scores) if i >= 0) + "\n")
        finally:
            if out_path:
                out.close()
    except OSError as exc:
        _os_fail(exc)


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
    if shape:
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
@click.option("--family", default="srp", show_default=True, type=click.Choice(["srp", "wta", "dwta", "minhash"]))
@click.option("--bin-size", default=8, show_default=True, type=click.IntRange(min=2))
@click.option("--capacity", default=32, show_default=True, type=click.IntRange(min=1), help="Bucket capacity C.")
def tune_lsh(neurons, active_fraction, recall, family, bin_size, capacity):
    """Suggest K (hashes per table) and L (tables) for a target active fraction and recall,
    from L = log(1 - P) / log(1 - p^K)."""
    from .hashing import random_pair_collision, suggest_k_l
    from .lsh import FAMILY_CODES

    code = FAMILY_CODES[family]
    k, l = suggest_k_l(neurons, active_fraction, recall, code, bin_size)
    bits = 1 if family == "srp" else max(1, (bin_size - 1).bit_length())
    range_pow = min(24, k * bits)
    expected = min(1.0, l * random_pair_collision(code, bin_size) ** k)
    table_mb = l * (1 << range_pow) * (capacity + 1) * 4 / 2**20
    click.echo(f"family {family}: k {k}  l {l}  range_pow {range_pow}  bucket_capacity {capacity}")
    click.echo(f"expected active fraction of unrelated neurons ~{expected:.4f} (~{expected * neurons:,.0f} of "
               f"{neurons:,}); tables {table_mb:,.1f} MiB")


if __name__ == "__main__":  # pragma: no cover
    main()
