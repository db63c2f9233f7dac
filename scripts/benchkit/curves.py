"""P@1 against training seconds: when a system first reaches a given P@1."""

from __future__ import annotations


def time_to_p1(curve: list[dict], target: float) -> float | None:
    """Training seconds of the first eval point whose P@1 >= target; None if none does. Measured
    points only: a line drawn between two evals would claim a time at which nothing was measured
    (and favour the system whose evals are sparser); a tree's one point, at the end of its
    training, reads the same way. A target of 0 or less (nothing learnt) is never met."""
    if target is None or target <= 0:
        return None
    hit = [float(p["train_seconds"]) for p in curve if p.get("P@1") is not None and p["P@1"] >= target]
    return min(hit) if hit else None


def p1_at_epoch(result: dict, epoch: float) -> tuple[float | None, str | None]:
    """(P@1 after `epoch` epochs, a note or None) from a run's curve: the eval point at that epoch,
    else linear interpolation between the points either side; None if the run stopped before."""
    pts = [p for p in result.get("curve", []) if p.get("epoch") is not None and p.get("P@1") is not None]
    for p in pts:
        if abs(p["epoch"] - epoch) < 1e-9:
            return p["P@1"], None
    before = [p for p in pts if p["epoch"] < epoch]
    after = [p for p in pts if p["epoch"] > epoch]
    if not after:
        return None, f"ran {result.get('epochs') or 0:.2f} epochs, fewer than {epoch:g}"
    a = before[-1] if before else {"epoch": 0.0, "P@1": 0.0}
    b = after[0]
    v = a["P@1"] + (b["P@1"] - a["P@1"]) * (epoch - a["epoch"]) / (b["epoch"] - a["epoch"])
    return v, f"P@1 at epoch {epoch:g} interpolated between epochs {a['epoch']:.2f} and {b['epoch']:.2f}"


def time_to_matrix(systems: dict) -> dict:
    """{A: {B: training seconds A takes to reach B's final P@1, or None}} over the systems that
    ran (the diagonal: when A first reached its own final P@1)."""
    ok = {s: r for s, r in systems.items() if "error" not in r and r.get("curve")}
    return {a: {b: time_to_p1(ra["curve"], rb["P@1"]) for b, rb in ok.items()}
            for a, ra in ok.items()}
