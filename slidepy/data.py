"""Datasets: the CSR `Dataset` type, text loading (XC / LIBSVM, plain or gzip) with a binary
cache, and an XC writer.

Shape letters: B samples, nnz feature entries, nlab label entries (both summed over samples),
D = `n_features`, N = `n_labels`.

    ds = load_dataset("Bibtex/train.txt")          # XC, header gives B, D, N
    ds = load_dataset("a.svm", n_features=2**20)   # LIBSVM, ids 1-based, D given
    write_dataset(ds, "copy.txt.gz")               # XC text, gzip by suffix

Formats
-------
One sample per line, `l1,l2,... f:v f:v ...` (syntax details in `slidepy.parse`).

- **XC** (Extreme Classification Repository): a header line `B D N`, then exactly B data lines.
  Label and feature ids are 0-based.
- **LIBSVM** multi-label: no header. Feature ids are 1-based by convention (`index_base=1`;
  pass `index_base=0` for 0-based files), label ids are taken as written (0-based). D and N are
  `max id + 1` over the file unless `n_features` / `n_labels` are given, in which case larger ids
  are errors. Pass the training set's D and N when loading its test set (an XC header may count
  fewer; more is an error).
- `format="auto"`: XC if the first non-empty line has two or more tokens and no `:` (three
  integers; a damaged header is then reported as such), else LIBSVM. A leading UTF-8 byte-order
  mark is skipped.
- gzip is detected by its magic bytes, whatever the file is called.

Semantics worth knowing:

- An empty label field (the line starts with whitespace) is a sample without labels; a line with
  labels and no features is a sample without features; an empty line is a sample with neither.
  Every line after the XC header is a sample (a file's final newline does not start one), so
  stray blank lines show up as a line-count mismatch rather than being dropped, except blank (or
  space-only) lines at the end, past the samples the header counts, which are no samples.
- Duplicate feature ids within a line are kept as separate entries, in file order. As CSR this
  means "summed" (a dot product adds both); nothing here merges them.
- Duplicate labels within a line are kept too; the engine deduplicates label sets.

Errors
------
Every problem raises `DataError("<path>:<line>: <reason>: <line excerpt>")`, lines 1-based and
counting the XC header as line 1: malformed tokens, ids out of range or negative, nan/inf or
float32-overflowing values, a malformed header, a header sample count that disagrees with the
number of data lines (too many, or too few: a truncated file), an empty file. With
`skip_bad_lines=True`, bad *data lines* are dropped instead, a `UserWarning` says how many, and
the returned Dataset records `skipped_lines` and `first_bad` (the first `MAX_BAD_REPORTED`
messages). File-level problems (header, line count, empty file) always raise.

Cache
-----
After a successful parse the arrays are saved to `cache_dir` (default: `default_cache_dir()`,
~/.cache/slidepy; never beside the source, whose directory may be shared or read-only), named
`<file name>-<hash of its absolute path>.slidepy-cache.npz` so two sources with the same name do
not collide. The cache records the source's size and
`mtime_ns` and the load options that shape the result (format, index_base, n_features,
n_labels, skip_bad_lines); a later load uses it only if all match, otherwise it re-parses and
overwrites it. Writes go through `atomic.atomic_write` (temp file, fsync, rename); an unwritable location or an
unreadable cache silently means "no cache".
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slidepy import parse
from slidepy.atomic import atomic_write
from slidepy.errors import DataError

FORMATS = ("auto", "xc", "libsvm")
# How many bad-line messages a skip_bad_lines load keeps in `Dataset.first_bad`.
MAX_BAD_REPORTED = 5
# Line excerpts in error messages are cut to this many characters.
EXCERPT_CHARS = 120
CACHE_SUFFIX = ".slidepy-cache.npz"
# Bump when the cache layout or the parse semantics change: old caches are then ignored.
CACHE_VERSION = 1

_INT32_MAX = np.iinfo(np.int32).max
_ARRAY_DTYPES = {
    "x_indptr": np.int64,
    "x_indices": np.int32,
    "x_values": np.float32,
    "y_indptr": np.int64,
    "y_indices": np.int32,
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A multi-label dataset as two CSR matrices sharing their rows (samples).

    Arrays (1-D, C-contiguous; other integer/float dtypes are converted on construction):
    - `x_indptr` (B+1,) int64, `x_indices` (nnz,) int32 in [0, D), `x_values` (nnz,) float32:
      features. Ids within a row are in file order and may repeat (see module docstring).
    - `y_indptr` (B+1,) int64, `y_indices` (nlab,) int32 in [0, N): labels, no values; may
      repeat within a row.
    `n_features` (D) and `n_labels` (N) are the dimensions; `source` names the origin in
    messages. `skipped_lines` / `first_bad` report lines dropped by `skip_bad_lines`.

    Construction checks the arrays' consistency (lengths, monotone indptr, id ranges) and raises
    `DataError` naming `source`. Not hashable by value and no `==` (arrays); compare fields.
    """

    x_indptr: np.ndarray
    x_indices: np.ndarray
    x_values: np.ndarray
    y_indptr: np.ndarray
    y_indices: np.ndarray
    n_features: int
    n_labels: int
    source: str = "<memory>"
    skipped_lines: int = 0
    first_bad: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name, dtype in _ARRAY_DTYPES.items():
            object.__setattr__(self, name, _as_array(getattr(self, name), name, dtype, self.source))
        for name in ("n_features", "n_labels"):
            v = getattr(self, name)
            is_int = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            if not is_int or not 0 <= v <= _INT32_MAX:
                raise DataError(f"{self.source}: {name} must be an int in [0, 2**31), got {v!r}")
            object.__setattr__(self, name, int(v))
        _check_csr(self.x_indptr, self.x_indices, self.n_features, "x", self.source)
        _check_csr(self.y_indptr, self.y_indices, self.n_labels, "y", self.source)
        if self.x_values.size != self.x_indices.size:
            raise DataError(
                f"{self.source}: x_values has {self.x_values.size} entries, "
                f"x_indices {self.x_indices.size}"
            )
        if self.y_indptr.size != self.x_indptr.size:
            raise DataError(
                f"{self.source}: x_indptr and y_indptr disagree on the sample count "
                f"({self.x_indptr.size - 1} vs {self.y_indptr.size - 1})"
            )

    @property
    def n_samples(self) -> int:
        """B, the number of samples (rows)."""
        return self.x_indptr.size - 1

    @property
    def nnz(self) -> int:
        """Number of feature entries."""
        return int(self.x_indices.size)

    @property
    def avg_labels_per_sample(self) -> float:
        """Mean label count of a sample (duplicates counted); 0.0 for an empty dataset."""
        return self.y_indices.size / self.n_samples if self.n_samples else 0.0

    @property
    def max_labels_per_sample(self) -> int:
        """Largest label count of any sample (duplicates counted); 0 for an empty dataset."""
        if self.n_samples == 0:
            return 0
        return int(np.diff(self.y_indptr).max())

    @property
    def mean_row_norm(self) -> float:
        """Mean L2 norm of the samples that have features (row_norms); 0.0 if none has."""
        filled = np.diff(self.x_indptr) > 0
        return float(self.row_norms()[filled].mean()) if filled.any() else 0.0

    def row_norms(self, rows=None) -> np.ndarray:
        """The L2 norm (float64 sums) of each sample `rows` (default all): (R,) float64. A feature
        id repeated within a row counts once with its values summed, as the dot products see it
        (the rows are merged only when some row's ids are not strictly increasing)."""
        data = self if rows is None else self.subset(rows)
        counts = np.diff(data.x_indptr)
        row_of_entry = np.repeat(np.arange(data.n_samples), counts)
        values = data.x_values.astype(np.float64)
        steps = np.diff(data.x_indices.astype(np.int64))
        if steps.size and not np.all((steps > 0) | (row_of_entry[1:] != row_of_entry[:-1])):
            key = row_of_entry * np.int64(data.n_features) + data.x_indices
            key, slot = np.unique(key, return_inverse=True)
            values = np.bincount(slot.ravel(), weights=values, minlength=key.size)
            row_of_entry = key // np.int64(data.n_features)
        return np.sqrt(np.bincount(row_of_entry, weights=np.square(values), minlength=data.n_samples))

    def subset(self, rows) -> Dataset:
        """The samples `rows` (array-like of ints in [0, B), repeats allowed), in that order.

        Dimensions and `source` are kept; the skip report is not (the subset was not loaded).
        """
        rows = np.asarray(rows)
        if rows.dtype == np.bool_ or (rows.size and rows.dtype.kind not in "iu"):
            raise TypeError(f"subset rows must be integers, got dtype {rows.dtype}")
        rows = rows.astype(np.int64, copy=False).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_samples):
            raise IndexError(f"subset rows must lie in [0, {self.n_samples})")
        x_indptr, x_src = _gather_rows(self.x_indptr, rows)
        y_indptr, y_src = _gather_rows(self.y_indptr, rows)
        return Dataset(
            x_indptr=x_indptr,
            x_indices=self.x_indices[x_src],
            x_values=self.x_values[x_src],
            y_indptr=y_indptr,
            y_indices=self.y_indices[y_src],
            n_features=self.n_features,
            n_labels=self.n_labels,
            source=self.source,
        )


def _as_array(a, name, dtype, source):
    """`a` as a 1-D C-contiguous array of `dtype`, refusing lossy conversions."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise DataError(f"{source}: {name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != dtype:
        want_int = np.dtype(dtype).kind == "i"
        if arr.size and (arr.dtype.kind not in ("iu" if want_int else "iuf")):
            raise DataError(f"{source}: {name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
        if want_int and arr.size and np.dtype(dtype).itemsize < arr.dtype.itemsize:
            info = np.iinfo(dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise DataError(f"{source}: {name} has values outside {np.dtype(dtype)}")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def _check_csr(indptr, indices, dim, which, source):
    """Raise DataError unless (indptr, indices) is a valid CSR structure with ids in [0, dim)."""
    if indptr.size == 0 or indptr[0] != 0 or indptr[-1] != indices.size:
        raise DataError(
            f"{source}: {which}_indptr must start at 0 and end at len({which}_indices) "
            f"= {indices.size}"
        )
    if indptr.size > 1 and np.any(indptr[1:] < indptr[:-1]):
        raise DataError(f"{source}: {which}_indptr is not non-decreasing")
    if indices.size and (indices.min() < 0 or indices.max() >= dim):
        raise DataError(
            f"{source}: {which}_indices must lie in [0, {dim}), found "
            f"[{indices.min()}, {indices.max()}]"
        )


def _gather_rows(indptr, rows):
    """CSR row gather: the new indptr (R+1,) int64 and the source entry of each new entry."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    new_indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    # Entry t of new row r comes from starts[r] + (t - new_indptr[r]).
    src = np.repeat(starts - new_indptr[:-1], lengths) + np.arange(new_indptr[-1], dtype=np.int64)
    return new_indptr, src


def unlabelled_note(ds: Dataset, what: str = "") -> str | None:
    """For a set about to be scored by P@k (`what` names it, e.g. "test"): refused (DataError)
    without a single label, where every P@k would read 0 whatever the model learnt; else a note on
    its unlabelled samples, which score 0 (metrics.py), or None where every sample has labels."""
    if ds.y_indices.size == 0:
        raise DataError(f"{ds.source}: no sample has a label{f' (the {what} set)' if what else ''}, so there is "
                        "nothing to score (slidepy predict writes the predictions of unlabelled data)")
    unlabelled = int(np.count_nonzero(np.diff(ds.y_indptr) == 0))  # blank lines of a headerless file, say
    if not unlabelled:
        return None
    samples = f"{what} samples" if what else "samples"
    return (f"{unlabelled:,} of the {ds.n_samples:,} {samples} in {ds.source} have no labels; they count as 0 in "
            "every P@k and nDCG@k")


def dataset_stats(ds: Dataset) -> dict:
    """Summary counts, named as in the shared data's STATS.txt files.

    Keys: samples, features, labels, nnz, avg_nnz_per_sample, label_assignments,
    avg_labels_per_sample, max_feature_id, max_label_id (-1 if none), distinct_labels_used,
    samples_without_labels, samples_without_features. Averages are 0.0 for an empty dataset.
    """
    b = ds.n_samples
    n_feat = np.diff(ds.x_indptr)
    n_lab = np.diff(ds.y_indptr)
    return {
        "samples": b,
        "features": ds.n_features,
        "labels": ds.n_labels,
        "nnz": ds.nnz,
        "avg_nnz_per_sample": ds.nnz / b if b else 0.0,
        "label_assignments": int(ds.y_indices.size),
        "avg_labels_per_sample": ds.avg_labels_per_sample,
        "max_feature_id": int(ds.x_indices.max()) if ds.x_indices.size else -1,
        "max_label_id": int(ds.y_indices.max()) if ds.y_indices.size else -1,
        "distinct_labels_used": int(np.unique(ds.y_indices).size),
        "samples_without_labels": int(np.count_nonzero(n_lab == 0)),
        "samples_without_features": int(np.count_nonzero(n_feat == 0)),
    }


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_dataset(
    path,
    *,
    format: str = "auto",
    n_features: int | None = None,
    n_labels: int | None = None,
    cache: bool = True,
    cache_dir=None,
    skip_bad_lines: bool = False,
    index_base: int | None = None,
) -> Dataset:
    """Load an XC or LIBSVM multi-label text file (plain or gzip) as a `Dataset`.

    `format`: "auto", "xc" or "libsvm". `n_features` / `n_labels`: for LIBSVM, the dimensions
    (ids must be below them; default: inferred as max id + 1); for XC they must equal the
    header's if given. `index_base`: what the file's first feature id is (default 0 for XC,
    1 for LIBSVM); labels are always 0-based. `cache` / `cache_dir`: see the module docstring.
    `skip_bad_lines`: drop bad data lines with a warning instead of raising.

    Raises `DataError` naming the file (and line, for content problems).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if index_base not in (None, 0, 1):
        raise ValueError(f"index_base must be 0, 1 or None, got {index_base!r}")
    for name, v in (("n_features", n_features), ("n_labels", n_labels)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {v!r}")
    path = Path(path)
    source = str(path)
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e.strerror or e}") from None
    if not path.is_file():
        raise DataError(f"{source}: not a regular file")
    key = {
        "version": CACHE_VERSION,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        # a copy that keeps the mtime (cp -p, rsync -t, tar x) onto the same size still changes
        # these two; at worst (a chmod, a rename) they cost a parse
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "format": format,
        "index_base": index_base,
        "n_features": None if n_features is None else int(n_features),
        "n_labels": None if n_labels is None else int(n_labels),
        "skip_bad_lines": bool(skip_bad_lines),
    }
    cache_file = _cache_path(path, cache_dir) if cache else None
    if cache_file is not None:
        ds = _read_cache(cache_file, key, source)
        if ds is not None:
            _warn_skipped(ds)
            return ds
    data = _read_bytes(path)
    ds = _parse_text(
        data,
        source,
        format=format,
        index_base=index_base,
        n_features=n_features,
        n_labels=n_labels,
        skip_bad_lines=skip_bad_lines,
    )
    _warn_skipped(ds)
    if cache_file is not None:
        try:
            unchanged = path.stat()
        except OSError:
            unchanged = None
        # A file rewritten while we read it must not get a cache stamped with its old identity.
        if unchanged is not None and (unchanged.st_size, unchanged.st_mtime_ns) == (
            st.st_size,
            st.st_mtime_ns,
        ):
            _write_cache(cache_file, key, ds)
    return ds


GZIP_MAGIC = b"\x1f\x8b"  # how a gzip stream starts, whatever the file's name


def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped if it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data: {e}") from None
    return raw


def _line_text(buf, lo, hi) -> str:
    """Line excerpt for messages: decoded leniently and cut to EXCERPT_CHARS."""
    text = bytes(buf[lo : min(hi, lo + EXCERPT_CHARS + 1)]).decode("utf-8", "replace")
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "..."
    return _printable(text)


def _printable(text: str) -> str:
    """`text` with control characters shown as '?': a message must not drive the terminal."""
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in text)


def _token_text(buf, lo, hi) -> str:
    text = bytes(buf[lo : min(hi, lo + 40 + 1)]).decode("utf-8", "replace")
    return _printable(text[:40] + "..." if len(text) > 40 else text)


def _reason(code, token, index_base, n_features, n_labels, dims_from) -> str:
    """Human-readable reason for a `parse` status code."""
    if code == parse.BAD_LABEL:
        return f"malformed label list {token!r} (expected comma-separated non-negative integers)"
    if code == parse.BAD_FEATURE:
        # a first token with ':' is read as a feature (a line without labels); "1,2:3" is neither
        also = "; a label list, first on its line, holds no ':'" if "," in token else ""
        return f"malformed feature token {token!r} (expected id:value{also})"
    if code == parse.FEATURE_NEGATIVE:
        zero = index_base == 1 and token.split(":", 1)[0].strip("0") == ""  # id 0 (or 00), not -3
        if zero and dims_from == "header":  # an XC file, told to count from 1
            hint = ("; the file has the XC header, whose ids count from 0: leave out --index-base 1 (or "
                    "data.index_base: 1 in the config)")
        elif zero:
            hint = ("; LIBSVM feature ids start at 1, so a file of 0-based ids needs the XC header line "
                    "'n_samples n_features n_labels' first, or to be read with index base 0 (`--index-base 0` "
                    "for train, evaluate and predict; `data.index_base: 0` in a config)")
        else:
            hint = ""
        return f"feature id in {token!r} is below the index base {index_base}{hint}"
    if code == parse.FEATURE_RANGE:
        return f"feature id in {token!r} is out of range: {dims_from} n_features is {n_features}"
    if code == parse.LABEL_NEGATIVE:
        return f"negative label id {token!r}"
    if code == parse.LABEL_RANGE:
        return f"label id {token} is out of range: {dims_from} n_labels is {n_labels}"
    if code == parse.NONFINITE:
        return f"non-finite feature value in {token!r} (nan, inf, or beyond float32 range)"
    if code == parse.ID_OVERFLOW:
        return f"id in {token!r} does not fit in int32"
    return f"unknown parse status {code}"


def _parse_header(text: str):
    """(B, D, N) from an XC header line, or None if it is not three non-negative integers."""
    parts = text.split()
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    b, d, n = (int(p) for p in parts)
    if d > _INT32_MAX or n > _INT32_MAX:
        return None
    return b, d, n


def format_of_first_line(text: str) -> str:
    """"xc" or "libsvm" for a file whose first non-blank line is `text` (format "auto")."""
    # Three integers and no ':' is an XC header. Two or four+ bare integers are no valid LIBSVM
    # line either; calling them a malformed header gives the more useful message. Several tokens
    # and no id:value among them is no LIBSVM line ("forty 50 10", "-40 50 10").
    tokens = text.split()
    return "xc" if len(tokens) >= 2 and not any(":" in t for t in tokens) else "libsvm"


def index_base_note(path, learnt_from: str | None) -> str | None:
    """What to tell a user whose headerless file `path` meets a model that learnt 0-based feature
    ids, `learnt_from` naming where they came from ("an XC file (train.txt)"); None where it did not.

    Why: a file without the XC header is LIBSVM, whose ids count from 1 by convention, while an
    XC file's count from 0. A copy of XC data with its header left off (a common way to make a
    file of new samples) then has every feature read as the one before it: no error unless some
    line holds feature 0, and predictions that are quietly wrong."""
    if learnt_from is None or file_format(path) != "libsvm":
        return None
    return (f"{path} has no header line, so it is read as LIBSVM, whose feature ids count from 1; the model learnt "
            f"from {learnt_from}, whose ids count from 0. If {path}'s count from 0, pass --index-base 0 "
            "(data.index_base: 0), or add the XC header 'n_samples n_features n_labels'.")


def file_format(path) -> str:
    """"xc" or "libsvm": the format `load_dataset(path)` reads the file as, from its first
    non-blank line (plain or gzip; reads no more than that line's block of the file)."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f) if head == GZIP_MAGIC else f
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
                if line:
                    return format_of_first_line(line)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data: {exc}") from None
    return "libsvm"


def _parse_text(
    data: bytes,
    source: str,
    *,
    format: str = "auto",
    index_base: int | None = None,
    n_features: int | None = None,
    n_labels: int | None = None,
    skip_bad_lines: bool = False,
) -> Dataset:
    """Parse a whole file's text (already decompressed) into a Dataset; see `load_dataset`."""
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        data = data[3:]
    nul = data.find(b"\x00", 0, 4096)
    if nul >= 0:  # text never holds one; say so instead of echoing the bytes as a bad header
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(f"{source}:{line}: a NUL byte at offset {nul}: a binary file, not XC or LIBSVM text")
    if b"\r" in data and b"\n" not in data and data.count(b"\r") > 1:
        # Classic Mac OS line ends: the parser reads CR as a space, so every line would run into one
        raise DataError(f"{source}: lines end in a carriage return (CR) alone; convert them to LF (or CRLF)")
    buf = np.frombuffer(data, dtype=np.uint8)
    line_lo, line_hi = parse.split_lines(buf)
    first = 0  # first non-blank line
    while first < line_lo.size and not bytes(buf[line_lo[first] : line_hi[first]]).strip():
        first += 1
    if first == line_lo.size:
        raise DataError(f"{source}:1: empty file")
    first_text = _line_text(buf, line_lo[first], line_hi[first])
    if format == "auto":  # from the whole line: its excerpt may cut the first id:value off
        format = format_of_first_line(bytes(buf[line_lo[first] : line_hi[first]]).decode("utf-8", "replace"))
    if index_base is None:
        index_base = 0 if format == "xc" else 1

    if format == "xc":
        header_text = bytes(buf[line_lo[first] : line_hi[first]]).decode("utf-8", "replace")
        header = _parse_header(header_text)
        if header is None:
            raise DataError(
                f"{source}:{first + 1}: malformed header (expected 'n_samples n_features "
                f"n_labels'): {first_text}"
            )
        n_rows, dim_x, dim_y = header
        for name, given, found in (
            ("n_features", n_features, dim_x),
            ("n_labels", n_labels, dim_y),
        ):
            if given is not None and found > given:
                raise DataError(
                    f"{source}:{first + 1}: header has {name}={found}, more than the {given} requested"
                )
        first_data = first + 1
        n_data = line_lo.size - first_data
        if n_data < n_rows:
            raise DataError(
                f"{source}:{first_data + n_data + 1}: file ends after {n_data} data lines but the "
                f"header says {n_rows} samples (truncated file?)"
            )
        if n_data > n_rows:
            lo_d, hi_d = line_lo[first_data:], line_hi[first_data:]
            short = np.flatnonzero(hi_d - lo_d <= 64)  # (only on this error path) blank, or spaces alone
            blank = short[[not bytes(buf[lo_d[i]:hi_d[i]]).strip() for i in short]] if short.size else short
            if blank.size >= n_data - n_rows and np.array_equal(blank[blank.size - (n_data - n_rows):],
                                                              np.arange(n_rows, n_data)):
                # blank lines after the samples the header counts (an editor's or a script's extra
                # newline at the end): not samples
                line_lo, line_hi = line_lo[:first_data + n_rows], line_hi[:first_data + n_rows]
            elif blank.size:  # the likelier culprit than the last line
                bad = first_data + int(blank[0])
                raise DataError(f"{source}:{bad + 1}: blank line; the header says {n_rows} samples but the "
                                f"file has {n_data} data lines ({blank.size} blank)")
            if line_lo.size - first_data > n_rows:
                bad = first_data + n_rows
                raise DataError(
                    f"{source}:{bad + 1}: header says {n_rows} samples but the file has {n_data} data "
                    f"lines: {_line_text(buf, line_lo[bad], line_hi[bad])}"
                )
        # ids are checked against the header's bounds; a set loaded for a wider model (a test set
        # whose header counts only the features it uses) then takes the requested dimensions
        bound_x, bound_y, dims_from = dim_x, dim_y, "header"
        dim_x = dim_x if n_features is None else int(n_features)
        dim_y = dim_y if n_labels is None else int(n_labels)
    else:
        first_data = 0
        bound_x = -1 if n_features is None else int(n_features)
        bound_y = -1 if n_labels is None else int(n_labels)
        dims_from = "given"

    lo = np.ascontiguousarray(line_lo[first_data:])
    hi = np.ascontiguousarray(line_hi[first_data:])
    n_lines = lo.size
    status = np.empty(n_lines, dtype=np.int8)
    err_lo = np.empty(n_lines, dtype=np.int64)
    err_hi = np.empty(n_lines, dtype=np.int64)
    n_feat = np.empty(n_lines, dtype=np.int64)
    n_lab = np.empty(n_lines, dtype=np.int64)
    max_feat = np.empty(n_lines, dtype=np.int64)
    max_lab = np.empty(n_lines, dtype=np.int64)
    parse.count_lines(
        buf, lo, hi, index_base, bound_x, bound_y,
        status, err_lo, err_hi, n_feat, n_lab, max_feat, max_lab,
    )  # fmt: skip

    bad = np.flatnonzero(status != parse.OK)
    first_bad = []
    for k in bad[: 1 if not skip_bad_lines else MAX_BAD_REPORTED]:
        token = _token_text(buf, err_lo[k], err_hi[k])
        reason = _reason(int(status[k]), token, index_base, bound_x, bound_y, dims_from)
        excerpt = _line_text(buf, lo[k], hi[k])
        first_bad.append(f"{source}:{first_data + k + 1}: {reason}: {excerpt}")
    if bad.size and not skip_bad_lines:
        raise DataError(first_bad[0])
    rows = np.flatnonzero(status == parse.OK).astype(np.int64)

    if format == "libsvm":
        # Inferred dimensions come from the kept rows only.
        dim_x = int(max_feat[rows].max(initial=-1)) + 1 if n_features is None else int(n_features)
        dim_y = int(max_lab[rows].max(initial=-1)) + 1 if n_labels is None else int(n_labels)

    x_indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(n_feat[rows], out=x_indptr[1:])
    y_indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(n_lab[rows], out=y_indptr[1:])
    x_indices = np.empty(x_indptr[-1], dtype=np.int32)
    x_values = np.empty(x_indptr[-1], dtype=np.float32)
    y_indices = np.empty(y_indptr[-1], dtype=np.int32)
    n_changed = parse.fill_lines(
        buf, lo, hi, rows, index_base, bound_x, bound_y,
        x_indptr, y_indptr, x_indices, x_values, y_indices,
    )  # fmt: skip
    if n_changed:  # both passes run the same worker on the same bytes: this is a bug
        raise RuntimeError(f"{source}: {n_changed} lines parsed differently in the two passes")
    return Dataset(
        x_indptr=x_indptr,
        x_indices=x_indices,
        x_values=x_values,
        y_indptr=y_indptr,
        y_indices=y_indices,
        n_features=dim_x,
        n_labels=dim_y,
        source=source,
        skipped_lines=int(bad.size),
        first_bad=first_bad if skip_bad_lines else [],
    )


def _warn_skipped(ds: Dataset) -> None:
    if ds.skipped_lines:
        shown = "\n  ".join(ds.first_bad)
        warnings.warn(
            f"{ds.source}: skipped {ds.skipped_lines} bad line(s); first:\n  {shown}",
            UserWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """$SLIDEPY_CACHE_DIR, else $XDG_CACHE_HOME/slidepy, else ~/.cache/slidepy: never beside the
    data, which may be shared or read-only (as root, a read-only directory is still writable)."""
    if os.environ.get("SLIDEPY_CACHE_DIR"):
        return Path(os.environ["SLIDEPY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slidepy"


def cache_path_for(path, cache_dir=None) -> Path:
    """Where `load_dataset` keeps the binary cache of `path` (see the module docstring)."""
    path = Path(path)
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{path.name}-{digest}{CACHE_SUFFIX}"


def _cache_path(path: Path, cache_dir):
    """Cache file for `path`, or None if `cache_dir` cannot be created."""
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return cache_path_for(path, cache_dir)


def _read_cache(cache_file: Path, key: dict, source: str):
    """The cached Dataset if `cache_file` exists and its stored key equals `key`, else None."""
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("key") != key:
                return None
            arrays = {name: z[name] for name in _ARRAY_DTYPES}
        return Dataset(
            **arrays,
            n_features=meta["n_features"],
            n_labels=meta["n_labels"],
            source=source,
            skipped_lines=meta["skipped_lines"],
            first_bad=list(meta["first_bad"]),
        )
    except FileNotFoundError:
        return None
    except Exception:  # a corrupt or foreign cache file is just a miss; it gets overwritten
        return None


def _write_cache(cache_file: Path, key: dict, ds: Dataset) -> None:
    """Save `ds` to `cache_file` atomically; any OSError (read-only dir, full disk) is ignored."""
    meta = {
        "key": key,
        "n_features": ds.n_features,
        "n_labels": ds.n_labels,
        "skipped_lines": ds.skipped_lines,
        "first_bad": ds.first_bad,
    }
    arrays = {name: getattr(ds, name) for name in _ARRAY_DTYPES}
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    try:
        atomic_write(cache_file, lambda f: np.savez(f, meta=meta_bytes, **arrays))
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def format_dataset(ds: Dataset, format: str = "xc") -> bytes:
    """`ds` as text: XC (header `B D N`, 0-based ids) or LIBSVM (no header, feature ids + 1).

    One `l1,l2 f:v f:v` line per sample. Values are written with the fewest digits that read
    back (with `load_dataset`) to the same float32. Raises DataError if a value is nan/inf (it
    could not be read back).
    """
    header, body = _format_parts(ds, format)
    return header + body.tobytes()


def _format_parts(ds: Dataset, format: str):
    """(header bytes, body as a uint8 array) of `format_dataset`, without joining them."""
    if format not in ("xc", "libsvm"):
        raise ValueError(f"format must be 'xc' or 'libsvm', got {format!r}")
    if ds.x_values.size and not np.all(np.isfinite(ds.x_values)):
        raise DataError(f"{ds.source}: cannot write non-finite feature values")
    index_base = 0 if format == "xc" else 1
    # Digits once per value, shared by the length pass and the write pass.
    mant = np.empty(ds.nnz, dtype=np.int32)
    exp10 = np.empty(ds.nnz, dtype=np.int8)
    parse.shortest_decimals(ds.x_values, mant, exp10)
    csr = (ds.x_indptr, ds.x_indices, ds.x_values, mant, exp10, ds.y_indptr, ds.y_indices)
    line_len = np.empty(ds.n_samples, dtype=np.int64)
    parse.format_lengths(*csr, index_base, line_len)
    line_start = np.zeros(ds.n_samples + 1, dtype=np.int64)
    np.cumsum(line_len, out=line_start[1:])
    body = np.empty(line_start[-1], dtype=np.uint8)
    parse.format_lines(*csr, index_base, line_start, body)
    header = f"{ds.n_samples} {ds.n_features} {ds.n_labels}\n".encode() if format == "xc" else b""
    return header, body


def write_dataset(ds: Dataset, path, *, format: str = "xc") -> None:
    """Write `ds` to `path` as XC text (or LIBSVM with `format="libsvm"`), atomically.

    gzip-compressed if the name ends with `.gz`. Round-trips: `load_dataset(path)` returns the
    same arrays and dimensions (for LIBSVM pass `n_features` / `n_labels`, which the file does
    not record).
    """
    path = Path(path)
    header, body = _format_parts(ds, format)

    def write(f):
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)

    try:
        atomic_write(path, write)
    except OSError as e:
        raise DataError(f"{path}: cannot write: {e.strerror or e}") from None
