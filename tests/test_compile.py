"""Compile cost: a quick-start run compiles each kernel once (issue 10: a cold quick start within
30 s on 2 cores, of which compiling is most)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Trains the quick start for a few steps (LSH training, table rebuilds, the exact evaluation and
# the LSH recall diagnostic), then lists every njit function of slidepy compiled more than once.
_SCRIPT = """
import json, sys
from numba.core.dispatcher import Dispatcher
from slidepy import Trainer, load_config
cfg = load_config(sys.argv[1], ["training.max_steps=3", "output.run_dir=" + sys.argv[2]])
Trainer(cfg, progress=False).fit()
twice = {}
for name, module in list(sys.modules.items()):
    if name.startswith("slidepy."):
        for attr, fn in vars(module).items():
            if isinstance(fn, Dispatcher) and fn.py_func.__module__ == name and len(fn.signatures) > 1:
                twice[name + "." + attr] = [str(sig) for sig in fn.signatures]
print(json.dumps(twice))
"""


@pytest.mark.slow
def test_quickstart_compiles_each_kernel_once(tmp_path):
    """Two signatures of one function are two compiles (e.g. an int64 id where another caller
    passes int32): each kernel the quick start reaches is typed one way only. In a subprocess with
    an empty JIT cache (a cached kernel loads without compiling its callees, hiding their
    signatures), so slow: the whole cold compile, and no direct call from another test counts."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "jit-cache"))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(REPO_ROOT / "configs" / "quickstart.yaml"),
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_no_test_or_script_names_an_internal_kernel():
    """A function compiled with constants.INTERNAL has no Python entry point: calling it from
    Python crashes the interpreter. So no test or script may name one (they call the public
    kernels, or njit helpers of their own)."""
    import ast
    import importlib

    from numba.core.dispatcher import Dispatcher

    internal = set()
    for name in ("kernels", "selection", "hashing", "tables", "scoring", "optimizer", "metrics", "clusters", "rng"):
        module = importlib.import_module("slidepy." + name)
        internal |= {attr for attr, fn in vars(module).items()
                     if isinstance(fn, Dispatcher) and fn.targetoptions.get("no_cpython_wrapper")}
    assert internal, "no INTERNAL kernels found: has the option moved?"
    for path in sorted((REPO_ROOT / "tests").glob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to slidepy modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slidepy"):
                for alias in node.names:
                    assert alias.name not in internal, f"{path.name}:{node.lineno} imports INTERNAL {alias.name}"
                    modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules |= {alias.asname or alias.name for alias in node.names if alias.name.startswith("slidepy")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert node.attr not in internal, f"{path.name}:{node.lineno} names INTERNAL {node.attr}"
