"""scripts/bench.py end to end on a tiny generated dataset: results.json fields and results.md.

Runs the real subprocess workers (one per system) with a few short segments; torch joins only
where it imports. About a minute on 2 cores (JIT-cached kernels), hence `slow`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
_spec = importlib.util.spec_from_file_location("bench", _SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_time_to_p1_interpolates():
    curve = [{"train_seconds": 1.0, "P@1": 0.2}, {"train_seconds": 3.0, "P@1": 0.6}]
    assert bench.time_to_p1(curve, 0.4) == pytest.approx(2.0)
    assert bench.time_to_p1(curve, 0.1) == pytest.approx(0.5)
    assert bench.time_to_p1(curve, 0.7) is None


def test_row_traffic_bytes():
    # 10 active rows x 4 passes + 3 optimizer rows x 8 passes, 128 floats of 4 bytes each
    assert bench.row_traffic_bytes(10, 3) == (10 * 4 + 3 * 8) * 512


@pytest.mark.slow
def test_bench_tiny_end_to_end(tmp_path):
    systems = "lsh,all,random"  # torch has its own tests; CI installs no torch
    opts = bench.build_parser().parse_args([
        "--out", str(tmp_path), "--datasets", "tiny", "--systems", systems, "--n-train", "600",
        "--epochs", "1", "--evals", "2", "--repeats", "2", "--segment-seconds", "0.2", "--threads", "1,2",
        "--no-bandwidth"])
    bench.run_benchmark(opts)
    res = json.loads((tmp_path / "results.json").read_text())
    entry = res["datasets"]["tiny"]
    names = systems.split(",")
    for s in names:
        r = entry["systems"][s]
        assert "error" not in r, r
        for key in ("P@1", "P@5", "train_seconds", "samples_per_s", "peak_rss_mb", "curve"):
            assert key in r, (s, key)
        assert 0.0 <= r["P@1"] <= 1.0 and r["peak_rss_mb"] > 0 and r["curve"]
    for s in ("lsh", "all", "random"):
        r = entry["systems"][s]
        assert r["compile_seconds"] >= 0 and len(r["active_mean"]) == 2
        assert set(r["time_share"]) == {"kernel", "optimizer", "rebuild", "other"}
    tp = entry["throughput"]
    for s in names:
        med = tp["systems"][s]["median_samples_per_s"]
        assert set(med) == {"1", "2"} and all(v > 0 for v in med.values())
        assert len(tp["systems"][s]["segments"]["2"]) == 2
    assert {"lsh/all", "lsh/random"} <= set(tp["ratios"])
    assert "efficiency_1_2" in tp["scaling"]["lsh"]
    assert tp["systems"]["lsh"]["row_traffic_GBps"] > 0
    assert "lsh_vs_all_sps" in entry["targets"] and "lsh_thread_efficiency_1_2" in entry["targets"]
    md = (tmp_path / "results.md").read_text()
    assert "| system |" in md and "## tiny" in md and "| target |" in md
    for s in names:
        assert f"| {s} |" in md
