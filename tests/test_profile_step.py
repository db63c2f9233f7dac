"""scripts/profile_step.py: the step-time split it reports adds up and reflects the work."""

import importlib.util
from pathlib import Path

import yaml

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "profile_step.py"
_spec = importlib.util.spec_from_file_location("profile_step", _SCRIPT)
profile_step = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile_step)


def test_profile_splits_the_step_time(tiny_config, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    r = profile_step.profile(str(path), ["training.threads=1"], steps=6)
    parts = r["kernel_seconds"] + r["optimizer_seconds"] + r["rebuild_seconds"]
    assert 0 < parts <= r["wall_seconds"]  # the phases are inside the timed loop
    assert r["kernel_seconds"] > 0 and r["optimizer_seconds"] > 0 and r["threads"] == 1
    assert r["samples_per_s"] > 0 and r["rows_updated_per_step"] > 0
    assert profile_step.main(["--config", str(path), "--steps", "3", "--threads", "1"]) == 0
    assert "samples/s on 1 threads" in capsys.readouterr().out
