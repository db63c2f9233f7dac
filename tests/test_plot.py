"""`slidepy plot`: a PNG of the expected size and panels whose lines are metrics.jsonl's numbers."""

import json
import sys

import pytest
from click.testing import CliRunner

from slidepy.cli import main
from slidepy.configfile import load_config
from slidepy.errors import SlidepyError
from slidepy.trainer import Trainer


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    from tests.conftest import TINY
    import copy

    base = tmp_path_factory.mktemp("runs")
    dirs = []
    for name, lr in (("lr-005", 0.005), ("lr-02", 0.02)):
        cfg = copy.deepcopy(TINY)
        cfg["output"]["run_dir"] = str(base / name)
        cfg["training"].update(epochs=2, lr=lr)
        cfg["eval"]["every"] = 10
        Trainer(load_config(cfg), progress=False).fit()
        dirs.append(base / name)
    return dirs


def _records(run_dir, event):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def test_plotted_data_equals_metrics(run_dirs):
    pytest.importorskip("matplotlib")
    from slidepy.plot import plot_runs

    fig, data = plot_runs(run_dirs)
    axes = fig.get_axes()
    assert len(axes) == 6
    for color_index, run_dir in enumerate(run_dirs):
        evals, logs = _records(run_dir, "eval"), _records(run_dir, "log")
        assert evals and logs
        name = run_dir.name
        lines = {ax_i: {line.get_label(): line for line in axes[ax_i].get_lines()} for ax_i in range(5)}
        for key in ("P@1", "P@5"):
            by_time = lines[0][f"{name} {key}"].get_xydata()
            assert by_time[:, 0].tolist() == [r["train_seconds"] for r in evals]
            assert by_time[:, 1].tolist() == [r[key] for r in evals]
            by_step = lines[1][f"{name} {key}"].get_xydata()
            assert by_step[:, 0].tolist() == [r["step"] for r in evals]
        loss = lines[2][name].get_xydata()
        assert loss[:, 0].tolist() == [r["step"] for r in logs]
        assert loss[:, 1].tolist() == [r["loss"] for r in logs]
        recall = lines[3][name].get_xydata()
        assert recall[:, 1].tolist() == [r["lsh_recall@10"] for r in evals]
        speed = lines[4][name].get_xydata()
        assert speed[:, 1].tolist() == [r["samples_per_s"] for r in logs]
        assert data[name]["time"]["eval"] == pytest.approx(sum(r["eval_seconds"] for r in evals))
    # time split: one stacked bar per run and part
    assert len(axes[5].patches) == 4 * len(run_dirs)


def test_cli_writes_png(run_dirs, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / "curves.png"
    res = CliRunner().invoke(main, ["plot", *map(str, run_dirs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1500, 800)


def test_an_out_of_no_suffix_names_the_png_written_and_an_unknown_format_is_one_line(run_dirs, tmp_path):
    pytest.importorskip("matplotlib")
    runner = CliRunner()
    res = runner.invoke(main, ["plot", str(run_dirs[0]), "--out", str(tmp_path / "curves")])
    assert res.exit_code == 0 and res.output.startswith(f"{tmp_path / 'curves.png'}: 1 run(s)"), res.output
    assert (tmp_path / "curves.png").is_file()
    res = runner.invoke(main, ["plot", str(run_dirs[0]), "--out", str(tmp_path / "c.xyz")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.output.startswith(f"error: {tmp_path / 'c.xyz'}: matplotlib writes no .xyz images; use one of ")
    assert ".png" in res.output and not (tmp_path / "c.xyz").exists()


def test_missing_run_and_missing_matplotlib(run_dirs, tmp_path, monkeypatch):
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "no such run directory" in res.output and "Traceback" not in res.output
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from slidepy.plot import plot_runs

    with pytest.raises(SlidepyError, match=r"pip install -e '\.\[plot\]'"):
        plot_runs(run_dirs)
