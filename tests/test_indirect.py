"""indirect.py: a driver calls its worker through the worker's address (call_worker) instead of
linking its code in."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit, prange, typeof, types

from slidepy.indirect import call_worker, worker_table


@njit
def scale_rows(x, factor, out, row):
    """out[row] = factor * x[row], and raises for a negative factor."""
    if factor < 0:
        raise ValueError("negative factor")
    for j in range(x.shape[1]):
        out[row, j] = factor * x[row, j]


@njit
def scale_serial(x, factor, out, worker):
    for row in range(x.shape[0]):
        call_worker(scale_rows, worker, (x, factor, out, np.int64(row)))


@njit(parallel=True)
def scale_parallel(x, factor, out, worker):
    for row in prange(x.shape[0]):
        call_worker(scale_rows, worker, (x, factor, out, np.int64(row)))


@njit
def returns_a_value(x):
    return x + 1


def _table(x, factor, out):
    return worker_table(scale_rows, (typeof(x), typeof(factor), typeof(out), types.int64))


@pytest.mark.parametrize("driver", [scale_serial, scale_parallel])
def test_call_worker_runs_the_worker(driver):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    out = np.zeros_like(x)
    factor = np.float32(1.5)
    driver(x, factor, out, _table(x, factor, out))
    np.testing.assert_array_equal(out, factor * x)  # the NumPy reference: one multiply per entry


def test_a_worker_error_reaches_the_caller():
    x = np.ones((2, 3), np.float32)
    out = np.zeros_like(x)
    with pytest.raises(ValueError, match="negative factor"):
        scale_serial(x, np.float32(-1.0), out, _table(x, np.float32(-1.0), out))


def test_a_table_for_other_types_raises_instead_of_calling():
    x = np.ones((2, 3), np.float32)
    out = np.zeros_like(x)
    wrong = _table(x.astype(np.float64), np.float32(1.0), out)  # the worker compiled for float64 rows
    with pytest.raises(ValueError, match="other argument types"):
        scale_serial(x, np.float32(1.0), out, wrong)
    assert not out.any()  # nothing ran


def test_a_table_for_other_types_stops_a_parallel_driver_too():
    """Inside a prange body the mismatch reaches the caller wrapped by numba's parallel region
    (a SystemError whose cause is the ValueError), and no row is computed with misread arguments."""
    x = np.ones((64, 3), np.float32)
    out = np.zeros_like(x)
    wrong = _table(x.astype(np.float64), np.float32(1.0), out)
    with pytest.raises(Exception) as info:
        scale_parallel(x, np.float32(1.0), out, wrong)
    chain = [info.value] + [e for e in (info.value.__cause__, info.value.__context__) if e is not None]
    assert any("other argument types" in str(e) for e in chain), chain
    assert not out.any()


def test_worker_tables_are_stable_and_tell_argument_types_apart():
    """What drivers and kernels.chunk_worker rely on, beyond the calls above: a table is one
    (2,) int64 array; asking again for the same types gives the same table (the compiled worker is
    found, not rebuilt); other types get another address and another fingerprint; and the
    fingerprint is the same number in another process, whatever its hash seed (drivers cached on
    disk compare it with the tables of later processes)."""
    x = np.ones((2, 3), np.float32)
    out = np.zeros_like(x)
    argtypes = (typeof(x), typeof(np.float32(1.0)), typeof(out), types.int64)
    table = worker_table(scale_rows, argtypes)
    assert table.dtype == np.int64 and table.shape == (2,)
    np.testing.assert_array_equal(worker_table(scale_rows, argtypes), table)
    other = worker_table(scale_rows, argtypes[:3] + (types.int32,))
    assert other[0] != table[0] and other[1] != table[1]
    script = ("from numba import types; from slidepy.indirect import fingerprint; "
              "print(fingerprint((types.float32[:, ::1], types.float32, types.float32[:, ::1], types.int64)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    assert int(printed) == int(table[1])


def test_a_worker_must_return_nothing():
    with pytest.raises(TypeError, match="must return nothing"):
        worker_table(returns_a_value, (types.int64,))


def test_a_driver_does_not_compile_its_worker():
    """Typing the call compiles nothing of the worker: the two compile apart (precompile.py)."""

    @njit
    def lazy_worker(out):
        out[0] = 1.0

    @njit
    def driver(out, worker):
        call_worker(lazy_worker, worker, (out,))

    driver.compile((types.float64[::1], types.int64[::1]))
    assert lazy_worker.signatures == []
    out = np.zeros(1)
    driver(out, worker_table(lazy_worker, (typeof(out),)))
    assert out[0] == 1.0
