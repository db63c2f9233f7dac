"""scripts/thread_scaling.py: the machine-ceiling probe computes what it claims and reports
efficiencies relative to its first thread count."""

import importlib.util
from pathlib import Path

import numpy as np

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "thread_scaling.py"
_spec = importlib.util.spec_from_file_location("thread_scaling", _SCRIPT)
thread_scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(thread_scaling)


def test_vector_probe_adds_the_rows_it_names():
    rng = np.random.default_rng(1)
    rows = rng.random((30, 16), dtype=np.float32)
    ids = rng.integers(0, 30, (2, 7))
    scale = rng.random(7, dtype=np.float32)
    outs = np.zeros((2, 16), np.float32)
    thread_scaling._vector_work(rows, ids, scale, outs, 3)
    expect = 3 * np.stack([(scale[:, None] * rows[ids[t]]).sum(axis=0) for t in range(2)])
    np.testing.assert_allclose(outs, expect, rtol=1e-5)


def test_ceiling_is_relative_to_the_first_thread_count():
    ceiling = thread_scaling.machine_ceiling([1, 2], seconds=0.02)
    assert set(ceiling) == {"vector_fma", "scalar"}
    for effs in ceiling.values():
        assert effs["1"] == 1.0 and set(effs) == {"1", "2"}
        assert 0.0 < effs["2"] < 10.0
