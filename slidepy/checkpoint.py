"""Checkpoints: one `.npz` file of named arrays plus a JSON metadata entry, written atomically.

File layout. A checkpoint is an uncompressed zip in NumPy's `.npz` layout (so `np.load` can read
it too). Besides one `<name>.npy` member per array it holds `__meta__.npy`, a uint8 array of
UTF-8 JSON:

    {"format": "slidepy-checkpoint", "version": 1,
     "arrays": {name: {"shape": [...], "dtype": "<f4"}, ...},   # manifest, checked on load
     "meta": {...}}                                              # the caller's metadata

`meta` must be JSON-serialisable; it comes back as JSON types (tuples become lists, dict keys
become strings).

Atomic writes. `save_checkpoint` writes `<path>.tmp-<pid>` in the target directory, flushes and
fsyncs it, renames it over `path` with `os.replace`, then fsyncs the directory. A crash at any
point leaves either the old file or the new one at `path`, never a mix; a crash before the rename
may leave a temp file, which `list_checkpoints` and `latest_checkpoint` ignore and
`remove_stale_temp_files` deletes once its writer process is gone (the trainer calls it at start).

Run directories keep checkpoints as `<run_dir>/checkpoints/step-{step:09d}.npz`.

Every problem with a file on disk is raised as `CheckpointError` naming the file and the cause.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile

import numpy as np

from slidepy.errors import CheckpointError

__all__ = [
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_meta",
    "check_shapes",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "remove_stale_temp_files",
]

FORMAT = "slidepy-checkpoint"
VERSION = 1
META_KEY = "__meta__"
CHECKPOINT_DIR = "checkpoints"

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # first local file header / empty archive
_STEP_RE = re.compile(r"^step-(\d{9,})\.npz$")
_TMP_RE = re.compile(r"^step-\d{9,}\.npz\.tmp-(\d+)$")


# ------------------------------------------------------------------------------------ writing


def _encode_meta(arrays: dict, meta: dict) -> np.ndarray:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "arrays": {
            name: {"shape": list(arr.shape), "dtype": arr.dtype.str} for name, arr in arrays.items()
        },
        "meta": meta,
    }
    try:
        text = json.dumps(header, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {exc}") from exc
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _write_npz(fileobj, entries: dict) -> None:
    """Write `entries` (name -> array) as an uncompressed `.npz` zip into an open binary file.

    This is what `np.savez` does, without its keyword-argument interface, under which an array
    named "file" or "allow_pickle" would collide with savez's own parameters.
    """
    with zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in entries.items():
            with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _fsync_dir(dirname: str) -> None:
    """Make a rename durable. Best effort: Windows cannot open a directory for fsync and some
    network filesystems refuse it; the file itself is complete and synced either way."""
    if os.name != "posix":
        return
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path, arrays: dict, meta: dict) -> None:
    """Write `arrays` (name -> np.ndarray) and `meta` (JSON-serialisable dict) to `path` atomically.

    Creates the parent directory if needed. Arrays are stored uncompressed, C-ordered, with their
    exact dtype and shape. Raises CheckpointError for a reserved or non-string name, a non-array
    or object-dtype value, or metadata that JSON cannot encode; OSError passes through (disk full,
    permissions), after the temp file is removed.
    """
    path = os.fspath(path)
    if not isinstance(arrays, dict):
        raise CheckpointError(f"checkpoint arrays must be a dict, got {type(arrays).__name__}")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint meta must be a dict, got {type(meta).__name__}")
    entries = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or not name or name == META_KEY:
            raise CheckpointError(f"invalid checkpoint array name {name!r}")
        if not isinstance(arr, np.ndarray):
            raise CheckpointError(
                f"checkpoint array {name} must be a numpy array, got {type(arr).__name__}"
            )
        if arr.dtype.hasobject:
            raise CheckpointError(f"checkpoint array {name} has object dtype, which is not stored")
        entries[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    meta_bytes = _encode_meta(entries, meta)

    dirname = os.path.dirname(os.path.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp_path, "wb") as f:
            _write_npz(f, {META_KEY: meta_bytes, **entries})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.remove(tmp_path)
        except OSError:
            pass
        raise
    _fsync_dir(dirname)


# ------------------------------------------------------------------------------------ reading


def _open_zip(path: str) -> zipfile.ZipFile:
    """Open `path` as a zip, turning every failure into a CheckpointError that says why."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not head:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes); it may be from an interrupted copy"
        )
    if not any(m.startswith(head) for m in _ZIP_MAGICS):
        raise CheckpointError(f"{path} is not a slidepy checkpoint (not a .npz/zip file)")
    try:
        return zipfile.ZipFile(path, mode="r")
    except Exception as exc:  # BadZipFile, OSError, struct errors, ...
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt (cannot read the zip directory: {exc})"
        ) from exc


def _read_member(zf: zipfile.ZipFile, path: str, member: str) -> np.ndarray:
    try:
        with zf.open(member) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except Exception as exc:  # CRC mismatch, short read, bad .npy header, ...
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt (cannot read {member}: "
            f"{type(exc).__name__}: {exc})"
        ) from exc


def _read_header(zf: zipfile.ZipFile, path: str) -> dict:
    """Read and validate `__meta__`: format marker, version and array manifest."""
    member = META_KEY + ".npy"
    if member not in zf.namelist():
        raise CheckpointError(f"{path} is not a slidepy checkpoint (it has no {META_KEY} entry)")
    raw = _read_member(zf, path, member)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(
            f"{path} is not a slidepy checkpoint ({META_KEY} is {raw.dtype} {raw.shape}, "
            "not uint8 JSON bytes)"
        )
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has unreadable metadata: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(
            f"{path} is not a slidepy checkpoint (format marker is {found!r}, "
            f"expected {FORMAT!r})"
        )
    version = header.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this slidepy reads version "
            f"{VERSION}"
        )
    manifest = header.get("arrays")
    ok = isinstance(manifest, dict) and isinstance(header.get("meta"), dict)
    if ok:
        for spec in manifest.values():
            ok = ok and isinstance(spec, dict) and "shape" in spec and "dtype" in spec
    if not ok:
        raise CheckpointError(f"checkpoint {path} has malformed metadata (bad arrays/meta fields)")
    return header


def read_checkpoint_meta(path) -> dict:
    """Read only the metadata of checkpoint `path` (cheap: the arrays are not loaded).

    Validates the format marker and version; raises CheckpointError like `load_checkpoint`.
    """
    path = os.fspath(path)
    with _open_zip(path) as zf:
        return _read_header(zf, path)["meta"]


def load_checkpoint(path):
    """Load checkpoint `path`: returns `(arrays, meta)`, arrays a dict name -> np.ndarray.

    Raises CheckpointError if the file is missing, not a zip/npz, truncated or corrupt (CRC
    errors included), lacks `__meta__`, has a foreign format marker or an unsupported version,
    or its arrays disagree with the stored manifest.
    """
    path = os.fspath(path)
    with _open_zip(path) as zf:
        header = _read_header(zf, path)
        manifest = header["arrays"]
        members = {n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")}
        members.discard(META_KEY)
        missing = [n for n in manifest if n not in members]
        if missing:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its metadata lists array {missing[0]} "
                "but the file does not contain it"
            )
        arrays = {}
        for name, spec in manifest.items():
            arr = _read_member(zf, path, name + ".npy")
            want_shape = tuple(spec["shape"])
            if arr.shape != want_shape or arr.dtype.str != spec["dtype"]:
                raise CheckpointError(
                    f"checkpoint {path} is corrupt: array {name} is {arr.dtype.str} "
                    f"{arr.shape} but its metadata says {spec['dtype']} {want_shape}"
                )
            arrays[name] = arr
    return arrays, header["meta"]


def check_shapes(arrays: dict, expected: dict) -> None:
    """Check loaded `arrays` against `expected`: name -> (shape, dtype); dtype None skips dtype.

    Raises CheckpointError naming the first problem, in the order of `expected`: a missing array,
    a shape mismatch ("checkpoint weights.1 has shape (1000, 128) but the config needs
    (983, 128)"), a dtype mismatch; then any array the config does not expect.
    """
    for name, (shape, dtype) in expected.items():
        if name not in arrays:
            raise CheckpointError(f"checkpoint has no array {name}, which the config needs")
        arr = arrays[name]
        want_shape = tuple(int(d) for d in shape)
        if tuple(arr.shape) != want_shape:
            raise CheckpointError(
                f"checkpoint {name} has shape {tuple(arr.shape)} but the config needs {want_shape}"
            )
        if dtype is not None and arr.dtype != np.dtype(dtype):
            raise CheckpointError(
                f"checkpoint {name} has dtype {arr.dtype} but the config needs {np.dtype(dtype)}"
            )
    extra = [name for name in arrays if name not in expected]
    if extra:
        listed = ", ".join(extra)
        raise CheckpointError(f"checkpoint has array(s) the config does not use: {listed}")


# ------------------------------------------------------------------------------ run directory


def checkpoint_path(run_dir, step: int) -> str:
    """`<run_dir>/checkpoints/step-{step:09d}.npz` (a str)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return os.path.join(os.fspath(run_dir), CHECKPOINT_DIR, f"step-{int(step):09d}.npz")


def list_checkpoints(run_dir) -> list:
    """`[(step, path), ...]` of the checkpoint files in `run_dir`, ascending by step.

    Only names of the form `step-<digits>.npz` count: temp files of interrupted writes are
    ignored. A missing directory gives []. Files are not opened.
    """
    ckpt_dir = os.path.join(os.fspath(run_dir), CHECKPOINT_DIR)
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        m = _STEP_RE.match(name)
        full = os.path.join(ckpt_dir, name)
        if m and os.path.isfile(full):
            found.append((int(m.group(1)), full))
    found.sort()
    return found


def latest_checkpoint(run_dir):
    """Path of the newest checkpoint in `run_dir` whose metadata reads cleanly, or None.

    Newer files that fail to open are skipped with a warning. Only the header is checked, not
    the arrays; `load_checkpoint` still validates the full file.
    """
    for _step, path in reversed(list_checkpoints(run_dir)):
        try:
            read_checkpoint_meta(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning, stacklevel=2)
            continue
        return path
    return None


def prune_checkpoints(run_dir, keep_last: int) -> list:
    """Delete old checkpoints, keeping the newest `keep_last` (>= 1) readable ones.

    Walks from the newest step down; once `keep_last` checkpoints whose metadata reads cleanly
    have been seen, every older checkpoint is deleted. Unreadable files newer than that are left
    alone (so a corrupt newest file never costs the last good one). Temp files are not touched.
    Returns the deleted paths.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, (int, np.integer)) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    kept = 0
    removed = []
    for _step, path in reversed(list_checkpoints(run_dir)):
        if kept >= keep_last:
            os.remove(path)
            removed.append(path)
            continue
        try:
            read_checkpoint_meta(path)
        except CheckpointError:
            continue
        kept += 1
    return removed


def _process_exists(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale_temp_files(run_dir) -> list:
    """Delete `step-*.npz.tmp-<pid>` files in `run_dir`'s checkpoint directory whose writer is gone
    (a process killed mid-write leaves one, as large as a checkpoint). Temp files of processes
    that still run (a concurrent writer) are left alone. Returns the deleted paths."""
    ckpt_dir = os.path.join(os.fspath(run_dir), CHECKPOINT_DIR)
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        m = _TMP_RE.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _process_exists(pid):
            continue
        full = os.path.join(ckpt_dir, name)
        try:
            os.remove(full)
        except FileNotFoundError:
            continue
        removed.append(full)
    return removed
