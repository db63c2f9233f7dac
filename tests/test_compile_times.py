"""scripts/compile_times.py: per-function compile seconds, nested compiles taken out of their callers."""

import importlib.util
from pathlib import Path

import pytest
import yaml
from numba import njit
from numba.core import event

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compile_times.py"
_spec = importlib.util.spec_from_file_location("compile_times", _SCRIPT)
compile_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compile_times)


def test_clock_splits_a_callers_compile_from_its_callees():
    @njit
    def inner(x):
        return x * 2.0 + 1.0

    @njit
    def outer(x):
        return inner(x) - inner(x + 1.0)

    clock = compile_times.CompileClock().install()
    try:
        assert outer(1.0) == -2.0
    finally:
        event.unregister("numba:compile", clock)
    rows = {r["function"].rsplit(".", 1)[-1]: r for r in clock.rows()}
    assert set(rows) >= {"inner", "outer"}
    # inner compiled while outer was typed: outer's total holds it, outer's own does not (the three
    # figures are rounded to the ms, each by up to half of one: 1.5 ms apart at most)
    assert rows["outer"]["with_callees_s"] >= rows["outer"]["own_s"] + rows["inner"]["with_callees_s"] - 1.5e-3
    assert rows["inner"]["own_s"] == pytest.approx(rows["inner"]["with_callees_s"], abs=1e-3)
    assert all(r["own_s"] > 0 for r in rows.values())
    outer(2.0)  # compiled already: nothing more is counted
    assert {r["function"]: r["own_s"] for r in clock.rows()} == {r["function"]: r["own_s"] for r in rows.values()}


@pytest.mark.slow
def test_cold_run_lists_the_training_kernel(tiny_config, tmp_path, capsys):
    """A whole cold start of a tiny config in a child process (compiles every kernel: slow)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    r = compile_times.measure(str(path), ["training.threads=1"], helper=False)
    names = [row["function"] for row in r["functions"]]
    assert "slidepy.kernels.train_batch" in names and r["exit"] == 0
    assert 0 < sum(row["own_s"] for row in r["functions"]) <= r["wall_s"]
    assert r["compile_s"] > 0
