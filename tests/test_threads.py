"""threads.py: the thread settings slidepy gives OpenBLAS hold whatever was imported first."""

import os
import subprocess
import sys

import pytest


def _openblas_timeout_after(script: str, env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


_TIMEOUT_PROBE = """
import numpy
from threadpoolctl import ThreadpoolController
libs = [l for l in ThreadpoolController().lib_controllers
        if l.internal_api == "openblas" and hasattr(l.dynlib, "openblas_thread_timeout")
        and hasattr(l.dynlib, "openblas_read_env") and hasattr(l.dynlib, "blas_thread_shutdown_")]
if not libs:
    print("no-openblas")
else:
    import slidepy
    a = numpy.ones((300, 300))
    assert (a @ a)[0, 0] == 300.0  # the restarted threads still compute
    print(libs[0].dynlib.openblas_thread_timeout())
"""


def test_openblas_loaded_before_slidepy_takes_up_its_timeout():
    """numpy imported first: OpenBLAS had read its environment already, and slidepy has it read
    OPENBLAS_THREAD_TIMEOUT=4 again (threads.reread_openblas_settings); a value the user set
    stays."""
    got = _openblas_timeout_after(_TIMEOUT_PROBE, {})
    if got == "no-openblas":
        pytest.skip("numpy is not on an OpenBLAS with the symbols slidepy uses")
    assert got == "4"
    assert _openblas_timeout_after(_TIMEOUT_PROBE, {"OPENBLAS_THREAD_TIMEOUT": "6"}) == "6"
