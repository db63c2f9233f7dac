"""The systems the benchmark compares, and the slidepy config each slidepy system runs."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

from . import REPO

HIDDEN = 128
SLIDEPY = ("lsh", "all", "random")
NEURAL = SLIDEPY + ("torch",)
TREES = ("omikuji", "pecos")
ALL_SYSTEMS = NEURAL + TREES
# `all` (exact softmax in slidepy) trains no accuracy run at or above this many labels unless
# --all-accuracy (torch is the dense reference there); on real data it also skips throughput.
ALL_MAX_LABELS = 20_000


def lsh_settings(n_labels: int) -> dict:
    """The output-layer selection used by `lsh` (and the budget `random` gets) on the synthetic
    shapes and on datasets without a config.

    Large label sets: configs/amazon670k.yaml's choice: 512 active (0.08% of 670,091; the optimizer
    cost grows with the rows a batch touches), SRP K=12, L=50, 2^12 buckets of 64, reservoir
    inserts. Small label sets: 1/8 of the labels (at least 32), K from the label count, L=16.
    Both keep lsh.random_share at its default (a quarter of the non-label budget to uniform
    negatives).
    """
    if n_labels >= 50_000:
        return {"budget": 512, "min_active": 0,
                "lsh": {"family": "srp", "k": 12, "l": 50, "range_pow": 12, "bucket_capacity": 64,
                        "insert": "reservoir",
                        "rebuild": {"initial_interval": 100, "decay": 1.3, "max_interval": 2000}}}
    budget = min(n_labels, max(32, n_labels // 8))
    k = int(min(10, max(4, round(math.log2(max(2, n_labels / 16))))))
    l, cap = 16, 64
    return {"budget": budget, "min_active": min(500, budget // 4),
            "lsh": {"family": "srp", "k": k, "l": l, "range_pow": k, "bucket_capacity": cap,
                    "rebuild": {"initial_interval": 50, "decay": 1.1, "max_interval": 1000}}}


def slidepy_config(system: str, n_labels: int, *, lr: float, batch_size: int, threads: int, seed: int,
                   hidden: int = HIDDEN):
    """The bench's own config for `system` (no shipped config)."""
    from slidepy.configfile import config_from_dict

    s = lsh_settings(n_labels)
    if system == "lsh":
        sel = {"mode": "lsh", "budget": s["budget"], "min_active": s["min_active"], "inference": "exact",
               "lsh": s["lsh"]}
    elif system == "random":  # sampled softmax: labels + uniform negatives, same budget as lsh
        sel = {"mode": "random", "budget": s["budget"], "min_active": s["min_active"]}
    elif system == "all":
        sel = {"mode": "all"}
    else:
        raise ValueError(system)
    return config_from_dict({
        "model": {"hidden": [int(hidden)], "output": {"selection": sel}, "loss": "softmax"},
        "training": {"batch_size": batch_size, "lr": lr, "optimizer": "adam", "seed": seed, "threads": threads,
                     "epochs": 1, "log_every": 10**6},
        "eval": {"every": 10**9, "subset": None, "k": [1, 3, 5], "recall_samples": 0},
        "output": {"checkpoint_every": 0, "keep_last": 1},
    })


def config_overrides(cfg, system: str, *, threads: int, lr: float | None = None,
                     batch_size: int | None = None) -> list[str]:
    """`--set` overrides that turn a shipped config into `system`'s bench config: the output
    layer's selection mode (only where it differs), the thread count, exact evaluation of P@1, P@3
    and P@5 (what the bench reports for every system, whatever k the config scores: MNIST's
    scores P@1 alone), no checkpoints and no evaluations of its own (the bench evaluates on the
    whole test split); lr / batch size only where the bench command line asks for them."""
    out = [f"training.threads={int(threads)}", "output.checkpoint_every=0", "eval.every=1000000000",
           "eval.subset=null", "eval.k=[1,3,5]"]
    if cfg.model.output.selection.mode != system:
        out.append(f"model.output.selection.mode={system}")
    if cfg.model.output.selection.inference != "exact":
        out.append("model.output.selection.inference=exact")
    for i, layer in enumerate(cfg.model.hidden):
        if layer.selection.inference != "exact":
            out.append(f"model.hidden.{i}.selection.inference=exact")
    if lr is not None:
        out.append(f"training.lr={lr}")
    if batch_size is not None:
        out.append(f"training.batch_size={int(batch_size)}")
    return out


def shipped_config(path: str, system: str, *, threads: int, lr=None, batch_size=None):
    from slidepy import load_config

    base = load_config(path)
    return load_config(path, config_overrides(base, system, threads=threads, lr=lr, batch_size=batch_size))


def describe_config(cfg_path: str, system: str) -> str:
    """One line on what a config-based system trains."""
    from slidepy import load_config

    cfg = load_config(config_file(cfg_path))
    sel = cfg.model.output.selection
    rel = os.path.relpath(config_file(cfg_path), REPO)
    head = f"{rel} as shipped" if sel.mode == system else f"{rel} with output mode {system}"
    t = cfg.training
    hidden = [h.size for h in cfg.model.hidden]
    parts = [head, f"hidden {hidden}", f"batch {t.batch_size}", f"lr {t.lr:g}"]
    if system == "lsh":
        l = sel.lsh
        parts.append(f"budget {sel.budget}, {l.family}" + (f" K={l.k} L={l.l}" if l.family != "kmeans" else ""))
    elif system == "random":
        parts.append(f"budget {sel.budget} uniform negatives")
    return ", ".join(parts)


def describe_system(system: str, n_labels: int, run: dict | None = None) -> str:
    run = run or {}
    if system in SLIDEPY and run.get("config_path"):
        try:
            return describe_config(run["config_path"], system)
        except Exception as exc:  # a broken config is reported by the worker itself
            return f"{run['config_path']} ({exc})"
    s = lsh_settings(n_labels)
    if system == "lsh":
        l = s["lsh"]
        return (f"srp K={l['k']} L={l['l']} 2^{l['range_pow']}x{l['bucket_capacity']} budget {s['budget']} "
                f"min {s['min_active']}, rebuild {l['rebuild']['initial_interval']}x{l['rebuild']['decay']}, "
                f"{int(l.get('random_share', 0.25) * 100)}% uniform negatives, corrected")
    if system == "random":
        return f"uniform negatives, budget {s['budget']} min {s['min_active']}, corrected"
    if system == "all":
        return "exact (every label)"
    if system == "torch":
        h = run.get("hidden", [HIDDEN])
        net = run.get("network") or {}
        extra = [f"{net['lr_warmup_steps']} warm-up steps" if net.get("lr_warmup_steps") else "",
                 f"init {net['init']}" if net.get("init", "glorot") != "glorot" else "",
                 f"input scale {net['input_scale']}" if net.get("input_scale", 1.0) != 1.0 else "",
                 f"weight decay {net['weight_decay']:g}" if net.get("weight_decay") else ""]
        return (f"dense full softmax (scripts/torch_baseline.py), hidden {h if len(h) > 1 else h[0]}, "
                f"dropout {run.get('dropout', 0.0):g}, lr {run.get('lr', 1e-3):g} {run.get('lr_schedule', 'constant')}, "
                f"batch {run.get('batch_size', 128)}" + "".join(f", {e}" for e in extra if e))
    if system == "omikuji":
        return "omikuji defaults (Parabel-like trees)"
    if system == "pecos":
        return "PECOS XR-Linear defaults (L2-normalised X, PIFA, hierarchical k-means)"
    return ""


def config_file(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (REPO / p))


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def dataset_systems(systems: list[str], run: dict) -> list[str]:
    """The systems to run on one dataset: `slidepy` stands for the mode the config ships."""
    out = [run["primary"] if s == "slidepy" else s for s in systems]
    return list(dict.fromkeys(out))
