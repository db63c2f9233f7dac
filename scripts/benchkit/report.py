"""results.json, results.md (the same figures as Markdown tables) and curve-<dataset>.png."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from . import json_default
from .datasets import REAL_PATHS, SYNTHETIC_SHAPES
from .systems import describe_system


def number_text(x, pattern="{:,.1f}", none="—"):
    """x formatted by `pattern` for a table cell; `none` where there is no finite number."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return pattern.format(x)


def _cell(text) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def render_targets(targets: list[dict]) -> list[str]:
    L = ["| target | measured | goal | result | how |", "|---|---|---|---|---|"]
    for t in targets:
        res = {"pass": "PASS", "fail": "FAIL"}.get(t["status"], t["status"])
        L.append(f"| {_cell(t['name'])} | {t['measured_text']} | {_cell(t['target'])} | {res} | {_cell(t.get('note') or '')} |")
    return L


def render_markdown(results: dict) -> str:
    s = results["settings"]
    L = ["# slidepy benchmark", ""]
    L.append(f"Command: `{results.get('command', '')}`  ")
    m = results["machine"]
    L.append(f"Machine: {m['platform']}, Python {m['python']}, {m['cpus']} CPUs (numba threads {m['numba_threads']}), "
             f"load average at start {m.get('load_avg_at_start')}. Started {results['started']}"
             + (f", took {results['elapsed_seconds']:.0f} s." if "elapsed_seconds" in results else "."))
    L.append(f"Accuracy runs at {max(s['threads'])} thread(s). Throughput: {s['repeats']} interleaved rounds of "
             f"{s['segment_seconds']:g} s segments per thread count {s['threads']}; medians and ratios of medians."
             + (" **Quick mode: small sizes, numbers only check the plumbing.**" if s["quick"] else ""))
    L.append("")
    if results.get("targets"):
        L.append("## Targets")
        L.append("")
        L.append("Ratios measured within this run; \"not run\" where a system or dataset it needs did not run.")
        L.append("")
        L.extend(render_targets(results["targets"]))
        L.append("")
    bw = results.get("memory_bandwidth")
    bw = bw if bw and "copy_GBps" in bw else None
    for name, e in results["datasets"].items():
        d, run = e["spec"], e["run"]
        L.append(f"## {name}")
        L.append("")
        if name in SYNTHETIC_SHAPES:
            nf, nl, nnz, lps = SYNTHETIC_SHAPES[name]
            L.append(f"Synthetic (`make_synthetic`, seed 0): {nf:,} features, {nl:,} labels, ~{nnz} nnz and "
                     f"{lps[0]}-{lps[1]} labels per sample, {d['n_train']:,} train, **noise_fraction "
                     f"{d['noise_fraction']}** (raised from the default 0.2, at which the data is too easy for P@1 "
                     f"to separate systems); eval on {d['eval_subset']:,} test samples.")
        else:
            any_r = next((r for r in e["systems"].values() if "n_test" in r), {})
            where = (f"the whole test split ({any_r['n_test']:,} samples)" if not d.get("eval_subset") and any_r
                     else "the whole test split" if not d.get("eval_subset") else f"the first {d['eval_subset']:,} test samples")
            n_train = f", first {d['n_train']:,} training samples" if d.get("n_train") else ""
            L.append(f"Real data (`{REAL_PATHS[name][0]}`, {number_text(e.get('n_labels'), '{:,}', '?')} labels{n_train}); "
                     f"exact P@k on {where}.")
        pops = [r.get("popularity_P@1") for r in e["systems"].values() if r.get("popularity_P@1") is not None]
        if pops:
            L.append(f"Always predicting the most frequent training label gives P@1 {pops[0]:.4f}.")
        L.append(f"slidepy: {run['epochs']:g} epoch(s) ("
                 + (f"`{run['config_path']}`'s output mode `{run['primary']}` is the shipped one" if run.get("config_path")
                    else "the bench's own settings")
                 + f"); torch: {run['torch_epochs']:g} epoch(s)"
                 + (f"; at most {run['max_steps']} steps" if run.get("max_steps") else "")
                 + (f"; at most {run['max_seconds']:g} training seconds per system" if run.get("max_seconds") else "")
                 + f"; eval at every epoch end and {run['evals']} points per run at least.")
        L.append("")
        tp = e.get("throughput", {})
        tmax = str(max(s["threads"]))
        L.append(f"| system | config | P@1 | P@3 | P@5 | train s | epochs | samples/s (training run) "
                 f"| samples/s @{tmax}t (interleaved median) | lsh / system | JIT compile s | peak RSS MiB "
                 f"| active neurons per layer | kernel / optimizer / rebuild / index build / other % |")
        L.append("|" + "---|" * 14)
        names = list(dict.fromkeys(list(e["systems"]) + list(tp.get("systems", {}))))
        lsh_sps = tp.get("systems", {}).get("lsh", {}).get("median_samples_per_s", {}).get(tmax)
        for sys_name in names:
            a = e["systems"].get(sys_name, {})
            t = tp.get("systems", {}).get(sys_name, {})
            sps = t.get("median_samples_per_s", {}).get(tmax)
            ratio = lsh_sps / sps if lsh_sps and sps and sys_name != "lsh" else None
            err = a.get("error") or t.get("error")
            share = a.get("time_share") or {}
            share_txt = (" / ".join(number_text(share.get(k, 0) * 100, "{:.0f}") for k in ("kernel", "optimizer", "rebuild", "index_build", "other"))
                         if share else "—")
            comp = a.get("compile_seconds", t.get("compile_seconds"))
            active = a.get("active_mean")
            label = sys_name + (" (slidepy)" if sys_name == e.get("primary") and run.get("config_path") else "")
            L.append("| " + " | ".join([
                label + (f" (error: {_cell(err[:100])})" if err else ""),
                _cell(e.get("configs", {}).get(sys_name, describe_system(sys_name, e.get("n_labels") or 0, run))),
                number_text(a.get("P@1"), "{:.4f}"), number_text(a.get("P@3"), "{:.4f}"), number_text(a.get("P@5"), "{:.4f}"),
                number_text(a.get("train_seconds")),
                number_text(a.get("epochs"), "{:.2f}") + (" (capped)" if a.get("stopped") else ""),
                number_text(a.get("samples_per_s"), "{:,.0f}"), number_text(sps, "{:,.0f}"), number_text(ratio, "{:.2f}x"),
                number_text(comp, "{:.1f}"), number_text(a.get("peak_rss_mb"), "{:,.0f}"),
                ", ".join(f"{x:,.0f}" for x in active) if active else "—", share_txt]) + " |")
        L.append("")
        mat = e.get("time_to_p1") or {}
        if mat:
            cols = list(mat)
            L.append("Training seconds each system (row) takes to reach each system's final P@1 (column); "
                     "the first eval point that reached it, trees only at their end; \"never\": not within its run.")
            L.append("")
            L.append("| system | " + " | ".join(f"→ {c} {e['systems'][c]['P@1']:.4f}" for c in cols) + " |")
            L.append("|---|" + "---|" * len(cols))
            for r in cols:
                L.append(f"| {r} | " + " | ".join(number_text(mat[r].get(c), "{:,.1f}", "never") for c in cols) + " |")
            L.append("")
        if e.get("curve_png"):
            L.append(f"P@1 against training seconds: `{e['curve_png']}`.")
            L.append("")
        if tp.get("ratios"):
            L.append("Ratios of median samples/s (interleaved, " + tmax + " threads): "
                     + ", ".join(f"{k} = {v:.2f}x" for k, v in tp["ratios"].items()) + ".")
        if tp.get("systems"):
            L.append("")
            L.append("Thread scaling (median samples/s per thread count; efficiency = (sps_n / sps_1) / n, where "
                     "sps_n charges the index rebuilds at the run's rate (`amortised_scaling`), so it is not the "
                     "ratio of the columns, whose segments hold rebuilds wherever they fell):")
            L.append("")
            L.append("| system | " + " | ".join(f"{t} thr" for t in s["threads"]) + " | efficiency | peak RSS MiB |")
            L.append("|---|" + "---|" * (len(s["threads"]) + 2))
            for sys_name, t in tp["systems"].items():
                med = t.get("median_samples_per_s", {})
                eff = t.get("efficiency", {})
                L.append(f"| {sys_name} | " + " | ".join(number_text(med.get(str(x))) for x in s["threads"]) + " | "
                         + ", ".join(f"{k}t {v:.2f}" for k, v in eff.items() if k != "1") + " | "
                         + number_text(t.get("peak_rss_mb"), "{:,.0f}") + " |")
            lt = tp["systems"].get("lsh", {})
            if bw and lt.get("row_traffic_GBps") is not None:
                L.append("")
                L.append(f"Memory bandwidth: NumPy copy {bw['copy_GBps']:.2f} GB/s (read+write, {bw['bytes'] / 2**30:.2f} GiB, "
                         f"median of {bw['repeats']}); slidepy lsh output-layer weight-row traffic "
                         f"{lt['row_traffic_GBps']:.2f} GB/s ({lt['row_traffic_bytes_per_step'] / 2**20:,.1f} MiB/step: active rows x width x 4 B x 4 "
                         f"(W read fwd + bwd, grad read+write) + optimizer rows x width x 4 B x 8 (param, grad, m, v read+write), "
                         f"over kernel+optimizer step time) = {lt['row_traffic_GBps'] / bw['copy_GBps'] * 100:.0f}% of copy bandwidth.")
        L.append("")
    ceiling = results.get("machine_ceiling")
    if ceiling and "vector_fma" in ceiling:
        L.append("Machine ceiling (`machine_ceiling`: efficiency at the same work per thread, 1.00 is perfect): "
                 + "; ".join(f"{probe} " + ", ".join(f"{n} thr {e:.2f}" for n, e in effs.items())
                             for probe, effs in ceiling.items() if isinstance(effs, dict))
                 + ". Where the vector probe does not scale, neither can a kernel bound by multiply-adds.")
        L.append("")
    if bw and not any(e.get("throughput", {}).get("systems", {}).get("lsh", {}).get("row_traffic_GBps") for e in results["datasets"].values()):
        L.append(f"Memory bandwidth: NumPy copy {bw['copy_GBps']:.2f} GB/s (read+write).")
        L.append("")
    if results.get("notes"):
        L.append("Notes:")
        L.append("")
        for n in results["notes"]:
            L.append(f"* {n}")
        L.append("")
    return "\n".join(L)


def plot_dataset_curve(name: str, entry: dict, path: Path) -> str | None:
    """P@1 against training seconds for every system of one dataset (a tree is one marker).

    slidepy.plot draws runs from their metrics.jsonl (six panels of one trainer's records); the
    bench's systems include PyTorch and trees, which have no metrics.jsonl, so this draws the one
    panel the bench needs the same way (matplotlib's Figure, no pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "curve-*.png not written: matplotlib is not importable (pip install -e '.[bench]')"
    ok = {s: r for s, r in entry["systems"].items() if "error" not in r and r.get("curve")}
    if not ok:
        return None if not entry["systems"] else f"curve-{name}.png not written: no system finished"
    fig = Figure(figsize=(8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (sys_name, r) in enumerate(ok.items()):
        c = r["curve"]
        label = sys_name + (" (slidepy config)" if sys_name == entry.get("primary") and entry["run"].get("config_path") else "")
        label += f": {r['P@1']:.3f}"
        xs = [p["train_seconds"] for p in c if p.get("P@1") is not None]
        ys = [p["P@1"] for p in c if p.get("P@1") is not None]
        if r.get("single_point"):
            ax.plot(xs, ys, linestyle="none", marker="*", markersize=14, color=f"C{i % 10}", label=label)
        else:
            ax.plot(xs, ys, marker="o", markersize=4, color=f"C{i % 10}", label=label)
    xs_all = [p["train_seconds"] for r in ok.values() for p in r["curve"] if p.get("P@1") is not None]
    if xs_all and min(xs_all) > 0:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training seconds (evaluation and compilation excluded)")
    ax.set_ylabel("P@1 (exact)")
    n_test = next((r.get("n_test") for r in ok.values() if r.get("n_test")), None)
    ax.set_title(f"{name}: P@1 against training seconds" + (f" ({n_test:,} test samples)" if n_test else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        return f"{path}: cannot write ({exc})"
    return None


def json_nulls(o):
    """`o` with every NaN or infinity as None: results.json is strict JSON (a bare NaN token is
    not, and stops most readers); a figure not measured reads null."""
    if isinstance(o, dict):
        return {k: json_nulls(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_nulls(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_nulls(o.tolist())
    if isinstance(o, (float, np.floating)) and not math.isfinite(o):
        return None
    return o


def results_json(results: dict) -> str:
    """results.json's text: strict JSON, NumPy numbers as Python's, NaN and infinities as null."""
    return json.dumps(json_nulls(results), indent=1, default=json_default, allow_nan=False)


def write_outputs(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(results_json(results))
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(render_markdown(results) + "\n")
