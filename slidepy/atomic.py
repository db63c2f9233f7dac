"""The one atomic file writer: every file slidepy writes whole goes through `atomic_write`
(checkpoints, the parsed-data cache, written datasets, a trimmed metrics.jsonl).

    atomic_write(path, lambda f: f.write(data))

`write(f)` fills a temp file `<path>.tmp-<pid>-<8 hex>` beside `path` (same directory, so same
filesystem and an atomic rename); the file is flushed and fsynced, renamed over `path` with
`os.replace`, and then the directory is fsynced so that the rename itself is durable. A crash at
any point leaves the old file or the new one at `path`, never a mix. A failure removes the temp
file and propagates; a process killed mid-write (no cleanup runs) leaves it behind, and
`remove_stale_temps` deletes it once its writer process is gone.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import BinaryIO, Callable

# `<name>.tmp-<pid>` or `<name>.tmp-<pid>-<hex>`: the pid says whether the writer still runs.
TEMP_RE = re.compile(r"^.+\.tmp-(\d+)(?:-[0-9a-f]+)?$")


def temp_path(path) -> str:
    """A fresh temp name beside `path`: unique across processes (pid) and threads (random)."""
    return f"{os.fspath(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def atomic_write(path, write: Callable[[BinaryIO], None]) -> None:
    """Replace `path` by the bytes `write(f)` writes into a binary file object, atomically and
    durably. The parent directory must exist. Errors (OSError from a full disk, or whatever
    `write` raises) propagate after the temp file is removed."""
    path = os.fspath(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def fsync_dir(dirname: str) -> None:
    """Make a rename in `dirname` durable. Best effort: Windows cannot open a directory for fsync
    and some network filesystems refuse it; the file itself is complete and synced either way."""
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


def process_exists(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale_temps(directory) -> list[str]:
    """Delete the temp files in `directory` whose writer process is gone (a process killed
    mid-write leaves one, as large as the file it was writing). Temp files of processes that
    still run (a concurrent writer) are left alone. Returns the deleted paths."""
    directory = os.fspath(directory)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        m = TEMP_RE.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and process_exists(pid):
            continue
        full = os.path.join(directory, name)
        try:
            os.remove(full)
        except FileNotFoundError:
            continue
        removed.append(full)
    return removed
