"""scripts/deps_satisfied.py: `make install` skips pip's dependency resolution only when every
runtime dependency is installed at an allowed version."""

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("tomllib")  # Python >= 3.11; before it the script always answers "full install"
pytest.importorskip("packaging")

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "deps_satisfied.py"
_spec = importlib.util.spec_from_file_location("deps_satisfied", _SCRIPT)
deps_satisfied = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deps_satisfied)


def write_pyproject(tmp_path, dependencies):
    path = tmp_path / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in dependencies)
    path.write_text(f'[project]\nname = "x"\nversion = "0"\ndependencies = [{listed}]\n')
    return path


def test_installed_dependencies_are_satisfied(tmp_path):
    numpy_version = metadata.version("numpy")
    path = write_pyproject(tmp_path, ["numpy>=1.0", f"numpy=={numpy_version}", "PyYAML>=5",
                                      "numpy>=999; python_version < '3'"])  # a marker that does not apply
    assert deps_satisfied.unmet(path) == []
    assert deps_satisfied.main([str(path)]) == 0


def test_missing_or_too_old_dependencies_are_named(tmp_path):
    path = write_pyproject(tmp_path, ["numpy>=999", "surely-not-installed-pkg-xyz>=1", "click>=1"])
    missing = deps_satisfied.unmet(path)
    assert len(missing) == 2
    assert missing[0].startswith("numpy ") and "wants >=999" in missing[0]
    assert missing[1] == "surely-not-installed-pkg-xyz (not installed)"
    assert deps_satisfied.main([str(path)]) == 1


def test_doubt_means_a_full_install(tmp_path, capsys):
    broken = tmp_path / "pyproject.toml"
    broken.write_text("[project\nnot toml")
    assert deps_satisfied.main([str(broken)]) == 1
    assert deps_satisfied.main([str(tmp_path / "absent.toml")]) == 1
    assert "cannot tell" in capsys.readouterr().err


def test_a_venv_without_packaging_uses_pips_copy_or_says_plainly(tmp_path, capsys, monkeypatch):
    """A fresh virtual environment has no `packaging` but pip's own copy: the check still answers
    (make install then skips pip's resolution there too). Without either, pip installs as usual,
    and the line says so instead of reading like an error."""
    monkeypatch.setitem(sys.modules, "packaging.requirements", None)  # import raises ImportError
    pyproject = str(write_pyproject(tmp_path, ["click>=1"]))
    assert deps_satisfied.main([pyproject]) == 0
    monkeypatch.setitem(sys.modules, "pip._vendor.packaging.requirements", None)
    assert deps_satisfied.main([pyproject]) == 1
    err = capsys.readouterr().err
    assert "pip installs the dependencies" in err and "packaging" in err and "cannot tell" not in err


def test_the_repository_pyproject_is_read():
    # the suite runs with slidepy's dependencies installed, so the repository's own list is met
    done = subprocess.run([sys.executable, str(_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
