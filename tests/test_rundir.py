"""slidepy.rundir and slidepy.atomic: one live run per directory, metrics trimming, temp files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from slidepy import Trainer, config_from_dict
from slidepy.atomic import atomic_write, remove_stale_temps
from slidepy.cli import main
from slidepy.errors import ConfigError
from slidepy.rundir import LOCK_FILE, RunDir

REPO_ROOT = Path(__file__).resolve().parents[1]
fcntl = pytest.importorskip("fcntl")


def test_second_lock_on_a_live_run_is_refused_with_one_line(tmp_path):
    first, second = RunDir(tmp_path / "run"), RunDir(tmp_path / "run")
    first.lock()
    first.lock()  # idempotent
    with pytest.raises(ConfigError, match=r"^output.run_dir: .*run is held by another Trainer in this process"):
        second.lock()  # this process' pid in run.lock: not "another live run (pid <its own>)"
    first.unlock()
    second.lock()  # free again
    second.unlock()


def test_fit_into_a_directory_another_process_holds_is_refused(tiny_config, tmp_path):
    """Two runs started into one directory: the second is refused before it touches anything,
    both from Python and from the command line (exit 2, one line); the first is unaffected."""
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from slidepy.rundir import RunDir
            held = RunDir({str(run)!r})
            held.lock()
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])))
    try:
        assert holder.stdout.readline().strip() == "locked"
        trainer = Trainer(config_from_dict(tiny_config), progress=False)
        with pytest.raises(ConfigError, match=rf"is in use by another live run \(pid {holder.pid}\)"):
            trainer.fit()
        with pytest.raises(ConfigError, match="in use by another live run"):
            trainer.resume()
        with pytest.raises(ConfigError, match="in use by another live run"):
            trainer.clear_run_dir()
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # no config.yaml, no metrics
        config = tmp_path / "tiny.yaml"
        config.write_text(yaml.safe_dump(tiny_config))
        result = CliRunner().invoke(main, ["train", "--config", str(config), "--no-progress"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"is in use by another live run (pid {holder.pid})" in errors[0]
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (killed: no cleanup ran), so its lock went with it.
    tiny_config["training"]["max_steps"] = 3
    Trainer(config_from_dict(tiny_config), progress=False).fit()
    assert (run / "metrics.jsonl").exists()


def test_lock_is_released_when_fit_ends(tiny_config):
    tiny_config["training"]["max_steps"] = 2
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.fit()
    other = RunDir(trainer.run_dir)
    other.lock()  # would raise if fit had kept it
    other.unlock()


def test_a_log_without_checkpoints_is_refused_to_a_fresh_run_and_cleared_by_resume(tiny_config):
    """A run killed before its first checkpoint leaves metrics.jsonl alone: a fresh run there
    would append its steps 0.. after the old ones, so it is refused like one with checkpoints;
    --resume finds no checkpoint and starts over with a clean log (one start record)."""
    tiny_config["training"]["max_steps"] = 3
    tiny_config["output"]["checkpoint_every"] = 0
    killed = RunDir(tiny_config["output"]["run_dir"])
    for step in (0, 10, 20):  # what the killed attempt logged
        killed.append_metrics({"event": "start" if step == 0 else "log", "step": step})
    with pytest.raises(ConfigError, match=r"already holds the log of an earlier run \(.*metrics\.jsonl, no "
                                          r"checkpoint\); continue it with --resume \(from Python: Trainer\.resume\(\)\), start "
                                          r"over with --overwrite \(Trainer\.clear_run_dir\(\); deletes it\)"):
        Trainer(config_from_dict(tiny_config), progress=False).fit()
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    assert not trainer.resume()
    trainer.fit()
    events = [json.loads(line)["event"] for line in killed.metrics.read_text().splitlines()]
    assert events.count("start") == 1 and events[0] == "start"


def test_trim_metrics_drops_later_steps_and_unreadable_lines(tmp_path):
    run = RunDir(tmp_path)
    for step in (0, 5, 10, 15):
        run.append_metrics({"event": "log", "step": step})
    with open(run.metrics, "a") as f:
        f.write('{"event": "log", "st')
    assert run.trim_metrics(10) == 2
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == [0, 5, 10]
    assert run.trim_metrics(10) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temp file left


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_remove_stale_temps_keeps_live_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [tmp_path / f"metrics.jsonl.tmp-{dead}-0a1b2c3d", tmp_path / f"step-000000001.npz.tmp-{dead}"]
    live = tmp_path / f"config.yaml.tmp-{os.getppid()}-0a1b2c3d"
    other = tmp_path / "notes.tmp"
    for p in stale + [live, other]:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(str(p) for p in stale)
    assert live.exists() and other.exists()
