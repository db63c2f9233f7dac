"""slidepy.checkpoint: round trip, atomic writes, clear errors for bad files; rundir's checkpoint list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from slidepy import checkpoint as ck
from slidepy.checkpoint import (
    check_shapes,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from slidepy.errors import CheckpointError
from slidepy.rundir import RunDir, checkpoint_path, list_checkpoints, prune_checkpoints


def latest_checkpoint(run_dir):
    """Path of the checkpoint RunDir.newest_good picks (the newest that loads), or None."""
    found = RunDir(run_dir).newest_good()
    return found[0] if found else None

REPO_ROOT = Path(__file__).resolve().parents[1]


def sample_arrays(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((37, 16)).astype(np.float32)
    w[0, 0] = np.nan
    w[0, 1] = -0.0
    return {
        "weights.0": w,
        "bias.0": rng.standard_normal(16).astype(np.float32),
        "weights.1": rng.standard_normal((16, 5)).astype(np.float64).T,  # not C-contiguous
        "tables.0": rng.integers(-1, 100, size=(2, 8, 4)).astype(np.int32),
        "rng_state": rng.integers(0, 2**62, size=3).astype(np.int64),
        "touched": rng.random(9) < 0.5,
        "flags": np.arange(5, dtype=np.uint8),
        "big_endian": np.arange(4, dtype=">f4"),
        "step_scalar": np.array(12345, dtype=np.int64),
        "empty": np.zeros((0, 128), dtype=np.float32),
        "file": np.ones(2, dtype=np.float32),  # would collide with np.savez(file, ...)
        "allow_pickle": np.ones(1, dtype=np.int8),
    }


SAMPLE_META = {
    "step": 1200,
    "config": {"lr": 1e-4, "layers": [128, 1000], "hash": "simhash", "name": "é ü"},
    "loss": 3.25,
    "nothing": None,
    "flag": True,
}


def assert_bit_identical(got, want):
    assert set(got) == set(want)
    for name, arr in want.items():
        assert got[name].dtype == arr.dtype, name
        assert got[name].shape == arr.shape, name
        assert got[name].tobytes() == np.ascontiguousarray(arr).tobytes(), name


def write_raw_npz(path, entries):
    """An npz with exactly these members (no validation), for foreign/corrupt files."""
    with open(path, "wb") as f:
        ck._write_npz(f, entries)


def meta_entry(header):
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ck.npz"
    arrays = sample_arrays()
    save_checkpoint(path, arrays, SAMPLE_META)
    return path, arrays


# ---------------------------------------------------------------------------------- round trip


def test_round_trip_bit_identical(saved):
    path, arrays = saved
    got, meta = load_checkpoint(path)
    assert_bit_identical(got, arrays)
    assert meta == SAMPLE_META
    assert read_checkpoint_meta(path) == SAMPLE_META
    assert got["weights.0"].flags.writeable


def test_readable_by_numpy(saved):
    path, arrays = saved
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["weights.0"], arrays["weights.0"])
        header = json.loads(npz["__meta__"].tobytes())
    assert header["format"] == "slidepy-checkpoint" and header["version"] == 1
    assert header["meta"] == SAMPLE_META
    assert header["arrays"]["weights.0"] == {"shape": [37, 16], "dtype": "<f4"}


def test_uncompressed(saved):
    path, _ = saved
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())


def test_overwrite_and_str_path(tmp_path):
    path = str(tmp_path / "sub" / "dir" / "ck.npz")  # parents are created
    save_checkpoint(path, {"a": np.zeros(3, np.float32)}, {"step": 1})
    save_checkpoint(path, {"a": np.ones(4, np.float32)}, {"step": 2})
    arrays, meta = load_checkpoint(path)
    assert meta == {"step": 2} and arrays["a"].tolist() == [1, 1, 1, 1]
    assert os.listdir(os.path.dirname(path)) == ["ck.npz"]


def test_empty_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "e.npz", {}, {})
    assert load_checkpoint(tmp_path / "e.npz") == ({}, {})


@pytest.mark.parametrize(
    "arrays, meta, match",
    [
        ({"__meta__": np.zeros(1)}, {}, "invalid checkpoint array name"),
        ({"": np.zeros(1)}, {}, "invalid checkpoint array name"),
        ({3: np.zeros(1)}, {}, "invalid checkpoint array name"),
        ({"a": [1, 2]}, {}, "must be a numpy array"),
        ({"a": np.array([None, 1])}, {}, "object dtype"),
        ({"a": np.zeros(1)}, {"x": object()}, "not JSON-serialisable"),
        ({"a": np.zeros(1)}, [1], "meta must be a dict"),
        ([np.zeros(1)], {}, "arrays must be a dict"),
    ],
)
def test_save_rejects_bad_input(tmp_path, arrays, meta, match):
    with pytest.raises(CheckpointError, match=match):
        save_checkpoint(tmp_path / "x.npz", arrays, meta)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------- atomicity


def test_failure_mid_write_keeps_old_file(saved, monkeypatch):
    path, arrays = saved
    real_write = np.lib.format.write_array
    calls = []

    def write_half_then_fail(fp, arr, *args, **kwargs):
        calls.append(arr.shape)
        if len(calls) == 3:  # the meta entry and one array are written, then half of the next
            fp.write(arr.tobytes()[: arr.nbytes // 2])
            raise RuntimeError("simulated crash")
        return real_write(fp, arr, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_half_then_fail)
    new = {name: arr + 1 if arr.dtype.kind == "f" else arr for name, arr in arrays.items()}
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(path, new, {"step": 9999})
    monkeypatch.undo()
    got, meta = load_checkpoint(path)
    assert_bit_identical(got, arrays)
    assert meta == SAMPLE_META
    assert os.listdir(path.parent) == [path.name]  # the temp file was cleaned up


def test_failure_at_rename_keeps_old_file(saved, monkeypatch):
    path, arrays = saved

    def no_replace(src, dst):
        raise OSError("simulated rename failure")

    monkeypatch.setattr(ck.os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated rename"):
        save_checkpoint(path, {"x": np.zeros(3)}, {"step": 1})
    monkeypatch.undo()
    assert_bit_identical(load_checkpoint(path)[0], arrays)
    assert os.listdir(path.parent) == [path.name]


def test_hard_crash_mid_write_in_subprocess(tmp_path):
    """A process killed mid-write (no cleanup runs) leaves the old checkpoint and a temp file."""
    run_dir = tmp_path / "run"
    path = checkpoint_path(run_dir, 100)
    old = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
    save_checkpoint(path, old, {"step": 100})
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from slidepy.checkpoint import save_checkpoint
        real = np.lib.format.write_array
        def crash(fp, arr, *a, **k):
            if arr.dtype == np.float32:
                fp.write(arr.tobytes()[: arr.nbytes // 2])
                fp.flush()
                os._exit(17)
            return real(fp, arr, *a, **k)
        np.lib.format.write_array = crash
        save_checkpoint({path!r}, {{"w": np.zeros((1000, 64), np.float32)}}, {{"step": 200}})
        """
    )
    pythonpath = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=pythonpath)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path)
    assert proc.returncode == 17
    ckdir = os.path.dirname(path)
    leftovers = [n for n in os.listdir(ckdir) if ".tmp-" in n]
    assert len(leftovers) == 1 and os.path.getsize(os.path.join(ckdir, leftovers[0])) > 0
    arrays, meta = load_checkpoint(path)
    assert_bit_identical(arrays, old) and meta == {"step": 100}
    assert list_checkpoints(run_dir) == [(100, path)]
    assert latest_checkpoint(run_dir) == path
    # The next save of the same path still works.
    save_checkpoint(path, {"w": np.ones(2, np.float32)}, {"step": 100})
    assert load_checkpoint(path)[0]["w"].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------- corrupt files


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"ck\.npz does not exist"):
        load_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_meta(tmp_path / "ck.npz")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(path)


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes(tmp_path, seed):
    path = tmp_path / "ck.npz"
    data = np.random.default_rng(seed).integers(0, 256, size=5000, dtype=np.uint8).tobytes()
    path.write_bytes(b"xx" + data)
    with pytest.raises(CheckpointError, match="is not a slidepy checkpoint"):
        load_checkpoint(path)


def test_text_and_npy_files(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_text("step: 100\nweights: [1, 2, 3]\n")
    with pytest.raises(CheckpointError, match=r"not a slidepy checkpoint \(not a \.npz/zip file\)"):
        load_checkpoint(path)
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="not a slidepy checkpoint"):
        load_checkpoint(tmp_path / "w.npy")


def test_truncated_at_many_lengths(saved):
    path, _ = saved
    data = path.read_bytes()
    n = len(data)
    lengths = sorted({1, 2, 3, 4, 10, 30, 100, 1000, n // 3, n // 2, n - 100, n - 22, n - 1})
    for length in lengths:
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        with pytest.raises(CheckpointError):
            read_checkpoint_meta(path)


def test_npz_without_meta(tmp_path):
    path = tmp_path / "ck.npz"
    np.savez(path, weights=np.zeros((3, 4)))
    with pytest.raises(CheckpointError, match="is not a slidepy checkpoint .*no __meta__ entry"):
        load_checkpoint(path)


def test_foreign_zip(tmp_path):
    path = tmp_path / "ck.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="no __meta__ entry"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "meta, match",
    [
        (meta_entry({"format": "other-tool", "version": 1}), "format marker is 'other-tool'"),
        (meta_entry({"version": 1}), "format marker is None"),
        (meta_entry([1, 2, 3]), "format marker is 'list'"),
        (np.frombuffer(b"\xff\xfe not json", dtype=np.uint8), "unreadable metadata"),
        (np.zeros(4, dtype=np.float32), "not uint8 JSON bytes"),
        (
            meta_entry({"format": "slidepy-checkpoint", "version": 2, "arrays": {}, "meta": {}}),
            "format version 2; this slidepy reads version 1",
        ),
        (
            meta_entry({"format": "slidepy-checkpoint", "version": 1, "meta": {}}),
            "malformed metadata",
        ),
    ],
)
def test_foreign_or_unsupported_meta(tmp_path, meta, match):
    path = tmp_path / "ck.npz"
    write_raw_npz(path, {"__meta__": meta, "w": np.zeros(3)})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint_meta(path)


def test_manifest_mismatch(tmp_path):
    header = {
        "format": "slidepy-checkpoint",
        "version": 1,
        "arrays": {"w": {"shape": [3], "dtype": "<f8"}, "b": {"shape": [2], "dtype": "<f4"}},
        "meta": {},
    }
    path = tmp_path / "ck.npz"
    write_raw_npz(path, {"__meta__": meta_entry(header), "w": np.zeros(3)})
    with pytest.raises(CheckpointError, match="lists array b but the file does not contain it"):
        load_checkpoint(path)
    write_raw_npz(path, {"__meta__": meta_entry(header), "w": np.zeros(4), "b": np.zeros(2, "<f4")})
    with pytest.raises(CheckpointError, match=r"array w is <f8 \(4,\) but its metadata says"):
        load_checkpoint(path)


def test_bit_flip_in_array_data_is_caught(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("weights.0.npy")
    # Local header is 30 bytes + name + extra; flip a byte well inside the array payload.
    pos = info.header_offset + 30 + len(info.filename) + 200
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt.*weights.0.npy"):
        load_checkpoint(path)


def test_random_byte_corruption_never_escapes(saved):
    """Any single corrupted byte: the load either raises CheckpointError or returns the data."""
    path, arrays = saved
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(good), size=150, replace=False):
        data = bytearray(good)
        data[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        try:
            got, meta = load_checkpoint(path)
        except CheckpointError:
            continue
        assert_bit_identical(got, arrays)  # e.g. a flipped timestamp in the zip directory
        assert meta == SAMPLE_META


# -------------------------------------------------------------------------------- check_shapes


def test_check_shapes_ok():
    arrays = {"weights.1": np.zeros((983, 128), np.float32), "bias.1": np.zeros(983, np.float32)}
    check_shapes(arrays, {"weights.1": ((983, 128), np.float32), "bias.1": ([983], None)})


@pytest.mark.parametrize(
    "arrays, expected, message",
    [
        (
            {"weights.1": np.zeros((1000, 128), np.float32)},
            {"weights.1": ((983, 128), np.float32)},
            "checkpoint weights.1 has shape (1000, 128) but the config needs (983, 128)",
        ),
        (
            {"bias.1": np.zeros(7, np.float32)},
            {"bias.1": ((983,), np.float32)},
            "checkpoint bias.1 has shape (7,) but the config needs (983,)",
        ),
        (
            {"w": np.zeros(3, np.float64)},
            {"w": ((3,), np.float32)},
            "checkpoint w has dtype float64 but the config needs float32",
        ),
        (
            {"a": np.zeros(1)},
            {"a": ((1,), None), "weights.2": ((5, 5), np.float32)},
            "checkpoint has no array weights.2, which the config needs",
        ),
        (
            {"a": np.zeros(1), "adam_m.0": np.zeros(1), "extra": np.zeros(1)},
            {"a": ((1,), None)},
            "checkpoint has array(s) the config does not use: adam_m.0, extra",
        ),
    ],
)
def test_check_shapes_messages(arrays, expected, message):
    with pytest.raises(CheckpointError) as info:
        check_shapes(arrays, expected)
    assert str(info.value) == message


def test_check_shapes_reports_first_in_expected_order():
    arrays = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(CheckpointError, match="checkpoint b has shape"):
        check_shapes(arrays, {"b": ((3,), None), "a": ((4,), None)})


# ------------------------------------------------------------------------------- run directory


def test_checkpoint_path(tmp_path):
    assert checkpoint_path(tmp_path, 42) == str(tmp_path / "checkpoints" / "step-000000042.npz")
    assert checkpoint_path("runs/x", 0).endswith(os.path.join("checkpoints", "step-000000000.npz"))
    assert checkpoint_path("r", 1234567890).endswith("step-1234567890.npz")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            checkpoint_path(tmp_path, bad)


def populate(run_dir, steps):
    for step in steps:
        arrays = {"w": np.full(2, step, np.int64)}
        save_checkpoint(checkpoint_path(run_dir, step), arrays, {"step": step})


def test_list_and_latest(tmp_path):
    run_dir = tmp_path / "run"
    assert list_checkpoints(run_dir) == []
    assert latest_checkpoint(run_dir) is None
    populate(run_dir, [30, 5, 1000000000, 200])
    ckdir = run_dir / "checkpoints"
    # Noise that must be ignored: temp files, other names, a directory with a matching name.
    (ckdir / "step-000000999.npz.tmp-4242").write_bytes(b"PK\x03\x04partial")
    (ckdir / "step-000000998.npz.tmp").write_bytes(b"")
    (ckdir / "notes.txt").write_text("x")
    (ckdir / "step-12.npz").write_bytes(b"")
    (ckdir / "step-000000777.npz").mkdir()
    steps = [s for s, _ in list_checkpoints(run_dir)]
    assert steps == [5, 30, 200, 1000000000]
    assert all(p == checkpoint_path(run_dir, s) for s, p in list_checkpoints(run_dir))
    assert latest_checkpoint(run_dir) == checkpoint_path(run_dir, 1000000000)


def test_latest_skips_corrupt_with_warning(tmp_path):
    run_dir = tmp_path / "run"
    populate(run_dir, [10, 20])
    newest = checkpoint_path(run_dir, 30)
    with open(newest, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with pytest.warns(RuntimeWarning, match="skipping unreadable checkpoint.*step-000000030"):
        assert latest_checkpoint(run_dir) == checkpoint_path(run_dir, 20)
    with open(checkpoint_path(run_dir, 20), "wb") as f:
        f.write(b"")
    with pytest.warns(RuntimeWarning):
        assert latest_checkpoint(run_dir) == checkpoint_path(run_dir, 10)
    os.remove(checkpoint_path(run_dir, 10))
    with pytest.warns(RuntimeWarning):
        assert latest_checkpoint(run_dir) is None


def test_prune_keeps_newest(tmp_path):
    run_dir = tmp_path / "run"
    populate(run_dir, [1, 2, 3, 4, 5, 6])
    tmp_file = run_dir / "checkpoints" / "step-000000007.npz.tmp-1"
    tmp_file.write_bytes(b"x")
    removed = prune_checkpoints(run_dir, keep_last=2)
    assert removed == [checkpoint_path(run_dir, s) for s in (4, 3, 2, 1)]
    assert [s for s, _ in list_checkpoints(run_dir)] == [5, 6]
    assert tmp_file.exists()
    assert prune_checkpoints(run_dir, keep_last=5) == []
    assert prune_checkpoints(run_dir, keep_last=1) == [checkpoint_path(run_dir, 5)]
    assert prune_checkpoints(tmp_path / "nowhere", keep_last=1) == []
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError):
            prune_checkpoints(run_dir, keep_last=bad)


def test_prune_never_counts_corrupt_as_kept(tmp_path):
    run_dir = tmp_path / "run"
    populate(run_dir, [1, 2, 3])
    Path(checkpoint_path(run_dir, 4)).write_bytes(b"garbage")
    removed = prune_checkpoints(run_dir, keep_last=1)
    assert removed == [checkpoint_path(run_dir, 2), checkpoint_path(run_dir, 1)]
    assert [s for s, _ in list_checkpoints(run_dir)] == [3, 4]
    with pytest.warns(RuntimeWarning):
        assert latest_checkpoint(run_dir) == checkpoint_path(run_dir, 3)


def test_data_paths_resolve_in_the_directory_the_model_was_saved_in(tmp_path, monkeypatch):
    """with_data_paths_from: a relative path that exists from the model's working directory means
    that file (followed through links as the OS does), before one of the same name from here."""
    from slidepy.configfile import config_from_dict
    from slidepy.model import with_data_paths_from

    (tmp_path / "project" / "data" / "inner").mkdir(parents=True)
    (tmp_path / "project" / "data" / "train.txt").write_text("1 2 2\n0 1:1\n")
    (tmp_path / "project" / "link").symlink_to(tmp_path / "project" / "data" / "inner")
    (tmp_path / "here" / "data").mkdir(parents=True)
    (tmp_path / "here" / "data" / "train.txt").write_text("another file of the same name")
    monkeypatch.chdir(tmp_path / "here")
    cfg = config_from_dict({"data": {"train": "data/train.txt", "test": "link/../train.txt", "labels": "gone.txt",
                                     "cache_dir": ".cache/data"}})
    got = with_data_paths_from(cfg, str(tmp_path / "project")).data
    assert got.train == str(tmp_path / "project" / "data" / "train.txt")
    assert got.test == str(tmp_path / "project" / "link" / "../train.txt")  # link/.. is data/, not project/
    assert got.labels == "gone.txt"  # found nowhere: as written, for the error to name
    assert got.cache_dir == str(tmp_path / "project" / ".cache/data")  # the run's cache, not one here
    assert with_data_paths_from(cfg, str(tmp_path / "missing")) is cfg
