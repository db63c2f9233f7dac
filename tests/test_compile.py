"""Compile cost: a quick-start run compiles each kernel once (issue 10: a cold quick start within
30 s on 2 cores, of which compiling is most)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Put first in the scripts below: `compiled` lists every function numba compiles in the process
# from then on (not those loaded from the cache), numba's own included.
_LISTENER = """
import json, sys
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__module__ + "." + e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e):
        pass
event.register("numba:compile", Listener())
"""

# Trains the quick start for a few steps (LSH training, table rebuilds, the exact evaluation and
# the LSH recall diagnostic), then lists every njit function of slidepy compiled more than once.
_SCRIPT = _LISTENER + """
from numba.core.dispatcher import Dispatcher
from slidepy import Trainer, load_config
from slidepy.engine import later_kernels, training_jobs
cfg = load_config(sys.argv[1], ["training.max_steps=3", "output.run_dir=" + sys.argv[2]])
trainer = Trainer(cfg, progress=False)
trainer.fit()
twice = {}
for name, module in list(sys.modules.items()):
    if name.startswith("slidepy."):
        for attr, fn in vars(module).items():
            if isinstance(fn, Dispatcher) and fn.py_func.__module__ == name and len(fn.signatures) > 1:
                twice[name + "." + attr] = [str(sig) for sig in fn.signatures]
jobs = training_jobs(trainer.engine, trainer.train_data) + later_kernels(trainer.engine, trainer.train_data)
names = [k.py_func.__module__ + "." + k.py_func.__qualname__ for k, _ in jobs]
print(json.dumps({"twice": twice, "n_jobs": len(jobs),
                  "jobs_compiled_here": [i for i, name in enumerate(names) if name in compiled],
                  "strings": [name for name in compiled if name.startswith("numba.cpython.unicode")]}))
"""


# Trains the quick start for a few steps, then one step down each output path (batch products and
# per-sample records, with an index refresh), and prints, for each kernel the compile helper is
# given (engine.training_jobs' training driver, engine.later_kernels), whether this process
# holds it for the helper's argument types. (The backward worker, the other training job, is held
# only where train_chunk compiled here: a warm run loads train_chunk whole, with its callees.)
_LATER_SCRIPT = """
import json, sys
from slidepy import Trainer, load_config
from slidepy.engine import later_kernels, training_jobs
from slidepy.precompile import signature
cfg = load_config(sys.argv[1], ["training.max_steps=3", "output.run_dir=" + sys.argv[2]])
trainer = Trainer(cfg, progress=False)
trainer.fit()
engine, data = trainer.engine, trainer.train_data
for products in ("always", "never"):
    engine.output_products = products
    engine.train_step(data, data.n_samples - 1 - __import__("numpy").arange(64))
for index in engine.lsh:
    if index is not None:
        index.refresh(engine.layers[-1].weights, False, engine.layers[-1].bias)
print(json.dumps({kernel.py_func.__qualname__ + str(i): str(signature(args)) in map(str, kernel.signatures)
                  for i, (kernel, args) in enumerate(training_jobs(engine, data)[1:] + later_kernels(engine, data))}))
"""


def test_compile_helper_gets_the_types_a_run_passes(tmp_path):
    """Each kernel handed to the compile helper is one a quick-start run calls, with the argument
    types it passes: otherwise the helper compiles code nobody loads and the run compiles its own.
    In a fresh process, where a kernel holds only the signatures this run used."""
    proc = subprocess.run([sys.executable, "-c", _LATER_SCRIPT, str(REPO_ROOT / "configs" / "quickstart.yaml"),
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    held = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(held) >= 8
    assert all(held.values()), {name: ok for name, ok in held.items() if not ok}


# Trains the quick start for a few steps and evaluates it, then lists every function numba compiled.
_WARM_SCRIPT = _LISTENER + """
from slidepy import Trainer, load_config
cfg = load_config(sys.argv[1], ["training.max_steps=3", "output.run_dir=" + sys.argv[2]])
Trainer(cfg, progress=False).fit()
print(json.dumps(compiled))
"""


def test_a_warm_run_compiles_nothing(tmp_path):
    """With the JIT cache filled, a run compiles no function at all. numba never caches typed
    List's own methods, so Lists made in Python cost every process their compile (1.7 s of the
    quick start's 2.3 s when the layers were held in one); the layers, scratch and index reach
    the kernels as tuples (network.py). The first run fills the cache, if the suite has not."""
    cmd = [sys.executable, "-c", _WARM_SCRIPT, str(REPO_ROOT / "configs" / "quickstart.yaml")]
    for attempt in ("fill", "warm"):
        proc = subprocess.run(cmd + [str(tmp_path / attempt)], capture_output=True, text=True, cwd=REPO_ROOT,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _helper_compiles_topk_rows(tmp_path, monkeypatch):
    """Start a helper on scoring.topk_rows with a JIT cache in tmp_path; wait for it to succeed
    and check that it cached the kernel. Returns the helper (skips without a spare CPU)."""
    import numpy as np

    from slidepy.precompile import compile_in_helper
    from slidepy.scoring import topk_rows

    monkeypatch.setenv("SLIDEPY_COMPILE_HELPER", "1")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    args = (np.zeros((2, 3), np.float32), np.zeros(3, np.float32), np.zeros((2, 1), np.int32),
            np.zeros((2, 1), np.float32))
    helper = compile_in_helper([(topk_rows, args)])
    if helper is None:
        pytest.skip("no spare CPU for a helper")
    assert helper.wait(timeout=300)
    assert list((tmp_path / "cache").rglob("*topk_rows*.nbi")), "nothing cached"
    return helper


def test_claim_gives_each_job_to_one_process(tmp_path):
    from slidepy.precompile import claim

    assert claim(str(tmp_path), 3)
    assert not claim(str(tmp_path), 3)
    assert claim(str(tmp_path), 4)


def test_the_run_takes_the_helpers_list_from_its_end(tmp_path):
    """Helper.share compiles jobs from the end of the list until it meets one the helper has
    claimed, skips one it cannot compile (the call that needs it compiles it, as in the helper),
    then waits for the helper and removes the claims."""
    import numpy as np
    from numba import njit

    from slidepy.precompile import Helper, claim

    @njit
    def twice(x):
        return x * 2

    @njit
    def thrice(x):
        return x * 3

    claims = tmp_path / "claims"
    claims.mkdir()
    jobs = [(twice, (np.float64(1),)), (thrice, (np.zeros(2), np.zeros(2))), (thrice, (np.int64(1),))]
    assert claim(str(claims), 0)  # the helper's: it has reached job 0
    helper = Helper(subprocess.Popen([sys.executable, "-c", "pass"]), jobs, str(claims))
    assert helper.share(timeout=60)
    assert [str(sig) for sig in thrice.signatures] == ["(int64,)"]  # job 2 here; job 1 failed, skipped
    assert twice.signatures == []  # job 0 left to the helper
    assert not claims.exists()


def test_compile_helper_fills_the_cache(tmp_path, monkeypatch):
    """The helper process compiles a kernel into the JIT cache this process reads, and reports a
    kernel it could not compile."""
    import numpy as np

    from slidepy.precompile import compile_in_helper
    from slidepy.scoring import topk_rows

    assert _helper_compiles_topk_rows(tmp_path, monkeypatch).kernels == ["slidepy.scoring.topk_rows"]
    bad = compile_in_helper([(topk_rows, (np.zeros(3, np.float32),))])  # wrong arity: cannot compile
    assert bad is not None and not bad.wait(timeout=300)


def test_compile_helper_imports_this_slidepy_wherever_it_runs(tmp_path, monkeypatch):
    """The helper compiles the slidepy this process runs, not one its working directory happens
    to hold: `slidepy train` run from another checkout (console script, editable install) once had
    the helper compile that checkout's kernels into cache entries this process never loads."""
    import slidepy.precompile  # noqa: F401 - this process's slidepy, imported before the decoy is on the path
    import slidepy.scoring  # noqa: F401

    decoy = tmp_path / "slidepy"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy checkout was imported')\n")
    monkeypatch.chdir(tmp_path)
    # as under the console script: the working directory first, this checkout not on the path
    monkeypatch.setattr(sys, "path", [""] + [p for p in sys.path if p not in ("", str(REPO_ROOT))])
    _helper_compiles_topk_rows(tmp_path, monkeypatch)  # the decoy would have failed its import


def test_compile_helper_can_be_switched_off(monkeypatch):
    from slidepy.precompile import compile_in_helper
    from slidepy.scoring import topk_rows

    monkeypatch.setenv("SLIDEPY_COMPILE_HELPER", "0")
    assert compile_in_helper([(topk_rows, ())]) is None
    monkeypatch.setenv("SLIDEPY_COMPILE_HELPER", "1")
    assert compile_in_helper([]) is None


@pytest.mark.slow
def test_quickstart_compiles_each_kernel_once(tmp_path):
    """Two signatures of one function are two compiles (e.g. an int64 id where another caller
    passes int32): each kernel the quick start reaches is typed one way only. In a subprocess with
    an empty JIT cache (a cached kernel loads without compiling its callees, hiding their
    signatures), so slow: the whole cold compile, and no direct call from another test counts.
    The kernels handed to the compile helper (precompile.py) load from the cache it filled."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "jit-cache"))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(REPO_ROOT / "configs" / "quickstart.yaml"),
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["twice"] == {}
    # no kernel formats a string: an array-to-array slice assignment checks shapes and compiles
    # numba's string formatting for its error message, ~2 s of a cold start (kernels.store_sum)
    assert out["strings"] == []
    # and, with a spare CPU, the compile helper's list (the training driver and backward worker,
    # the later kernels) was shared: this process compiled the jobs from some point to the end
    # (precompile.Helper.share) and loaded the helper's, which were given the types it passed
    from slidepy.precompile import spare_cpus
    if spare_cpus() >= 1:
        here, n_jobs = out["jobs_compiled_here"], out["n_jobs"]
        assert here == list(range(n_jobs - len(here), n_jobs)) and len(here) < n_jobs, here


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
    for path in sorted((REPO_ROOT / "tests").glob("*.py")) + sorted((REPO_ROOT / "scripts").rglob("*.py")):
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
