"""One benchmark run: every dataset, system and thread count the options name, in order, into
results.json / results.md."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import REPO
from .coldstart import cold_quick_start
from .curves import time_to_matrix
from .datasets import (
    DEFAULT_EPOCHS,
    SHIPPED_CONFIGS,
    SYNTHETIC_SHAPES,
    TORCH_EPOCHS,
    dataset_available,
    dataset_paths,
    header_shape,
)
from .processes import log_line, run_accuracy
from .report import plot_dataset_curve, write_outputs
from .systems import (
    ALL_MAX_LABELS,
    ALL_SYSTEMS,
    HIDDEN,
    NEURAL,
    TREES,
    config_file,
    dataset_systems,
    describe_system,
    has_module,
)
from .targets import compute_targets
from .throughput import run_throughput


def plan_dataset(name: str, opts: argparse.Namespace) -> dict:
    """Dataset spec + run settings for one dataset."""
    quick = opts.quick
    d = {"name": name, "cache_dir": str(Path(opts.out).resolve() / "cache")}
    n_labels = None
    if name in SYNTHETIC_SHAPES:
        d["noise_fraction"] = opts.noise_fraction
        n_labels = SYNTHETIC_SHAPES[name][1]
        if name == "tiny":
            d.update(n_train=opts.n_train or 1500, n_test=300, eval_subset=300)
        else:
            d.update(n_train=opts.n_train or (2000 if quick else 10000), n_test=opts.eval_subset or (200 if quick else 1000))
            d["eval_subset"] = d["n_test"]
    else:
        tr, te = dataset_paths(name, opts.data_root)
        d["train_path"], d["test_path"] = str(tr), str(te)
        d["n_train"] = opts.n_train or (4000 if quick and name.startswith("debian") else None)
        d["eval_subset"] = opts.eval_subset or (500 if quick else None)
        shape = header_shape(tr)
        n_labels = shape[2] if shape else None
    cfg_path = opts.config_map.get(name)
    if cfg_path is None and name in SHIPPED_CONFIGS and (REPO / SHIPPED_CONFIGS[name]).exists():
        cfg_path = SHIPPED_CONFIGS[name]
    run = {"synthetic": name in SYNTHETIC_SHAPES, "config_path": cfg_path, "max_steps": opts.max_steps, "max_seconds": opts.max_seconds,
           "evals": opts.evals, "lr_override": opts.lr, "batch_size_override": opts.batch_size, "n_labels": n_labels}
    if cfg_path:
        from slidepy import load_config

        cfg = load_config(config_file(cfg_path))
        run.update(hidden=[int(h.size) for h in cfg.model.hidden], lr=opts.lr or cfg.training.lr,
                   dropout=cfg.model.dropout, lr_schedule=cfg.training.lr_schedule, network=network_settings(cfg),
                   batch_size=opts.batch_size or cfg.training.batch_size, config_epochs=cfg.training.epochs,
                   primary=cfg.model.output.selection.mode)
    else:
        run.update(hidden=[HIDDEN], lr=opts.lr or 1e-3, batch_size=opts.batch_size or 128, config_epochs=None,
                   primary="lsh")
    run["epochs"] = opts.epochs or (1 if quick else (run["config_epochs"] or DEFAULT_EPOCHS.get(name, 1)))
    run["torch_epochs"] = opts.torch_epochs or opts.epochs or (1 if quick else TORCH_EPOCHS.get(name, run["epochs"]))
    if name in ("amazon670k", "delicious200k") and quick and not opts.max_steps:
        run["max_steps"] = 8
    return {"dataset": d, "run": run}


def network_settings(cfg) -> dict:
    """What else of a slidepy config the dense PyTorch baseline trains by (train_torch's
    arguments): init, input scale ("auto" is resolved on the training set by the worker), Adam's
    settings and the learning rate's warm-up, so that it is the same network trained the same way."""
    t = cfg.training
    return {"init": cfg.model.init, "input_scale": cfg.model.input_scale, "lr_warmup_steps": int(t.warmup_steps),
            "betas": [float(t.beta1), float(t.beta2)], "eps": float(t.eps), "weight_decay": float(t.weight_decay)}


def n_labels_big(run: dict) -> bool:
    """A synthetic shape with 10^5 labels or more (amazon670k, delicious200k)."""
    return run.get("synthetic", False) and (run.get("n_labels") or 0) >= 100_000


def run_benchmark(opts: argparse.Namespace) -> dict:
    """Run the matrix `opts` describes; write results.json / results.md / curve-*.png into opts.out."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)
    # Parsed copies of the data sets: never part of a committed result folder.
    (out / "cache" / ".gitignore").write_text("*\n")
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 3
    if not hasattr(opts, "config_map"):
        opts.config_map = parse_config_map(getattr(opts, "config", None) or [])
    log = open(out / "bench.log", "a")
    spec_dir = tempfile.mkdtemp(prefix="bench-specs-")
    threads_list = sorted({int(t) for t in str(opts.threads).split(",") if t.strip()})
    import numba

    cores = numba.config.NUMBA_NUM_THREADS
    notes = []
    if max(threads_list) > cores:
        notes.append(f"threads {threads_list} asked but numba has {cores}: higher counts are clipped to {cores}")
    opts.systems_given = opts.systems is not None
    systems = [s.strip() for s in (opts.systems or ",".join(ALL_SYSTEMS)).split(",") if s.strip()]
    unknown = [s for s in systems if s not in ALL_SYSTEMS + ("slidepy",)]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}: choose from {', '.join(ALL_SYSTEMS + ('slidepy',))}")
    available = {"torch": "torch", "omikuji": "omikuji", "pecos": "pecos"}
    for s in list(systems):
        if s in available and not has_module(available[s]):
            notes.append(f"{s} skipped: `import {available[s]}` fails (pip install -e '.[bench]'"
                         + (", and torch==2.13.0" if s == "torch" else "") + ")")
            systems.remove(s)
    results = {"started": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
               "machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "cpus": os.cpu_count(), "numba_threads": cores,
                           "load_avg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None},
               "settings": {"quick": opts.quick, "repeats": opts.repeats, "threads": threads_list,
                            "segment_seconds": opts.segment_seconds, "batch_size": opts.batch_size,
                            "lr": opts.lr, "noise_fraction": opts.noise_fraction, "systems": systems,
                            "epochs": opts.epochs, "torch_epochs": opts.torch_epochs, "max_steps": opts.max_steps,
                            "max_seconds": opts.max_seconds},
               "notes": notes, "datasets": {}}
    t_start = time.perf_counter()
    if not opts.no_cold_start:  # first, while nothing else runs: it uses both cores
        log_line("cold quick start (clean checkout of HEAD, empty JIT cache) ...", log)
        results["cold_start"] = cold_quick_start()
        log_line(f"  {results['cold_start']}", log)
    if not opts.no_bandwidth:
        log_line("memory bandwidth ...", log)
        # in a subprocess, so the 2 x 1 GiB of buffers never count toward any peak RSS
        results["memory_bandwidth"] = run_accuracy({"system": "bandwidth", "mode": "bandwidth",
                                                    "bytes": (256 if opts.quick else 1024) * 2**20,
                                                    "threads": [min(t, cores) for t in threads_list]},
                                                   spec_dir, 600, log)
        log_line(f"  {results['memory_bandwidth']}", log)
        if len(threads_list) > 1:
            log_line("machine ceiling (vector and scalar probes at each thread count) ...", log)
            results["machine_ceiling"] = run_accuracy({"system": "ceiling", "mode": "ceiling", "threads": threads_list},
                                                      spec_dir, 600, log)
            log_line(f"  {results['machine_ceiling']}", log)
    acc_threads = max(threads_list)
    for name in [s.strip() for s in opts.datasets.split(",") if s.strip()]:
        why = dataset_available(name, opts.data_root)
        if why:
            notes.append(f"dataset {name} skipped: {why}")
            log_line(f"dataset {name} skipped: {why}", log)
            continue
        plan = plan_dataset(name, opts)
        dspec, run = plan["dataset"], plan["run"]
        common = {"batch_size": run["batch_size"], "lr": run["lr"], "hidden": run["hidden"], "seed": 0,
                  "dropout": run.get("dropout", 0.0), "lr_schedule": run.get("lr_schedule", "constant"),
                  "network": run.get("network", {}),
                  "config_path": run["config_path"], "lr_override": run["lr_override"],
                  "batch_size_override": run["batch_size_override"]}
        entry = {"spec": dspec, "run": run, "primary": run["primary"], "n_labels": run["n_labels"], "systems": {},
                 "configs": {}}
        results["datasets"][name] = entry
        ds_systems = dataset_systems(systems, run)
        if not opts.systems_given and n_labels_big(run):
            # Trees on the synthetic 10^5-10^6-label shapes take minutes and answer no target: only
            # when --systems names them.
            dropped = [s for s in ds_systems if s in TREES]
            ds_systems = [s for s in ds_systems if s not in TREES]
            if dropped:
                notes.append(f"{name}: {', '.join(dropped)} not run on this synthetic shape (name them in --systems to)")
        n_labels = run["n_labels"] or 0
        if "all" in ds_systems and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy and run["primary"] != "all":
            msg = (f"{name}: no accuracy run for `all` (exact softmax over {n_labels:,} labels is too slow here; "
                   "--all-accuracy forces it); the dense reference is torch")
            notes.append(msg)
            log_line(msg, log)
        for s in ds_systems:
            entry["configs"][s] = describe_system(s, n_labels, run)
        log_line(f"dataset {name}: {json.dumps({k: v for k, v in dspec.items() if k != 'cache_dir'})} "
             f"run {json.dumps({k: v for k, v in run.items()})}", log)
        neural = [s for s in ds_systems if s in NEURAL]
        if (name not in SYNTHETIC_SHAPES or opts.quick) and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy:
            neural = [s for s in neural if s != "all"]  # quick: a step of `all` at 670K labels takes ~10 s
        if neural and not opts.no_throughput:
            log_line(f"{name}: interleaved throughput, systems {neural}, threads {threads_list}, "
                 f"{opts.repeats} rounds of {opts.segment_seconds:g} s", log)
            entry["throughput"] = run_throughput(dspec, neural, common, threads_list, opts.repeats,
                                                 opts.segment_seconds, spec_dir, log)
            entry["n_labels"] = entry["n_labels"] or entry["throughput"].get("n_labels")
        if not opts.no_accuracy:
            for system in ds_systems:
                if system == "all" and n_labels >= ALL_MAX_LABELS and not opts.all_accuracy and run["primary"] != "all":
                    continue
                log_line(f"{name}: accuracy run {system} ...", log)
                spec = {**common, **run, "dataset": dspec, "system": system, "mode": "accuracy",
                        "threads": acc_threads, "epochs": run["torch_epochs"] if system == "torch" else run["epochs"]}
                res = run_accuracy(spec, spec_dir, opts.worker_timeout, log)
                entry["systems"][system] = res
                entry["n_labels"] = entry["n_labels"] or res.get("n_labels")
                if "error" in res:
                    log_line(f"  {system}: ERROR {res['error']}", log)
                else:
                    ep = res.get("epochs")
                    log_line(f"  {system}: P@1 {res['P@1']:.4f} P@3 {res['P@3']:.4f} P@5 {res['P@5']:.4f}"
                         + (f" after {ep:.2f} epochs" if ep is not None else "")
                         + f", train {res['train_seconds']:.1f} s, {res.get('samples_per_s') or float('nan'):,.1f} "
                         f"samples/s, peak RSS {res['peak_rss_mb']:,.0f} MiB"
                         + (f" ({res['stopped']})" if res.get("stopped") else ""), log)
                write_outputs(results, out)
        entry["time_to_p1"] = time_to_matrix(entry["systems"])
        results["targets"] = compute_targets(results)
        write_outputs(results, out)  # partial results survive an interruption
    results["elapsed_seconds"] = time.perf_counter() - t_start
    results["targets"] = compute_targets(results)
    for name, entry in results["datasets"].items():
        png = out / f"curve-{name}.png"
        note = plot_dataset_curve(name, entry, png)
        if note:
            if note not in results["notes"]:
                results["notes"].append(note)
        else:
            entry["curve_png"] = png.name
    write_outputs(results, out)
    shutil.rmtree(spec_dir, ignore_errors=True)
    log.close()
    return results


def parse_config_map(items: list[str]) -> dict:
    """`--config NAME=PATH` items -> {NAME: PATH}."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--config {item!r}: expected NAME=PATH, e.g. debian-deps=configs/debian-deps.yaml")
        out[name.strip()] = path.strip()
    return out
