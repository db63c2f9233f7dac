"""Interleaved throughput: every neural system trains in turn for a timed segment at each thread
count, round after round, so that other load on a shared machine slows them alike."""

from __future__ import annotations

import numpy as np

from .processes import Server, log_line


def run_throughput(dspec: dict, systems: list[str], common: dict, threads_list: list[int], repeats: int,
                   seconds: float, spec_dir: str, log) -> dict:
    """`repeats` rounds of one `seconds` segment per thread count and system, from one long-lived
    worker per system. Returns the segments, each system's median samples/s per thread count, the
    ratios of the medians at the most threads, and the 1->n scaling (amortised_scaling where the
    segments count their rebuilds)."""
    servers: dict[str, Server] = {}
    out = {"threads": threads_list, "repeats": repeats, "segment_seconds": seconds, "systems": {}}
    for system in systems:
        try:
            servers[system] = Server({**common, "dataset": dspec, "system": system, "mode": "serve",
                                      "threads": max(threads_list)}, spec_dir)
            out["n_labels"] = servers[system].hello.get("n_labels")
            out["systems"][system] = {"compile_seconds": servers[system].hello.get("compile_seconds"),
                                      "segments": {str(t): [] for t in threads_list}}
        except RuntimeError as exc:
            out["systems"][system] = {"error": str(exc)}
            log_line(f"  throughput {system}: {exc}", log)
    try:
        # Rounds outermost: each round runs every thread count, so the counts meet the same phase
        # of training (index rebuilds come often early in a run and rarely later; with the thread
        # counts outermost every 1-thread segment fell in the early phase, every 2-thread one later).
        order = 0  # the segment's place in the run, all systems and thread counts
        for r in range(repeats):
            for t in threads_list:
                for system, server in servers.items():
                    if server.error:
                        continue
                    try:
                        res = server.ask({"cmd": "segment", "threads": t, "seconds": seconds, "min_steps": 1})
                    except RuntimeError as exc:
                        out["systems"][system]["error"] = str(exc)
                        continue
                    out["systems"][system]["segments"][str(t)].append({**res, "round": r + 1, "order": order})
                    order += 1
                    log_line(f"  round {r + 1}/{repeats} threads {t} {system:<7} {res['samples_per_s']:>10,.1f} samples/s "
                         f"({res['steps']} steps)", log)
    finally:
        for system, server in servers.items():
            out["systems"][system]["peak_rss_mb"] = server.close().get("peak_rss_mb")
    for system, s in out["systems"].items():
        med = {}
        for t, segs in s.get("segments", {}).items():
            if segs:
                med[t] = float(np.median([g["samples_per_s"] for g in segs]))
        s["median_samples_per_s"] = med
        if system == "lsh":
            tr = [g["traffic"] for segs in s.get("segments", {}).values() for g in segs
                  if g.get("traffic") and str(max(threads_list)) in s["segments"] and g in s["segments"][str(max(threads_list))]]
            b, sec = sum(x["bytes"] for x in tr), sum(x["seconds"] for x in tr)
            s["row_traffic_GBps"] = b / sec / 1e9 if sec else None
            s["row_traffic_bytes_per_step"] = b / max(1, sum(x["steps"] for x in tr))
    tmax = str(max(threads_list))
    lsh = out["systems"].get("lsh", {}).get("median_samples_per_s", {}).get(tmax)
    out["ratios"] = {}
    for other in ("torch", "all", "random"):
        o = out["systems"].get(other, {}).get("median_samples_per_s", {}).get(tmax)
        if lsh and o:
            out["ratios"][f"lsh/{other}"] = lsh / o
    out["scaling"] = {}
    for system, s in out["systems"].items():
        m = s.get("median_samples_per_s", {})
        priced = amortised_scaling(s.get("segments", {}))
        if priced:
            s["amortised"] = priced
            m = priced["samples_per_s"]
        if m.get("1"):
            s["efficiency"] = {t: m[t] / m["1"] / int(t) for t in m}
        if m.get("1") and m.get("2"):
            sc = out["scaling"][system] = {"sps1": m["1"], "sps2": m["2"], "efficiency_1_2": m["2"] / m["1"] / 2}
            med = s["median_samples_per_s"]
            if priced:
                sc["median_efficiency_1_2"] = med["2"] / med["1"] / 2
                sc.update({f"{part}_efficiency_1_2": e["2"] / 2 for part, e in priced["speedup"].items() if "2" in e})
                sc["rebuilds"] = priced["rebuilds"]
    return out


def amortised_scaling(segments: dict[str, list[dict]]) -> dict | None:
    """Samples/s per thread count with the index rebuilds charged at the run's own rate.

    Why. One trainer serves every thread count in turn, and a rebuild (seconds at the 670K shape)
    lands in whichever segment runs when the schedule calls it. On 2026-12-05 the last three
    rounds' 2-thread segments held one rebuild each and their 1-thread segments none, so the ratio
    of median samples/s read 0.67 where the steps alone scaled 0.80. Here a thread count's cost
    per sample is the median of its segments' step seconds per sample, plus the rebuilds per
    sample of the whole run (every thread count's segments) times its own seconds per rebuild.

    segments: thread count -> the segments of one system ({samples_per_s, seconds, timings:
    {step, rebuild}, rebuilds}). Returns None where they lack the timings (dense PyTorch) or a
    thread count has none; else {samples_per_s: {t: 1 / cost}, speedup: {"steps": {t: x},
    "rebuild": {t: x}} over 1 thread, rebuilds: "priced" | "none" | "unpriced: ..."}. A run whose
    rebuilds all fell in some thread counts' segments cannot price them in the others: the costs
    are then the steps' alone ("unpriced"); seconds of index work without a whole rebuild (a
    cluster index's refreshes) are charged per sample where the run had no rebuild at all."""
    segs = {t: [g for g in gs if "rebuilds" in g and "timings" in g] for t, gs in segments.items()}
    if not segs or any(not gs or len(gs) != len(segments[t]) for t, gs in segs.items()):
        return None

    def samples(g):
        return g["samples_per_s"] * g["seconds"]

    total_samples = sum(samples(g) for gs in segs.values() for g in gs)
    per_sample_rebuilds = sum(g["rebuilds"] for gs in segs.values() for g in gs) / total_samples
    step_cost = {t: float(np.median([g["timings"]["step"] / samples(g) for g in gs])) for t, gs in segs.items()}
    rebuild_seconds = {t: sum(g["timings"]["rebuild"] for g in gs) for t, gs in segs.items()}
    events = {t: sum(g["rebuilds"] for g in gs) for t, gs in segs.items()}
    if per_sample_rebuilds == 0:
        rebuild_cost = {t: rebuild_seconds[t] / sum(samples(g) for g in segs[t]) for t in segs}
        status, per_rebuild = "none", {}
    elif all(events.values()):
        per_rebuild = {t: rebuild_seconds[t] / events[t] for t in segs}
        rebuild_cost = {t: per_sample_rebuilds * per_rebuild[t] for t in segs}
        status = "priced"
    else:
        missing = sorted((t for t, n in events.items() if not n), key=int)
        rebuild_cost, per_rebuild = {t: 0.0 for t in segs}, {}
        status = f"unpriced: no rebuild in the {', '.join(missing)}-thread segments"
    cost = {t: step_cost[t] + rebuild_cost[t] for t in segs}
    speedup = {"steps": {t: step_cost["1"] / step_cost[t] for t in segs}} if "1" in segs else {}
    if per_rebuild and "1" in per_rebuild:
        speedup["rebuild"] = {t: per_rebuild["1"] / per_rebuild[t] for t in per_rebuild}
    return {"samples_per_s": {t: 1.0 / c for t, c in cost.items()}, "speedup": speedup, "rebuilds": status,
            "rebuilds_per_1k_samples": per_sample_rebuilds * 1000}
