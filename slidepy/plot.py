"""Pictures of training runs, from their metrics.jsonl: `slidepy plot RUN_DIR ... --out curves.png`.

One figure, six panels, one colour per run (so configs can be compared):
    P@1 (solid) and P@5 (dashed) against training seconds | the same against steps | loss
    lsh_recall@10 against steps | samples/s against steps | where the time went (stacked bars:
    training steps, table rebuilds, evaluation, compilation)
Training seconds are the trainer's `train_seconds`: time in training steps, without evaluation,
rebuilds or compilation (those are in the last panel).

    series = read_run(run_dir)                     # plain lists, straight from metrics.jsonl
    fig, data = plot_runs([run_a, run_b], out="curves.png")

Needs matplotlib (the `plot` extra: pip install -e '.[plot]'); without it a SlidepyError says
what to install. The figure is drawn without pyplot (no display, no global state).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SlidepyError
from .rundir import parse_records

FIGSIZE = (15.0, 8.0)  # inches
DPI = 100  # so the PNG is 1500 x 800 pixels
PANELS = ("P@k / training seconds", "P@k / steps", "loss", "lsh_recall@10", "samples/s", "time split")
TIME_PARTS = (("train", "training steps"), ("rebuild", "table rebuilds"), ("eval", "evaluation"),
              ("compile", "compilation"))


def read_metrics(run_dir) -> list[dict]:
    """The records of `run_dir`/metrics.jsonl (or of a metrics.jsonl path), in order; a line a
    kill cut short is skipped."""
    path = Path(run_dir)
    if path.suffix != ".jsonl":
        if not path.is_dir():
            raise SlidepyError(f"{run_dir}: no such run directory (one holding metrics.jsonl)")
        path = path / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlidepyError(f"{path}: cannot read ({exc.strerror or exc}); is {run_dir} a slidepy run directory?") \
            from None
    records = parse_records(text)
    if not records:
        raise SlidepyError(f"{path}: no records")
    return records


def read_run(run_dir) -> dict:
    """The series a plot draws, as plain lists: eval points (step, train_seconds, P@1, P@5,
    lsh_recall@10: None where absent), log points (step, loss, samples_per_s), and the time split
    in seconds."""
    records = read_metrics(run_dir)
    evals = [r for r in records if r["event"] == "eval"]
    logs = [r for r in records if r["event"] == "log"]
    last = records[-1]
    compile_s = sum(float(r.get("compile_seconds", 0.0)) for r in records if r["event"] == "start")
    return {
        "eval_step": [r["step"] for r in evals],
        "eval_train_seconds": [r["train_seconds"] for r in evals],
        "P@1": [r.get("P@1") for r in evals],
        "P@5": [r.get("P@5") for r in evals],
        "lsh_recall@10": [r.get("lsh_recall@10") for r in evals],
        "log_step": [r["step"] for r in logs],
        "loss": [r.get("loss") for r in logs],
        "samples_per_s": [r.get("samples_per_s") for r in logs],
        "time": {"train": float(last.get("train_seconds", 0.0)), "rebuild": float(last.get("rebuild_seconds", 0.0)),
                 "eval": sum(float(r.get("eval_seconds", 0.0)) for r in evals), "compile": compile_s},
    }


def _names(run_dirs) -> list[str]:
    """Short run names: the directory name, or the whole path where names repeat."""
    names = [Path(d).name or str(d) for d in run_dirs]
    return [n if names.count(n) == 1 else os.fspath(d) for n, d in zip(names, run_dirs)]


def _points(xs, ys):
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def figure_path(out) -> str:
    """The file plot_runs writes for `out`: as given, or with .png where it has no suffix (as
    matplotlib saves it), so that what is reported is what was written."""
    out = os.fspath(out)
    return out if Path(out).suffix else out + ".png"


def plot_runs(run_dirs, out=None, names=None):
    """Draw the runs on one figure; write it to `out` (PNG, or any format matplotlib knows by the
    suffix) if given. Returns (figure, {name: read_run(dir)}): every line on the figure is drawn
    from those lists, unchanged."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SlidepyError("slidepy plot needs matplotlib: pip install -e '.[plot]' "
                           "(or pip install matplotlib)") from None
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise SlidepyError("no run directories given")
    names = list(names) if names is not None else _names(run_dirs)
    data = {name: read_run(d) for name, d in zip(names, run_dirs)}

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    colors = [f"C{i % 10}" for i in range(len(names))]
    for name, color in zip(names, colors):
        s = data[name]
        for key, style in (("P@1", "-"), ("P@5", "--")):
            axes[0].plot(*_points(s["eval_train_seconds"], s[key]), style, color=color, marker=".",
                         label=f"{name} {key}")
            axes[1].plot(*_points(s["eval_step"], s[key]), style, color=color, marker=".", label=f"{name} {key}")
        axes[2].plot(*_points(s["log_step"], s["loss"]), color=color, label=name)
        axes[3].plot(*_points(s["eval_step"], s["lsh_recall@10"]), color=color, marker=".", label=name)
        axes[4].plot(*_points(s["log_step"], s["samples_per_s"]), color=color, label=name)
    left = [0.0] * len(names)
    for (part, label), hatch in zip(TIME_PARTS, ("", "//", "..", "xx")):
        widths = [data[n]["time"][part] for n in names]
        axes[5].barh(names, widths, left=left, label=label, hatch=hatch, color=colors, edgecolor="black", alpha=0.8)
        left = [a + b for a, b in zip(left, widths)]
    titles = [("training seconds", "P@1 (solid), P@5 (dashed)"), ("step", "P@1 (solid), P@5 (dashed)"),
              ("step", "training loss"), ("step", "lsh_recall@10"), ("step", "samples/s"), ("seconds", "")]
    for ax, title, (xlabel, ylabel) in zip(axes, PANELS, titles):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[5].legend(fontsize="small")
    if all(not data[n]["lsh_recall@10"] or all(v is None for v in data[n]["lsh_recall@10"]) for n in names):
        axes[3].text(0.5, 0.5, "no LSH recall recorded\n(no LSH layer, or eval.recall_samples: 0)",
                     ha="center", va="center", transform=axes[3].transAxes)
    if out is not None:
        out = figure_path(out)
        kinds = fig.canvas.get_supported_filetypes()
        if Path(out).suffix[1:].lower() not in kinds:
            raise SlidepyError(f"{out}: matplotlib writes no {Path(out).suffix} images; use one of "
                               f"{', '.join('.' + k for k in sorted(kinds))}")
        try:
            fig.savefig(out, dpi=DPI)
        except OSError as exc:
            raise SlidepyError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return fig, data
