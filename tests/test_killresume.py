"""SIGKILL a real `slidepy train` at random moments, resume it each time, let it finish.

Nothing can run on SIGKILL, so this checks what the design promises without any cleanup: every
checkpoint on disk is always whole (atomic writes), a resume starts exactly at the newest
checkpoint, no more than `checkpoint_every` logged steps are lost per kill, no step is repeated in
the final metrics.jsonl, and the finished model is bit-identical to an uninterrupted run
(deterministic mode), which proves no batch was skipped or replayed.

checkpoint_every=1 makes the run spend most of its time writing checkpoints (each write is
fsynced). Kills alternate between a random moment and the moment a checkpoint's temp file
appears (mid-write); a mid-write kill leaves a `.tmp-<pid>` file, counted below and deleted by
the next start.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import TINY
from slidepy import Trainer, config_from_dict
from slidepy.checkpoint import load_checkpoint
from slidepy.rundir import list_checkpoints

KILLS = 6
EPOCHS = 30          # 19 batches each: 570 steps, far more than the kills can consume, so the
                     # process is never already finished when a kill is due (a warm cache is fast)
CHECKPOINT_EVERY = 1


def _records(metrics):
    """Parsed metrics.jsonl lines, and how many lines did not parse (a line cut by the kill)."""
    good, bad = [], 0
    if not metrics.exists():
        return good, bad
    for line in metrics.read_text().splitlines():
        try:
            good.append(json.loads(line))
        except ValueError:
            bad += 1
    return good, bad


def _logged_steps(metrics):
    return [r["step"] for r in _records(metrics)[0] if r["event"] == "log"]


def _start(cmd, log_path):
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True), log


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    cfg = copy.deepcopy(TINY)
    run = tmp_path / "run"
    cfg["training"].update(epochs=EPOCHS, log_every=1, deterministic=True)
    cfg["eval"]["recall_samples"] = 0
    cfg["output"].update(run_dir=str(run), checkpoint_every=CHECKPOINT_EVERY, keep_last=3)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    total = EPOCHS * 19

    # The uninterrupted reference, in-process (deterministic: one thread, bit-identical reruns).
    ref_cfg = copy.deepcopy(cfg)
    ref_cfg["output"].update(run_dir=str(tmp_path / "reference"), checkpoint_every=0)
    reference = Trainer(config_from_dict(ref_cfg), progress=False)
    reference.fit()
    assert reference.step == total

    rng = np.random.default_rng(20240521)
    metrics = run / "metrics.jsonl"
    first = [sys.executable, "-m", "slidepy.cli", "train", "--config", str(config), "--no-progress"]
    again = [sys.executable, "-m", "slidepy.cli", "train", "--config", str(run / "config.yaml"), "--out", str(run),
             "--no-progress", "--resume"]
    report = []
    expected_resume = None
    proc, log = _start(first, tmp_path / "log-0.txt")
    try:
        for kill in range(KILLS):
            newest_before = list_checkpoints(run)[-1][0] if list_checkpoints(run) else 0
            # Let the process make progress past the checkpoint it started from, then kill it at a
            # random moment (mostly inside a checkpoint write: that is where the time goes).
            deadline = time.time() + 120
            log_path = tmp_path / f"log-{kill}.txt"
            while time.time() < deadline and proc.poll() is None:
                started = kill == 0 or "resumed from step" in log_path.read_text()
                if started and any(s > newest_before for s in _logged_steps(metrics)):
                    break
                time.sleep(0.02)
            assert proc.poll() is None, (tmp_path / f"log-{kill}.txt").read_text()
            # A random moment measured in progress, not seconds: a warm run does a step a millisecond.
            target = max(_logged_steps(metrics)) + int(rng.integers(0, 8))
            while proc.poll() is None and max(_logged_steps(metrics)) < target:
                time.sleep(0.002)
            aimed = kill % 2 == 1
            if aimed:  # every other kill: the moment a checkpoint's temp file appears
                ckpt_dir = run / "checkpoints"
                until = time.time() + 30
                while time.time() < until and not any(".tmp-" in n for n in os.listdir(ckpt_dir)):
                    pass
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            log.close()
            out = (tmp_path / f"log-{kill}.txt").read_text()
            assert proc.returncode == -signal.SIGKILL
            if expected_resume is not None:
                assert f"resumed from step {expected_resume} " in out, out

            # Every checkpoint file on disk loads, and says the step its name says.
            saved = list_checkpoints(run)
            assert saved, out
            for step, path in saved:
                _, meta = load_checkpoint(path)
                assert meta["step"] == step
            temps = [n for n in os.listdir(run / "checkpoints") if ".tmp-" in n]
            logged = _logged_steps(metrics)
            newest = saved[-1][0]
            lost = max(logged) - newest
            assert 0 <= lost <= CHECKPOINT_EVERY, (logged[-5:], saved)
            report.append({"aimed_at_write": aimed, "killed_at_logged_step": max(logged), "newest_checkpoint": newest,
                           "steps_lost": lost, "mid_write": bool(temps), "cut_metrics_line": _records(metrics)[1] > 0})
            expected_resume = newest
            proc, log = _start(again, tmp_path / f"log-{kill + 1}.txt")

        proc.wait(timeout=300)
        log.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / f"log-{KILLS}.txt").read_text()
    assert proc.returncode == 0, out
    assert f"resumed from step {expected_resume} " in out and f"step {total} " in out

    # The log holds every step exactly once; resume records start at the checkpoint resumed from.
    records, unreadable = _records(metrics)
    assert unreadable == 0
    assert _logged_steps(metrics) == list(range(1, total + 1))
    resumes = [r for r in records if r["event"] == "resume"]
    assert [r["step"] for r in resumes] == [k["newest_checkpoint"] for k in report]
    assert all(r["checkpoint"].endswith(f"step-{r['step']:09d}.npz") for r in resumes)
    assert not [n for n in os.listdir(run / "checkpoints") if ".tmp-" in n]

    # The final model loads, and equals the uninterrupted run bit for bit.
    final_step, final_path = list_checkpoints(run)[-1]
    assert final_step == total
    final = Trainer.load(final_path)
    assert final.step == total
    for a, b in zip(final.engine.layers, reference.engine.layers):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    assert final.evaluate(reference.test_data)["P@1"] == reference.evaluate()["P@1"]

    lost = [k["steps_lost"] for k in report]
    summary = {"kills": len(report), "resumes": len(resumes), "steps_lost_per_kill": lost,
               "kills_mid_checkpoint_write": sum(k["mid_write"] for k in report),
               "kills_cutting_a_metrics_line": sum(k["cut_metrics_line"] for k in report), "total_steps": total}
    print("kill/resume:", json.dumps(summary), json.dumps(report))
    (tmp_path / "summary.json").write_text(json.dumps({"summary": summary, "kills": report}))
