"""slidepy.data / slidepy.parse: parser kernels against tests/naive.py, errors, cache, writer,
and the real shared datasets against their STATS.txt."""

from __future__ import annotations

import gzip
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from naive import NaiveParseError, naive_parse, naive_subset

from slidepy import data, parse
from slidepy.data import Dataset, dataset_stats, format_dataset, load_dataset, write_dataset
from slidepy.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ARRAYS = ("x_indptr", "x_indices", "x_values", "y_indptr", "y_indices")


def assert_same(ds, ref, check_dims=True):
    """Dataset `ds` equals the dict/Dataset `ref` exactly (values bitwise as float32)."""
    get = ref.__getitem__ if isinstance(ref, dict) else lambda n: getattr(ref, n)
    for name in ARRAYS:
        got, want = getattr(ds, name), get(name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    if check_dims:
        assert (ds.n_features, ds.n_labels) == (get("n_features"), get("n_labels"))


def parse_bytes(text, **kw):
    return data._parse_text(text.encode() if isinstance(text, str) else text, "<mem>", **kw)


# ---------------------------------------------------------------------------------------------
# Random text files
# ---------------------------------------------------------------------------------------------


def random_value_text(rng):
    """A valid decimal in one of many spellings (sign, no leading digit, exponent, ...)."""
    v = float(rng.lognormal(0.0, 3.0))
    kind = rng.integers(10)
    if kind == 0:
        s = repr(v)
    elif kind == 1:
        s = f"{v:.3f}"
    elif kind == 2:
        s = f"{v:.6e}"
    elif kind == 3:
        s = f"{v:E}"
    elif kind == 4:
        s = str(int(rng.integers(0, 1000)))
    elif kind == 5:
        s = f"{rng.random():.4f}"[1:]  # ".1234"
    elif kind == 6:
        s = f"{int(rng.integers(0, 50))}."  # "7."
    elif kind == 7:
        s = "00" + f"{v:.2f}"
    elif kind == 8:
        s = f"{v:.0e}"
    else:
        s = f"{float(np.float32(v))!r}"
    sign = rng.choice(["", "", "-", "+"])
    return sign + s


def random_text(rng, fmt, n_rows, n_features, n_labels, index_base, header_rows=None):
    """Random valid XC/LIBSVM text exercising every legal corner of the syntax."""
    seps = [" ", "  ", "\t", " \t "]
    out = []
    if fmt == "xc":
        out.append(f"{n_rows if header_rows is None else header_rows} {n_features} {n_labels}\n")
    for _ in range(n_rows):
        n_lab = int(rng.choice([0, 0, 1, 2, 5]))
        labels = rng.integers(0, n_labels, size=n_lab)
        if n_lab > 1 and rng.random() < 0.3:
            labels[1] = labels[0]  # duplicate label
        n_feat = int(rng.choice([0, 1, 3, 12]))
        fids = rng.integers(0, n_features, size=n_feat)
        if n_feat > 1 and rng.random() < 0.3:
            fids[-1] = fids[0]  # duplicate feature id
        feats = [f"{f + index_base}:{random_value_text(rng)}" for f in fids]
        line = ",".join(str(x) for x in labels)
        for tok in feats:
            line += rng.choice(seps) + tok
        if not labels.size and feats and rng.random() < 0.5:
            line = line.lstrip(" \t")  # starting with its first feature: no labels either
        if rng.random() < 0.2:
            line += rng.choice(seps)  # trailing whitespace
        out.append(line + ("\r\n" if rng.random() < 0.1 else "\n"))
    text = "".join(out)
    last_line = text[: -1].rsplit("\n", 1)[-1].rstrip("\r")
    if rng.random() < 0.3 and last_line:  # no final newline (only if the last line is not empty)
        text = text.rstrip("\n").rstrip("\r")
    return text


# ---------------------------------------------------------------------------------------------
# Float parsing
# ---------------------------------------------------------------------------------------------


def random_float_string(rng):
    digits = "0123456789"
    n_int = int(rng.integers(0, 22))
    n_frac = int(rng.integers(0, 22))
    if n_int == 0 and n_frac == 0:
        n_int = 1
    s = rng.choice(["", "-", "+"])
    s += "".join(rng.choice(list(digits), n_int))
    if n_frac or rng.random() < 0.2:
        s += "." + "".join(rng.choice(list(digits), n_frac))
    if rng.random() < 0.6:
        s += rng.choice(["e", "E"]) + rng.choice(["", "-", "+"]) + str(int(rng.integers(0, 50)))
    return s


def call_parse_decimal(s):
    buf = np.frombuffer(s.encode(), dtype=np.uint8)
    return parse.parse_decimal(buf, 0, buf.size)


def test_parse_decimal_matches_python_float():
    rng = np.random.default_rng(0)
    strings = [random_float_string(rng) for _ in range(20000)]
    strings += ["1", "1.0", ".5", "-2e-3", "1E5", "0", "-0", "3.", "007", "1e-45", "1e-46"]
    strings += ["3.4028235e38", "3.4028236e38"]
    strings += ["16777217", "0.1", "123456789012345678901234567890", "0." + "0" * 40 + "15e40"]
    with np.errstate(over="ignore"):
        for s in strings:
            status, value = call_parse_decimal(s)
            assert status == parse.OK, s
            want = float(s)
            assert np.float32(value) == np.float32(want), (s, value, want)
            if np.isfinite(want) and want != 0.0:
                assert abs(value - want) <= 4e-16 * abs(want) or abs(want) < 1e-300, s


@pytest.mark.parametrize(
    "token",
    ["", ".", "-", "+", "e5", "1e", "1e+", "1.2.3", "--1", "0x10", "1,5", "1 ", "abc", "1e5x",
     "+-1", "1_000", ".e1", "na", "infinit"],
)  # fmt: skip
def test_parse_decimal_rejects_malformed(token):
    assert call_parse_decimal(token)[0] == parse.BAD_FEATURE


@pytest.mark.parametrize(
    "token", ["nan", "NaN", "-nan", "inf", "+inf", "-Inf", "Infinity", "INFINITY"]
)
def test_parse_decimal_flags_nonfinite(token):
    assert call_parse_decimal(token)[0] == parse.NONFINITE


def test_writer_values_round_trip_bitwise():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32)
    vals = bits.view(np.float32)
    vals = vals[np.isfinite(vals)]
    specials = np.array(
        [0.0, -0.0, 1.0, 0.1, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1e7,
         123456.79, 0.011765, 2.0**-20, 1e-5, 1e-6, 1e-7, 1234567.0, 12345678.0],
        dtype=np.float32,
    )  # fmt: skip
    vals = np.concatenate([specials, vals])
    ds = Dataset(
        x_indptr=np.array([0, vals.size], dtype=np.int64),
        x_indices=np.zeros(vals.size, dtype=np.int32),
        x_values=vals,
        y_indptr=np.array([0, 0], dtype=np.int64),
        y_indices=np.zeros(0, dtype=np.int32),
        n_features=1,
        n_labels=0,
    )
    text = format_dataset(ds)
    back = parse_bytes(text)
    np.testing.assert_array_equal(back.x_values.view(np.uint32), vals.view(np.uint32))
    # Python's float() reads the writer's text to the same float32 too.
    tokens = text.decode().split("\n")[1].split()
    with np.errstate(over="ignore"):
        py = np.array([float(t.split(":")[1]) for t in tokens]).astype(np.float32)
    np.testing.assert_array_equal(py.view(np.uint32), vals.view(np.uint32))
    assert b"0:0.1 " in text and b"0:-0 " in text and b"0:1e-45" in text


def _dragon4(v):
    """(mant, exp10) of NumPy's shortest round-tripping decimal of float32 v > 0 (Dragon4, the
    digits repr prints), trailing zeros moved into the exponent."""
    digits, exponent = np.format_float_scientific(np.float32(v), unique=True, trim="-").split("e")
    digits = digits.replace(".", "")
    kept = digits.rstrip("0")
    return int(kept), int(exponent) - (len(digits) - 1) + (len(digits) - len(kept))


def _writer_values(seed):
    """Random float32 bit patterns (every exponent, subnormals included, both signs) and short
    decimals such as 0.011765 or 3.2e-9, which have a much shorter form than 9 digits."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=30_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    short = (rng.integers(1, 10**6, 10_000) * 10.0 ** rng.integers(-40, 33, 10_000)).astype(np.float32)
    short = short * rng.choice(np.array([-1, 1], np.float32), short.size)
    vals = np.concatenate([bits, short])
    return vals[np.isfinite(vals) & (vals != 0)]


def test_shortest_decimals_are_numpys_shortest_digits():
    vals = _writer_values(3)
    mant = np.empty(vals.size, np.int32)
    exp10 = np.empty(vals.size, np.int8)
    parse.shortest_decimals(vals, mant, exp10)
    for v, m, e in zip(vals, mant, exp10):
        assert (int(m), int(e)) == _dragon4(abs(v)), (v, m, e)
    m, e = parse.shortest_decimal(np.float32(0.1))
    assert (m, e) == (1, -1)


def test_written_values_are_numpys_shortest_decimals():
    """format_dataset's (format_lines') token of each value is the decimal NumPy prints for the
    float32, digit for digit, in positional form, or scientific past 6 padding zeros."""
    from decimal import Decimal

    vals = _writer_values(4)
    ds = Dataset(x_indptr=np.array([0, vals.size], np.int64), x_indices=np.zeros(vals.size, np.int32),
                 x_values=vals, y_indptr=np.array([0, 0], np.int64), y_indices=np.zeros(0, np.int32),
                 n_features=1, n_labels=0)
    tokens = [t.split(":")[1] for t in format_dataset(ds).decode().split("\n")[1].split()]
    assert len(tokens) == vals.size
    for token, v in zip(tokens, vals):
        want = np.format_float_positional(v, unique=True, trim="-")
        assert Decimal(token) == Decimal(want), (token, want)
        # zeros between the digits and the point: 1230000 pads 4, 0.000123 pads 3
        m, e = _dragon4(abs(v))
        padding = e if e >= 0 else max(0, -e - len(str(m)))
        assert ("e" in token) == (padding > 6), (token, want)


# ---------------------------------------------------------------------------------------------
# Kernels against the naive parser
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", ["xc", "libsvm"])
def test_parser_matches_naive_on_random_files(seed, fmt):
    rng = np.random.default_rng(seed)
    index_base = 0 if fmt == "xc" else int(rng.integers(0, 2))
    text = random_text(rng, fmt, int(rng.integers(1, 300)), 50, 20, index_base)
    ref = naive_parse(text, format=fmt, index_base=index_base)
    ds = parse_bytes(text, format=fmt, index_base=index_base)
    assert_same(ds, ref)
    if fmt == "libsvm":  # dimensions given instead of inferred
        ref = naive_parse(text, format=fmt, index_base=index_base, n_features=60, n_labels=25)
        got = parse_bytes(text, format=fmt, index_base=index_base, n_features=60, n_labels=25)
        assert_same(got, ref)


def corrupt_line(rng, line):
    """A random way to make a data line bad (each one is a distinct error kind)."""
    bad = rng.choice(
        ["3:x", "abc", "3:", ":4", "3:1:2", "-2:1", "999:1", "3:nan", "3:inf", "3:1e999", "3:1e39",
         "3:--1", "3:1.2.3"]
    )  # fmt: skip
    if rng.random() < 0.3:
        features = line.lstrip().split(" ", 1)[-1]
        return rng.choice(["1,,2", "1,", ",1", "-1", "x", "99"]) + " " + features
    return line + " " + bad


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fmt", ["xc", "libsvm"])
def test_first_bad_line_matches_naive(seed, fmt):
    rng = np.random.default_rng(100 + seed)
    n_rows = int(rng.integers(5, 60))
    text = random_text(rng, fmt, n_rows, 50, 20, 0).rstrip("\r\n") + "\n"
    lines = text.split("\n")
    first = 1 if fmt == "xc" else 0
    n_bad = int(rng.integers(1, 4))
    for k in rng.choice(np.arange(first, first + n_rows), size=n_bad, replace=False):
        lines[k] = corrupt_line(rng, lines[k].rstrip("\r"))
    text = "\n".join(lines)
    bounds = {} if fmt == "xc" else {"n_features": 50, "n_labels": 20}
    with pytest.raises(NaiveParseError) as ref:
        naive_parse(text, format=fmt, index_base=0, **bounds)
    with pytest.raises(DataError, match=rf"^<mem>:{ref.value.line}: "):
        parse_bytes(text, format=fmt, index_base=0, **bounds)


def test_split_lines_corners():
    for text, want in [
        (b"", []),
        (b"\n", [b""]),
        (b"a", [b"a"]),
        (b"a\n", [b"a"]),
        (b"a\r\nb", [b"a", b"b"]),
        (b"a\n\nb\n", [b"a", b"", b"b"]),
        (b"\r\n\r", [b"", b""]),
    ]:
        buf = np.frombuffer(text, dtype=np.uint8)
        lo, hi = parse.split_lines(buf)
        assert [bytes(buf[a:b]) for a, b in zip(lo, hi)] == want, text


# ---------------------------------------------------------------------------------------------
# Line syntax and formats
# ---------------------------------------------------------------------------------------------


def test_empty_label_field_no_features_and_duplicates():
    text = "4 10 5\n 3:1 7:0.5\n1,2\n\n2,2 4:1 4:2\n"
    ds = parse_bytes(text)
    np.testing.assert_array_equal(ds.y_indptr, [0, 0, 2, 2, 4])
    np.testing.assert_array_equal(ds.y_indices, [1, 2, 2, 2])  # duplicate label kept
    np.testing.assert_array_equal(ds.x_indptr, [0, 2, 2, 2, 4])
    np.testing.assert_array_equal(ds.x_indices, [3, 7, 4, 4])  # duplicate feature id kept
    np.testing.assert_array_equal(ds.x_values, np.array([1, 0.5, 1, 2], dtype=np.float32))
    stats = dataset_stats(ds)
    assert stats["samples_without_labels"] == 2 and stats["samples_without_features"] == 2
    assert ds.max_labels_per_sample == 2


def test_a_line_of_features_alone_has_no_labels():
    """A line whose first token is a feature (it holds a colon, which no label list can) is a
    sample without labels, as if it started with a space: the input `slidepy predict` reads."""
    bare = parse_bytes("2 10 5\n3:1 7:0.5\n1,2 4:2\n")
    spaced = parse_bytes("2 10 5\n 3:1 7:0.5\n1,2 4:2\n")
    assert_same(bare, spaced)
    np.testing.assert_array_equal(bare.y_indptr, [0, 0, 2])
    np.testing.assert_array_equal(bare.x_indices, [3, 7, 4])
    with pytest.raises(DataError, match=r"<mem>:2: .*'3:x'"):  # a bad first feature is named as a feature
        parse_bytes("1 10 5\n3:x 7:0.5\n")


def test_mean_row_norm_skips_rows_without_features():
    """Rows 1, 2 and 5 (the last) have no features and count for nothing; row 3 repeats feature 4,
    whose values add up (1 + 2: the dot products see 3 x the row), and row 4 lists its ids out of
    order."""
    ds = parse_bytes("6 10 5\n0 3:3 7:4\n1\n2\n2 4:1 6:4 4:2\n0 9:0.5 1:1.2\n1\n")
    want = np.mean([5.0, 5.0, 1.3])
    assert ds.mean_row_norm == pytest.approx(want, rel=1e-7)  # 1.2 is a float32
    assert parse_bytes("1 10 5\n0 9:0.5 1:1.2\n").mean_row_norm == pytest.approx(1.3, rel=1e-7)
    assert parse_bytes("2 4 3\n0\n1\n").mean_row_norm == 0.0
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.1, 2.0, (40, 6)) * (rng.random((40, 6)) < 0.5)
    text = "40 6 2\n" + "".join("0 " + " ".join(f"{j}:{float(v)!r}" for j, v in enumerate(row) if v) + "\n" for row in dense)
    norms = np.linalg.norm(dense.astype(np.float32).astype(np.float64), axis=1)
    assert parse_bytes(text).mean_row_norm == pytest.approx(norms[norms > 0].mean(), rel=1e-6)


def test_format_auto_detection_and_libsvm_defaults():
    xc = parse_bytes("2 5 3\n0 1:1\n2 4:1\n")
    assert (xc.n_features, xc.n_labels) == (5, 3) and xc.x_indices.tolist() == [1, 4]
    svm = parse_bytes("0 1:1\n2 4:1\n")  # libsvm: 1-based feature ids, inferred dims
    assert svm.x_indices.tolist() == [0, 3]
    assert (svm.n_features, svm.n_labels) == (4, 3)
    svm0 = parse_bytes("0 1:1\n2 4:1\n", index_base=0)
    assert svm0.x_indices.tolist() == [1, 4] and svm0.n_features == 5
    with pytest.raises(DataError, match=r"<mem>:1: feature id .* below the index base 1"):
        parse_bytes("0 0:1\n")
    with pytest.raises(DataError, match=r"<mem>:2: feature id .* range: given n_features is 3"):
        parse_bytes("0 1:1\n2 4:1\n", n_features=3)
    with pytest.raises(DataError, match=r"<mem>:2: label id 2 is out of range"):
        parse_bytes("0 1:1\n2 4:1\n", n_labels=2)
    with pytest.raises(DataError, match=r"<mem>:1: malformed header"):
        parse_bytes("0 1:1\n", format="xc")
    with pytest.raises(DataError, match=r"<mem>:1: header has n_features=5, more than the 4 requested"):
        parse_bytes("2 5 3\n0 1:1\n2 4:1\n", n_features=4)
    wider = parse_bytes("2 5 3\n0 1:1\n2 4:1\n", n_features=7, n_labels=9)  # a test set for a wider model
    assert (wider.n_features, wider.n_labels) == (7, 9) and wider.x_indices.tolist() == [1, 4]
    with pytest.raises(DataError, match=r"<mem>:2: feature id .* out of range: header n_features is 5"):
        parse_bytes("1 5 3\n0 5:1\n", n_features=7)  # the header's bound still holds for its own ids
    for header in ("forty 5 3", "-2 5 3"):  # no id:value anywhere: a damaged header, not a LIBSVM line
        with pytest.raises(DataError, match=r"<mem>:1: malformed header"):
            parse_bytes(f"{header}\n0 1:1\n")
    with pytest.raises(DataError, match=r"<mem>:1: feature id .* index base 1; LIBSVM feature ids start at 1"):
        parse_bytes("0 0:1\n")
    empty_rows = parse_bytes("0 5 3\n")
    assert empty_rows.n_samples == 0 and empty_rows.n_features == 5


def test_crlf_and_tabs():
    ds = parse_bytes("2 5 3\r\n0,1\t1:1\t 2:2 \r\n\t3:4\r\n")
    assert ds.y_indices.tolist() == [0, 1] and ds.x_indices.tolist() == [1, 2, 3]
    assert ds.x_values.tolist() == [1.0, 2.0, 4.0]


# ---------------------------------------------------------------------------------------------
# Errors: each names the file and the 1-based line (XC header = line 1)
# ---------------------------------------------------------------------------------------------

BAD_LINES = [
    ("0 3:x", "malformed feature token '3:x'"),
    ("0 abc", "malformed feature token 'abc'"),
    ("0 3:", "malformed feature token '3:'"),
    ("0 :4", "malformed feature token ':4'"),
    ("0 3", "malformed feature token '3'"),
    ("0 3:1:2", "malformed feature token"),
    ("0 10:1", "feature id in '10:1' is out of range: header n_features is 10"),
    ("0 -1:1", "below the index base 0"),
    ("1,2:3 1:1", "malformed feature token '1,2:3' (expected id:value; a label list, first on its line, holds no ':')"),
    ("0 -0:1", "below the index base 0"),
    ("0 99999999999999999999:1", "out of range"),
    ("5 1:1", "label id 5 is out of range: header n_labels is 5"),
    ("-1 1:1", "negative label id '-1'"),
    ("1,,2 1:1", "malformed label list '1,,2'"),
    ("1, 1:1", "malformed label list '1,'"),
    ("a 1:1", "malformed label list 'a'"),
    ("0 3:nan", "non-finite feature value in '3:nan'"),
    ("0 3:inf", "non-finite feature value"),
    ("0 3:-Infinity", "non-finite feature value"),
    ("0 3:1e999", "non-finite feature value"),
    ("0 3:1e39", "non-finite feature value"),
]


@pytest.mark.parametrize("bad,reason", BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path, bad, reason):
    path = tmp_path / "bad.txt"
    path.write_text(f"3 10 5\n0 1:1\n{bad}\n1 2:0.5\n")
    with pytest.raises(DataError) as e:
        load_dataset(path, cache=False)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: "), msg
    assert reason in msg, msg
    assert msg.endswith(bad), msg  # the line excerpt


@pytest.mark.parametrize(
    "text,line,reason",
    [
        ("", 1, "empty file"),
        ("  \n\n\t\n", 1, "empty file"),
        ("3 10\n0 1:1\n", 1, "malformed header"),  # auto-detected as a damaged XC header
        ("3 10 5 7\n0 1:1\n", 1, "malformed header"),
        ("3 10 5\n0 1:1\n1 2:1\n", 4, "file ends after 2 data lines but the header says 3 samples"),
        ("3 10 5\n0 1:1\n1 2:1\n1 2:", 4, "malformed feature token"),  # cut mid-line
        ("2 10 5\n0 1:1\n1 2:1\n2 3:1\n", 4, "header says 2 samples but the file has 3 data lines"),
        ("2 10 5\n0 1:1\n\n1 2:1\n", 3, "blank line; the header says 2 samples but the file has 3 data lines"),
    ],
)
def test_file_level_errors(tmp_path, text, line, reason):
    path = tmp_path / "f.txt"
    path.write_text(text)
    for fmt in ("auto", "xc"):
        with pytest.raises(DataError) as e:
            load_dataset(path, format=fmt, cache=False)
        assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
        assert reason in str(e.value)


def test_header_errors_with_explicit_xc(tmp_path):
    path = tmp_path / "h.txt"
    for text in ("a b c\n0 1:1\n", "0 1:1\n", "3 10 -5\n0 1:1\n", "\n\n1 2 3 4\n"):
        path.write_text(text)
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:\d+: malformed header"):
            load_dataset(path, format="xc", cache=False)
    path.write_text("\n\n1 2 3 4\n")
    with pytest.raises(DataError, match=r":3: malformed header"):  # physical line number
        load_dataset(path, format="xc", cache=False)


def test_missing_file_directory_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset(tmp_path)
    good = gzip.compress(b"2 5 3\n0 1:1\n2 4:1\n" * 100)
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        load_dataset(path, cache=False)


def test_skip_bad_lines(tmp_path):
    path = tmp_path / "skip.txt"
    lines = ["0 1:1", "0 1:x", "1 2:2", "9 1:1", "2 3:nan", "1 4:4"]
    path.write_text(f"{len(lines)} 10 5\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"skipped 3 bad line"):
        ds = load_dataset(path, skip_bad_lines=True, cache=False)
    assert ds.n_samples == 3 and ds.skipped_lines == 3
    assert ds.x_indices.tolist() == [1, 2, 4] and ds.y_indices.tolist() == [0, 1, 1]
    assert [m.split(": ")[0] for m in ds.first_bad] == [f"{path}:3", f"{path}:5", f"{path}:6"]
    # Many bad lines: only the first MAX_BAD_REPORTED messages are kept.
    many = ["0 1:1"] + ["0 x"] * 8
    path.write_text(f"{len(many)} 10 5\n" + "\n".join(many) + "\n")
    with pytest.warns(UserWarning):
        ds = load_dataset(path, skip_bad_lines=True, cache=False)
    assert ds.skipped_lines == 8 and len(ds.first_bad) == data.MAX_BAD_REPORTED
    assert ds.first_bad[0].startswith(f"{path}:3: ")
    # A clean file gives no warning and an empty report.
    path.write_text("1 10 5\n0 1:1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(path, skip_bad_lines=True, cache=False)
    assert ds.skipped_lines == 0 and ds.first_bad == []
    # File-level problems are never skipped.
    path.write_text("3 10 5\n0 1:1\n")
    with pytest.raises(DataError, match="truncated"):
        load_dataset(path, skip_bad_lines=True, cache=False)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def random_dataset(rng, n_rows=200, n_features=300, n_labels=40):
    text = random_text(rng, "xc", n_rows, n_features, n_labels, 0)
    return parse_bytes(text)


@pytest.mark.parametrize("name", ["d.txt", "d.txt.gz"])
def test_round_trip_xc(tmp_path, name):
    ds = random_dataset(np.random.default_rng(5))
    path = tmp_path / name
    write_dataset(ds, path)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = load_dataset(path, cache=False)
    assert_same(back, ds)
    assert back.source == str(path)


@pytest.mark.parametrize("name", ["d.svm", "d.svm.gz"])
def test_round_trip_libsvm(tmp_path, name):
    ds = random_dataset(np.random.default_rng(6))
    path = tmp_path / name
    write_dataset(ds, path, format="libsvm")
    dims = {"n_features": ds.n_features, "n_labels": ds.n_labels}
    back = load_dataset(path, format="libsvm", cache=False, **dims)
    assert_same(back, ds)
    inferred = load_dataset(path, cache=False)  # auto-detected libsvm, dims inferred
    assert_same(inferred, ds, check_dims=False)
    assert inferred.n_features == ds.x_indices.max() + 1


def test_gzip_detected_by_magic_not_name(tmp_path):
    ds = random_dataset(np.random.default_rng(7), n_rows=20)
    path = tmp_path / "compressed.txt"
    path.write_bytes(gzip.compress(format_dataset(ds)))
    assert_same(load_dataset(path, cache=False), ds)


def test_write_rejects_nonfinite(tmp_path):
    ds = random_dataset(np.random.default_rng(8), n_rows=20)
    values = ds.x_values.copy()
    values[0] = np.nan
    bad = Dataset(
        ds.x_indptr, ds.x_indices, values, ds.y_indptr, ds.y_indices, ds.n_features, ds.n_labels
    )
    with pytest.raises(DataError, match="non-finite"):
        write_dataset(bad, tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []  # no partial or temp file left


def test_empty_dataset_round_trip(tmp_path):
    ds = parse_bytes("0 7 3\n")
    write_dataset(ds, tmp_path / "e.txt")
    assert (tmp_path / "e.txt").read_text() == "0 7 3\n"
    assert_same(load_dataset(tmp_path / "e.txt", cache=False), ds)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def no_parse(*args, **kwargs):
    raise AssertionError("the text parser ran on a cache hit")


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text("2 5 3\n0 1:1\n2 4:1\n")
    monkeypatch.setenv("SLIDEPY_CACHE_DIR", str(tmp_path / "user-cache"))
    first = load_dataset(path)
    cache_file = data.cache_path_for(path)
    assert cache_file.is_file() and cache_file.parent == tmp_path / "user-cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "user-cache"]  # nothing beside the data
    assert not [p for p in cache_file.parent.iterdir() if ".tmp" in p.name]
    with monkeypatch.context() as m:
        m.setattr(data, "_parse_text", no_parse)
        hit = load_dataset(path)
    assert_same(hit, first)
    assert hit.source == str(path)
    # The file changes (same size, new mtime): re-parsed, cache rewritten.
    st = path.stat()
    path.write_text("2 5 3\n1 2:1\n2 4:1\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []
    real = data._parse_text
    monkeypatch.setattr(data, "_parse_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    changed = load_dataset(path)
    assert calls == [1] and changed.y_indices.tolist() == [1, 2]
    load_dataset(path)
    assert calls == [1]  # the rewritten cache is used
    # Different load options miss the cache.
    load_dataset(path, skip_bad_lines=True)
    assert calls == [1, 1]
    load_dataset(path, cache=False)
    assert calls == [1, 1, 1]
    # Rewritten to the same size with its mtime put back (as cp -p, rsync -t, tar x leave it):
    # its status change time still tells the cache apart.
    load_dataset(path)
    load_dataset(path)
    assert calls == [1, 1, 1, 1]  # cached again for the default options
    st = path.stat()
    path.write_text("2 5 3\n0 3:1\n2 4:1\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_dataset(path).x_indices.tolist() == [3, 4] and calls == [1, 1, 1, 1, 1]


def test_cache_dir_corrupt_cache_and_unwritable(tmp_path, monkeypatch):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    path = src_dir / "d.txt"
    path.write_text("2 5 3\n0 1:1\n2 4:1\n")
    cache_dir = tmp_path / "cache" / "deep"
    ref = load_dataset(path, cache_dir=cache_dir)
    cache_file = data.cache_path_for(path, cache_dir)
    assert cache_file.parent == cache_dir and cache_file.is_file()
    assert list(src_dir.iterdir()) == [path]
    with monkeypatch.context() as m:
        m.setattr(data, "_parse_text", no_parse)
        assert_same(load_dataset(path, cache_dir=cache_dir), ref)
    # A corrupt cache file is a miss and gets replaced.
    cache_file.write_bytes(b"not an npz")
    assert_same(load_dataset(path, cache_dir=cache_dir), ref)
    with monkeypatch.context() as m:
        m.setattr(data, "_parse_text", no_parse)
        assert_same(load_dataset(path, cache_dir=cache_dir), ref)
    # cache_dir that cannot be created (a file is in the way): silently no cache.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_same(load_dataset(path, cache_dir=blocker / "sub"), ref)
    # Writing fails (read-only directory): silently no cache.
    (src_dir / ("d.txt" + data.CACHE_SUFFIX)).unlink(missing_ok=True)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data, "atomic_write", refuse)
    assert_same(load_dataset(path), ref)
    assert list(src_dir.iterdir()) == [path]


def test_cache_replays_skip_report(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("2 5 3\n0 1:1\n0 x\n")
    with pytest.warns(UserWarning, match="skipped 1"):
        a = load_dataset(path, skip_bad_lines=True)
    with pytest.warns(UserWarning, match="skipped 1"):
        b = load_dataset(path, skip_bad_lines=True)
    assert b.skipped_lines == 1 and b.first_bad == a.first_bad
    with pytest.raises(DataError, match=":3: "):  # the cached skip result is not used without skip
        load_dataset(path)


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


def test_subset_matches_naive():
    ds = random_dataset(np.random.default_rng(9), n_rows=50)
    rng = np.random.default_rng(10)
    cases = [rng.integers(0, 50, size=80), np.arange(50)[::-1], np.array([], np.int64), [3, 3, 0]]
    for rows in cases:
        sub = ds.subset(rows)
        ref = naive_subset(ds, list(rows))
        assert_same(sub, ref, check_dims=False)
        assert (sub.n_features, sub.n_labels) == (ds.n_features, ds.n_labels)
        assert sub.n_samples == len(rows)
    with pytest.raises(IndexError):
        ds.subset([50])
    with pytest.raises(IndexError):
        ds.subset([-1])
    with pytest.raises(TypeError):
        ds.subset(np.ones(50, dtype=bool))


def test_dataset_validates_and_coerces():
    good = dict(
        x_indptr=[0, 2, 3],
        x_indices=np.array([0, 4, 1], dtype=np.int64),
        x_values=np.array([1, 2, 3], dtype=np.float64),
        y_indptr=[0, 1, 1],
        y_indices=[2],
        n_features=5,
        n_labels=3,
    )
    ds = Dataset(**good)
    for name, dtype in data._ARRAY_DTYPES.items():
        assert getattr(ds, name).dtype == dtype and getattr(ds, name).flags.c_contiguous
    assert ds.n_samples == 2 and ds.nnz == 3 and ds.max_labels_per_sample == 1
    for change, match in [
        ({"x_indices": [0, 5, 1]}, r"x_indices must lie in \[0, 5\)"),
        ({"x_indices": [0, -1, 1]}, "x_indices must lie"),
        ({"y_indices": [3]}, "y_indices must lie"),
        ({"x_indptr": [0, 2, 4]}, "x_indptr must start at 0 and end"),
        ({"x_indptr": [0, 3, 2, 3], "y_indptr": [0, 1, 1, 1]}, "not non-decreasing"),
        ({"y_indptr": [0, 1]}, "y_indptr disagree"),
        ({"x_values": [1.0, 2.0]}, "x_values has 2 entries"),
        ({"x_indices": [0.0, 4.0, 1.0]}, "must have dtype int32"),
        ({"x_indices": np.array([0, 2**32 + 4, 1])}, "outside int32"),
        ({"n_features": -1}, "n_features must be an int"),
        ({"n_labels": 2.5}, "n_labels must be an int"),
    ]:
        with pytest.raises(DataError, match=match):
            Dataset(**{**good, **change})


def test_load_argument_checks(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1 2 3\n0 1:1\n")
    with pytest.raises(ValueError, match="format"):
        load_dataset(path, format="csv")
    with pytest.raises(ValueError, match="index_base"):
        load_dataset(path, index_base=2)
    with pytest.raises(ValueError, match="n_features"):
        load_dataset(path, n_features=-3)


# ---------------------------------------------------------------------------------------------
# Speed (a modest bound, so a regression to pure-Python speed is caught)
# ---------------------------------------------------------------------------------------------


def test_a_50k_line_file_reads_back_as_written(tmp_path):
    """A file large enough that writing and parsing split it over threads in many chunks. (Speed
    is the benchmark's business, not a test's.)"""
    from slidepy.synthetic import make_synthetic

    train, _ = make_synthetic(50_000, 0, 5000, 1000, nnz_per_sample=20)
    path = tmp_path / "big.txt"
    write_dataset(train, path)
    assert_same(load_dataset(path, cache=False), train)


# ---------------------------------------------------------------------------------------------
# The real shared datasets against their STATS.txt
# ---------------------------------------------------------------------------------------------


def read_stats(stats_path):
    """{file name: {key: number}} from a STATS.txt verification section."""
    out, current = {}, None
    for line in stats_path.read_text().splitlines():
        m = re.match(r"^\[(\S+\.txt)\]", line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        if line.startswith("["):
            current = None
            continue
        m = re.match(r"^\s+(\w+)\s+([-0-9.]+)\s*$", line)
        if current is not None and m:
            current[m.group(1)] = float(m.group(2))
    return out


REAL_FILES = [
    ("Bibtex", "train.txt"),
    ("Bibtex", "test.txt"),
    ("Delicious", "train.txt"),
    ("Delicious", "test.txt"),
    ("MNIST", "test.txt.gz"),
    ("MNIST", "train.txt.gz"),
]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data directory not present")
@pytest.mark.parametrize("dataset,name", REAL_FILES)
def test_real_files_match_stats(dataset, name, tmp_path, monkeypatch):
    path = SHARED_DATA / dataset / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    want = read_stats(SHARED_DATA / dataset / "STATS.txt")[name.removesuffix(".gz")]
    ds = load_dataset(path, cache_dir=tmp_path)
    got = dataset_stats(ds)
    assert want, "no stats parsed"
    for key, value in want.items():
        if key.startswith("avg_"):
            assert got[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert got[key] == value, key
    if dataset == "MNIST":  # values are pixel/255 written with 6 decimals
        pixels = ds.x_values * 255
        assert np.all(np.abs(pixels - np.round(pixels)) < 1e-3) and ds.x_values.max() <= 1.0
    # Second load comes from the cache (cache_dir: the shared directory is read-only).
    monkeypatch.setattr(data, "_parse_text", no_parse)
    assert_same(load_dataset(path, cache_dir=tmp_path), ds)


def test_a_byte_order_mark_is_skipped_and_a_binary_file_is_named_as_such():
    plain = parse_bytes("2 5 3\n0 1:1\n2 4:1\n")
    marked = parse_bytes(b"\xef\xbb\xbf2 5 3\n0 1:1\n2 4:1\n")
    assert marked.x_indices.tolist() == plain.x_indices.tolist() and marked.n_features == 5
    with pytest.raises(DataError, match=r"^<mem>:2: a NUL byte at offset 9: a binary file"):
        parse_bytes(b"1 5 3\n\x7fEL\x00F\x01")


def test_a_blank_line_that_breaks_the_sample_count_is_the_line_named():
    with pytest.raises(DataError, match=r"^<mem>:3: blank line; the header says 2 samples but the file has 3 data "
                                        r"lines \(1 blank\)"):
        parse_bytes("2 5 3\n0 1:1\n\n2 4:1\n")
    # blank (or space-only) lines past the samples the header counts are no samples: dropped
    plain = parse_bytes("2 5 3\n0 1:1\n2 4:1\n")
    for tail in ("\r\n", "\n\n", "   \n", "\n \t\n"):
        trailed = parse_bytes("2 5 3\n0 1:1\n2 4:1\n" + tail)
        assert trailed.n_samples == 2 and trailed.x_indices.tolist() == plain.x_indices.tolist(), repr(tail)
    with pytest.raises(DataError, match=r"^<mem>:3: blank line"):  # inside the samples: still named
        parse_bytes("2 5 3\n0 1:1\n  \n2 4:1\n")
    with pytest.raises(DataError, match=r"^<mem>:4: header says 2 samples but the file has 3 data lines: 1 2:1"):
        parse_bytes("2 5 3\n0 1:1\n2 4:1\n1 2:1\n")  # no blank line: the first extra one is named
    kept = parse_bytes("2 5 3\n0 1:1\n\n")  # counted: a sample with neither labels nor features
    assert kept.n_samples == 2 and kept.x_indptr.tolist() == [0, 1, 1]


def test_file_format_is_the_format_load_dataset_reads(tmp_path):
    """data.file_format answers from the first non-blank line, as format "auto" does, for plain
    and gzip files, past a byte-order mark."""
    cases = {"xc.txt": b"\n2 10 5\n0 1:1\n1 2:1\n", "libsvm.txt": b"0 1:1\n1 2:1\n",
             "features.txt": b"1:1 3:0.5\n", "bom.txt": b"\xef\xbb\xbf2 10 5\n0 1:1\n1 2:1\n"}
    for name, text in cases.items():
        (tmp_path / name).write_bytes(text)
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(text))
        want = "xc" if load_dataset(tmp_path / name, cache=False).n_features == 10 else "libsvm"
        assert data.file_format(tmp_path / name) == data.file_format(tmp_path / (name + ".gz")) == want, name
    assert [data.file_format(tmp_path / n) for n in cases] == ["xc", "libsvm", "libsvm", "xc"]
    # a first line longer than a message's excerpt (120 characters), cut just before its first
    # id:value: still LIBSVM (the excerpt alone looked like a malformed XC header)
    for n_labels in range(26, 34):
        labels = ",".join(["111"] * n_labels)
        path = tmp_path / f"long{n_labels}.svm"
        path.write_text(f"{labels} 12:1 5:2\n3 2:1\n")
        loaded = load_dataset(path, cache=False)
        assert loaded.n_samples == 2 and data.file_format(path) == "libsvm", len(labels)


def test_the_zero_based_hint_names_feature_0_only(tmp_path):
    """A LIBSVM line holding feature 0 is the sign of a 0-based file (the hint says what to do);
    a negative id is just wrong."""
    for line, hinted in (("0 0:1", True), ("0 00:1", True), ("0 -3:1", False), ("0 -0:1", False)):
        path = tmp_path / "f.svm"
        path.write_text(f"1 2:1\n{line}\n")
        with pytest.raises(DataError, match="below the index base 1") as e:
            load_dataset(path, cache=False)
        assert ("--index-base 0" in str(e.value)) == hinted, line
    xc = tmp_path / "f.txt"  # an XC file told to count from 1: the way out is to leave that out
    xc.write_text("2 3 2\n0 2:1\n1 0:1\n")
    with pytest.raises(DataError, match=r"f.txt:3: feature id in '0:1' is below the index base 1; the file has the XC "
                                        r"header, whose ids count from 0: leave out --index-base 1"):
        load_dataset(xc, cache=False, index_base=1)


def test_lines_ended_by_a_carriage_return_alone_are_refused(tmp_path):
    """The parser reads CR as a space, so a file of classic Mac line ends would be one sample."""
    path = tmp_path / "mac.svm"
    path.write_bytes(b"6:1 22:1\r9:1 25:1\r")
    with pytest.raises(DataError, match="carriage return"):
        load_dataset(path, cache=False)
    path.write_bytes(b"6:1 22:1\r\n9:1 25:1\r\n")
    assert load_dataset(path, cache=False).n_samples == 2
