"""Checkpoints: one `.npz` file of named arrays plus a JSON metadata entry, written atomically.

File layout. A checkpoint is an uncompressed zip in NumPy's `.npz` layout (so `np.load` can read
it too). Besides one `<name>.npy` member per array it holds `__meta__.npy`, a uint8 array of
UTF-8 JSON:

    {"format": "slidepy-checkpoint", "version": 1,
     "arrays": {name: {"shape": [...], "dtype": "<f4"}, ...},   # manifest, checked on load
     "meta": {...}}                                              # the caller's metadata

`meta` must be JSON-serialisable; it comes back as JSON types (tuples become lists, dict keys
become strings).

Atomic writes. `save_checkpoint` goes through `atomic.atomic_write` (temp file beside `path`,
fsync, `os.replace`, fsync of the directory): a crash leaves either the old file or the new one at
`path`, never a mix. Where checkpoints live in a run directory, and which are kept, is rundir.py's.

Every problem with a file on disk is raised as `CheckpointError` naming the file and the cause.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .atomic import atomic_write
from .errors import CheckpointError

__all__ = [
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_meta",
    "check_shapes",
]

FORMAT = "slidepy-checkpoint"
VERSION = 1
META_KEY = "__meta__"

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # first local file header / empty archive


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

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: _write_npz(f, {META_KEY: meta_bytes, **entries}))


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
