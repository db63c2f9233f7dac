"""Numba kernels that parse and format the sparse multi-label text formats (XC and LIBSVM).

The caller (`slidepy.data`) reads a whole file into one `uint8` buffer; everything here works on
that buffer and on flat arrays, and never raises: a kernel reports a problem as a status code plus
the byte range of the offending token, and `data.py` turns that into a `DataError` naming the file
and line.

Shape letters
-------------
- `n_lines`: physical lines handed to a kernel (the data lines of a file, header excluded).
- `R`: rows kept (= `n_lines`, or fewer when bad lines are skipped).
- `nnz`: feature entries, `nlab`: label entries, summed over the kept rows.

Line syntax (one sample per line)
---------------------------------
    l1,l2,... f:v f:v ...

- The label field is the first whitespace-delimited token, unless the line starts with
  whitespace or its first token is a feature (`id:value`; a label list holds no colon): then the
  label field is empty (a sample without labels), so a file of features alone, the usual input
  of `slidepy predict`, parses as it stands. A line may hold labels and no features, or nothing
  at all (a sample with neither).
- Labels: comma-separated non-negative decimal integers, no spaces, no empty items.
- Features: `id:value`, `id` a non-negative decimal integer shifted down by `index_base`,
  `value` a decimal float (`1`, `1.0`, `1.`, `.5`, `-2e-3`, `1E5`, optional sign). `nan`/`inf`
  and values that overflow float32 are rejected (`NONFINITE`), not stored.
- Whitespace is space, tab or CR (so CRLF files parse). Ids and values are stored in file order;
  duplicate ids are kept (see `data.py` for what that means downstream).

Passes
------
1. `split_lines`: line boundaries, `(n_lines,)` int64 start and end offsets (end excludes the
   newline and a trailing CR).
2. `count_lines` (parallel over lines): every line fully parsed and validated once by
   `parse_line` without storing; gives per-line status, feature and label counts and max ids.
3. `fill_lines` (parallel over kept rows): the same `parse_line` again, writing into CSR arrays
   preallocated from the prefix sums of pass 2's counts. Each row owns the slice
   `[indptr[r], indptr[r + 1])`, so threads never write to the same place.

Parsing twice costs one extra scan of the text but needs no growable buffers and lets bad lines
be dropped before anything is allocated.

Float parsing (`parse_decimal`)
-------------------------------
Up to 18 significant digits are accumulated exactly in an int64 mantissa (further digits only
move the decimal exponent), then scaled by a power of ten in float64 (`mul_pow10`). Powers up to
1e22 are exact, so the result is within about 2 float64 ulps of the true value, which rounds to
the same float32 as Python's `float()` except in cases ~2**-28 rare.

Formatting (the writer)
-----------------------
`shortest_decimals` finds, per value, the fewest significant digits whose decimal reads back
through the same `mul_pow10` to the same float32, so written text reloads bit-identically; then
`format_lengths` (pass 1) and `format_lines` (pass 2) write rows in parallel into one buffer,
each row into its own slice, as the parser does in reverse.
"""

import math

import numpy as np
from numba import njit, prange

# Status codes returned by `parse_line` / `count_lines` (0 = fine). `data.py` maps them to text.
OK = 0
BAD_LABEL = 1  # label field is not a comma-separated list of integers
BAD_FEATURE = 2  # feature token is not `int:float`
FEATURE_NEGATIVE = 3  # feature id < index_base
FEATURE_RANGE = 4  # feature id >= n_features
LABEL_NEGATIVE = 5  # label id < 0
LABEL_RANGE = 6  # label id >= n_labels
NONFINITE = 7  # nan, inf, or a value that overflows float32
ID_OVERFLOW = 8  # id does not fit int32 (only reachable when the bound is inferred)

# Largest id we store: keeps `max id + 1` (an inferred dimension) representable as int32.
MAX_ID = 2**31 - 2
# Digits beyond this many are not accumulated (int64 holds 18 decimal digits safely).
_MAX_MANT_DIGITS = 18
# Exponent digits are clamped here, far beyond any finite float, so they cannot overflow int64.
_EXP_CLAMP = 100_000
# Integer ids stop accumulating here (see `_parse_uint`).
_UINT_CLAMP = 10**12

_NL = 10
_CR = 13
_TAB = 9
_SPACE = 32
_COMMA = 44
_COLON = 58
_PLUS = 43
_MINUS = 45
_DOT = 46
_ZERO = 48
_NINE = 57
_LOWER_E = 101
_UPPER_E = 69

# 1e0 .. 1e22 are exactly representable in float64.
_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)


@njit(cache=True, inline="always")
def _is_space(c):
    return c == _SPACE or c == _TAB or c == _CR


@njit(cache=True, inline="always")
def _is_digit(c):
    return c >= _ZERO and c <= _NINE


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def mul_pow10(x, exp10):
    """`x * 10**exp10` in float64 (`x` float64 >= 0, `exp10` int64).

    Exact powers (|exp10| <= 22) multiply or divide with one rounding; larger ones go through
    `pow`. Results beyond float64 range saturate to inf / 0.
    """
    if x == 0.0:
        return 0.0
    if exp10 >= 0:
        if exp10 <= 22:
            return x * _POW10[exp10]
        if exp10 > 400:
            return np.inf
        return x * (10.0**exp10)
    e = -exp10
    if e <= 22:
        return x / _POW10[e]
    if e > 400:
        return 0.0
    if e <= 300:
        return x / (10.0**e)
    # Two steps so the divisor stays finite; only float64-subnormal results get here.
    return (x / 1e300) / (10.0 ** (e - 300))


@njit(cache=True)
def _match_word(buf, lo, hi, word):
    """True if buf[lo:hi] equals the lowercase ASCII `word` (a uint8 array), ignoring case."""
    if hi - lo != word.size:
        return False
    for k in range(word.size):
        if (buf[lo + k] | 0x20) != word[k]:
            return False
    return True


_WORD_NAN = np.frombuffer(b"nan", dtype=np.uint8).copy()
_WORD_INF = np.frombuffer(b"inf", dtype=np.uint8).copy()
_WORD_INFINITY = np.frombuffer(b"infinity", dtype=np.uint8).copy()


@njit(cache=True)
def parse_decimal(buf, lo, hi):
    """Parse buf[lo:hi] as a decimal float.

    Returns `(status, value)`: status `OK`, `BAD_FEATURE` (not a number) or `NONFINITE`
    (`nan`, `inf`, `infinity` in any case, with optional sign); `value` float64. Overflow is
    not judged here (the caller checks the float32 result).
    """
    i = lo
    neg = False
    if i < hi and (buf[i] == _PLUS or buf[i] == _MINUS):
        neg = buf[i] == _MINUS
        i += 1
    if i >= hi:
        return BAD_FEATURE, 0.0
    if not _is_digit(buf[i]) and buf[i] != _DOT:
        if (
            _match_word(buf, i, hi, _WORD_NAN)
            or _match_word(buf, i, hi, _WORD_INF)
            or _match_word(buf, i, hi, _WORD_INFINITY)
        ):
            return NONFINITE, 0.0
        return BAD_FEATURE, 0.0
    mant = np.int64(0)
    n_mant = 0  # significant digits accumulated in mant
    exp10 = np.int64(0)
    any_digit = False
    while i < hi and _is_digit(buf[i]):
        any_digit = True
        d = buf[i] - _ZERO
        if n_mant < _MAX_MANT_DIGITS:
            if mant != 0 or d != 0:  # leading zeros are not significant
                mant = mant * 10 + d
                n_mant += 1
        else:
            exp10 += 1  # dropped integer digit still scales the value
        i += 1
    if i < hi and buf[i] == _DOT:
        i += 1
        while i < hi and _is_digit(buf[i]):
            any_digit = True
            d = buf[i] - _ZERO
            if n_mant < _MAX_MANT_DIGITS:
                if mant != 0 or d != 0:
                    mant = mant * 10 + d
                    n_mant += 1
                exp10 -= 1
            i += 1
    if not any_digit:
        return BAD_FEATURE, 0.0
    if i < hi and (buf[i] == _LOWER_E or buf[i] == _UPPER_E):
        i += 1
        eneg = False
        if i < hi and (buf[i] == _PLUS or buf[i] == _MINUS):
            eneg = buf[i] == _MINUS
            i += 1
        if i >= hi or not _is_digit(buf[i]):
            return BAD_FEATURE, 0.0
        e = np.int64(0)
        while i < hi and _is_digit(buf[i]):
            if e < _EXP_CLAMP:
                e = e * 10 + (buf[i] - _ZERO)
            i += 1
        exp10 += -e if eneg else e
    if i != hi:
        return BAD_FEATURE, 0.0
    value = mul_pow10(np.float64(mant), exp10)
    return OK, -value if neg else value


@njit(cache=True)
def _parse_uint(buf, lo, hi):
    """Parse buf[lo:hi] as a non-empty run of decimal digits.

    Returns `(ok, value)`. Accumulation stops once the value reaches 1e12 (far above any valid
    id, whatever the index base), so long digit strings cannot overflow int64 and still read
    as out of range.
    """
    if lo >= hi:
        return False, np.int64(0)
    v = np.int64(0)
    for i in range(lo, hi):
        c = buf[i]
        if not _is_digit(c):
            return False, np.int64(0)
        if v < _UINT_CLAMP:
            v = v * 10 + (c - _ZERO)
    return True, v


# ---------------------------------------------------------------------------------------------
# One line (the serial worker)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def parse_line(
    buf, lo, hi, index_base, n_features, n_labels,
    fill, x_indices, x_values, y_indices, x_pos, y_pos,
):  # fmt: skip
    """Parse and validate one line buf[lo:hi]; optionally write its entries.

    `n_features` / `n_labels` < 0 means "no bound" (dimension inferred later). With `fill`, the
    line's feature ids/values go to `x_indices[x_pos:]` / `x_values[x_pos:]` (int32 / float32) and
    its labels to `y_indices[y_pos:]` (int32); without, those arrays may be empty.

    Returns int64 `(status, n_feat, n_lab, max_feat, max_lab, err_lo, err_hi)`: `err_lo:err_hi`
    is the byte range of the offending token when status != OK; max ids are -1 when absent.
    """
    n_feat = np.int64(0)
    n_lab = np.int64(0)
    max_feat = np.int64(-1)
    max_lab = np.int64(-1)
    i = lo
    # Label field: first token, unless the line starts with whitespace or its first token is a
    # feature (holds a colon, which no label list can): then the sample has no labels.
    tok_end = i
    first_is_feature = False
    while tok_end < hi and not _is_space(buf[tok_end]):
        if buf[tok_end] == _COLON:
            first_is_feature = True
        tok_end += 1
    if tok_end > i and not first_is_feature:
        j = i
        while True:  # one comma-separated item per iteration
            k = j
            while k < tok_end and buf[k] != _COMMA:
                k += 1
            if k > j and buf[j] == _MINUS:
                ok, v = _parse_uint(buf, j + 1, k)
                if ok:
                    code = LABEL_NEGATIVE
                    return code, n_feat, n_lab, max_feat, max_lab, np.int64(j), np.int64(k)
                return BAD_LABEL, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
            ok, v = _parse_uint(buf, j, k)
            if not ok:  # empty item (",," or a trailing comma) or a non-digit
                return BAD_LABEL, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
            if n_labels >= 0 and v >= n_labels:
                return LABEL_RANGE, n_feat, n_lab, max_feat, max_lab, np.int64(j), np.int64(k)
            if v > MAX_ID:
                return ID_OVERFLOW, n_feat, n_lab, max_feat, max_lab, np.int64(j), np.int64(k)
            if fill:
                y_indices[y_pos + n_lab] = v
            n_lab += 1
            if v > max_lab:
                max_lab = v
            if k >= tok_end:
                break
            j = k + 1
        i = tok_end
    # Features: `id:value` tokens separated by whitespace.
    while True:
        while i < hi and _is_space(buf[i]):
            i += 1
        if i >= hi:
            break
        tok_end = i
        colon = np.int64(-1)
        while tok_end < hi and not _is_space(buf[tok_end]):
            if colon < 0 and buf[tok_end] == _COLON:
                colon = tok_end
            tok_end += 1
        if colon < 0:
            return BAD_FEATURE, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        id_neg = colon > i and buf[i] == _MINUS
        ok, raw = _parse_uint(buf, i + 1 if id_neg else i, colon)
        if not ok:
            return BAD_FEATURE, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        status, value = parse_decimal(buf, colon + 1, tok_end)
        if status != OK:
            return status, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        fid = raw - index_base
        if id_neg or fid < 0:  # "-0:1" too: a sign on an id is never valid
            code = FEATURE_NEGATIVE
            return code, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        if n_features >= 0 and fid >= n_features:
            return FEATURE_RANGE, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        if fid > MAX_ID:
            return ID_OVERFLOW, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        value32 = np.float32(value)
        if not np.isfinite(value32):  # e.g. 1e39 or 1e999: finite text, infinite float32
            return NONFINITE, n_feat, n_lab, max_feat, max_lab, np.int64(i), np.int64(tok_end)
        if fill:
            x_indices[x_pos + n_feat] = fid
            x_values[x_pos + n_feat] = value32
        n_feat += 1
        if fid > max_feat:
            max_feat = fid
        i = tok_end
    return OK, n_feat, n_lab, max_feat, max_lab, np.int64(0), np.int64(0)


# ---------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def split_lines(buf):
    """Line boundaries of a uint8 buffer.

    Returns `(line_lo, line_hi)`, `(n_lines,)` int64 each: line k is `buf[line_lo[k]:line_hi[k]]`
    without its `\\n` and a trailing `\\r`. A final newline does not start another line; text
    after the last newline is a line.
    """
    n = buf.size
    n_nl = 0
    for i in range(n):
        if buf[i] == _NL:
            n_nl += 1
    n_lines = n_nl + (1 if n > 0 and buf[n - 1] != _NL else 0)
    line_lo = np.empty(n_lines, dtype=np.int64)
    line_hi = np.empty(n_lines, dtype=np.int64)
    k = 0
    start = 0
    for i in range(n):
        if buf[i] == _NL:
            end = i
            if end > start and buf[end - 1] == _CR:
                end -= 1
            line_lo[k] = start
            line_hi[k] = end
            k += 1
            start = i + 1
    if k < n_lines:
        end = n
        if end > start and buf[end - 1] == _CR:
            end -= 1
        line_lo[k] = start
        line_hi[k] = end
    return line_lo, line_hi


@njit(cache=True, parallel=True)
def count_lines(
    buf,
    line_lo,
    line_hi,
    index_base,
    n_features,
    n_labels,
    status,
    err_lo,
    err_hi,
    n_feat,
    n_lab,
    max_feat,
    max_lab,
):
    """Pass 1: validate every line and count its entries; parallel over lines.

    Inputs: `buf` (n_bytes,) uint8; `line_lo`, `line_hi` (n_lines,) int64; bounds as in
    `parse_line`. Outputs, all `(n_lines,)` and written at index i only by the thread that owns
    line i: `status` int8, `err_lo`/`err_hi` int64 (offending token), `n_feat`/`n_lab` int64,
    `max_feat`/`max_lab` int64 (-1 when the line has none).
    """
    no_ids = np.empty(0, dtype=np.int32)
    no_vals = np.empty(0, dtype=np.float32)
    for i in prange(line_lo.size):
        s, nf, nl, mf, ml, a, b = parse_line(
            buf, line_lo[i], line_hi[i], index_base, n_features, n_labels,
            False, no_ids, no_vals, no_ids, 0, 0,
        )  # fmt: skip
        status[i] = s
        err_lo[i] = a
        err_hi[i] = b
        n_feat[i] = nf
        n_lab[i] = nl
        max_feat[i] = mf
        max_lab[i] = ml


@njit(cache=True, parallel=True)
def fill_lines(
    buf,
    line_lo,
    line_hi,
    rows,
    index_base,
    n_features,
    n_labels,
    x_indptr,
    y_indptr,
    x_indices,
    x_values,
    y_indices,
):
    """Pass 2: parse the kept lines again and write them as CSR; parallel over rows.

    `rows` (R,) int64: line index of each output row (lines that passed `count_lines`).
    `x_indptr`, `y_indptr` (R+1,) int64 from the counts; `x_indices` (nnz,) int32,
    `x_values` (nnz,) float32, `y_indices` (nlab,) int32 are filled. Row r writes only its own
    slices. Returns the number of rows whose status changed between passes (0 unless the
    buffer was mutated; the caller treats non-zero as an internal error).
    """
    n_bad = 0
    for r in prange(rows.size):
        i = rows[r]
        s, nf, nl, mf, ml, a, b = parse_line(
            buf, line_lo[i], line_hi[i], index_base, n_features, n_labels,
            True, x_indices, x_values, y_indices, x_indptr[r], y_indptr[r],
        )  # fmt: skip
        if s != OK or nf != x_indptr[r + 1] - x_indptr[r] or nl != y_indptr[r + 1] - y_indptr[r]:
            n_bad += 1
    return n_bad


# ---------------------------------------------------------------------------------------------
# Formatting (the writer's kernels)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _n_digits(v):
    """Number of decimal digits of the int64 v >= 0."""
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@njit(cache=True)
def _write_uint(v, out, pos, write):
    """Write int64 v >= 0 in decimal at out[pos:] (if `write`); returns the position after it."""
    n = _n_digits(v)
    if write:
        p = pos + n - 1
        while True:
            out[p] = _ZERO + v % 10
            v //= 10
            if v == 0:
                break
            p -= 1
    return pos + n


@njit(cache=True, inline="always")
def _round_trips(x, v, p, lead):
    """`(ok, mant, exp10)`: x (= float64(v)) rounded to p significant digits, and whether that
    decimal reads back (through `mul_pow10`, as the parser does) to the float32 v."""
    exp10 = lead - p + 1
    mant = np.int64(round(mul_pow10(x, -exp10)))
    return np.float32(mul_pow10(np.float64(mant), exp10)) == v, mant, exp10


@njit(cache=True)
def shortest_decimal(v):
    """Fewest-digit `(mant, exp10)`, int64 each, with `float32(mul_pow10(mant, exp10)) == v`.

    `v` is a finite float32 > 0. 9 significant digits always suffice for float32; a binary
    search over 1..9 digits finds the fewest (round-tripping is monotone in the digit count in
    practice, and whatever is returned has been checked to round-trip). Because the check uses
    the parser's own `mul_pow10`, what the writer emits reads back bit-identically. Trailing
    zeros of `mant` are moved into `exp10`.
    """
    x = np.float64(v)
    lead = np.int64(math.floor(math.log10(x)))  # decimal exponent of the first digit
    if mul_pow10(1.0, lead) > x:  # log10 rounded across a power of ten
        lead -= 1
    elif mul_pow10(1.0, lead + 1) <= x:
        lead += 1
    ok, mant, exp10 = _round_trips(x, v, 9, lead)
    p = 9
    while not ok and p < 17:  # not expected (9 digits suffice for float32); a safety net
        p += 1
        ok, mant, exp10 = _round_trips(x, v, p, lead)
    lo = 1
    hi = p
    while lo < hi:  # invariant: hi digits round-trip, (mant, exp10) is that decimal
        mid = (lo + hi) // 2
        ok, m, e = _round_trips(x, v, mid, lead)
        if ok:
            hi = mid
            mant = m
            exp10 = e
        else:
            lo = mid + 1
    while mant > 0 and mant % 10 == 0:
        mant //= 10
        exp10 += 1
    return mant, exp10


@njit(cache=True, parallel=True)
def shortest_decimals(values, mant, exp10):
    """`shortest_decimal` of every value: `values` (nnz,) float32 finite -> `mant` (nnz,) int32
    (at most 9 digits) and `exp10` (nnz,) int8 (float32 needs -54..38). Zero gives (0, 0); the
    sign is not recorded (the writer reads it from the value)."""
    for k in prange(values.size):
        v = abs(values[k])
        if v == 0:
            mant[k] = 0
            exp10[k] = 0
        else:
            m, e = shortest_decimal(v)
            mant[k] = m
            exp10[k] = e


@njit(cache=True)
def _write_value(v, mant, exp10, out, pos, write):
    """Write float32 `v` (finite) as decimal text, given its `shortest_decimal` digits
    `mant` * 10**`exp10` (of |v|); returns the position after it.

    Forms: `0`, `-0`, `3`, `12.5`, `0.011765`; scientific (`1e7`, `1.5e-7`: one digit before
    the point) when positional would need more than 6 padding zeros.
    """
    if v < 0 or (v == 0 and np.signbit(v)):
        if write:
            out[pos] = _MINUS
        pos += 1
    if v == 0:
        if write:
            out[pos] = _ZERO
        return pos + 1
    nd = _n_digits(mant)
    if exp10 >= 0 and exp10 <= 6:  # integer: digits then zeros
        pos = _write_uint(mant, out, pos, write)
        for _ in range(exp10):
            if write:
                out[pos] = _ZERO
            pos += 1
        return pos
    if exp10 < 0 and -exp10 < nd:  # point inside the digits: "12.5"
        div = np.int64(10) ** (-exp10)
        pos = _write_uint(mant // div, out, pos, write)
        if write:
            out[pos] = _DOT
        pos += 1
        frac = mant % div
        n_frac = -exp10
        nf = _n_digits(frac)
        for _ in range(n_frac - nf):  # zeros between the point and the fraction's digits
            if write:
                out[pos] = _ZERO
            pos += 1
        return _write_uint(frac, out, pos, write)
    if exp10 < 0 and -exp10 - nd <= 6:  # below 1: "0.00ddd"
        if write:
            out[pos] = _ZERO
            out[pos + 1] = _DOT
        pos += 2
        for _ in range(-exp10 - nd):
            if write:
                out[pos] = _ZERO
            pos += 1
        return _write_uint(mant, out, pos, write)
    # Scientific: d[.ddd]e[-]E with E the exponent of the first digit.
    first = mant // np.int64(10) ** (nd - 1)
    pos = _write_uint(first, out, pos, write)
    if nd > 1:
        rest = mant - first * np.int64(10) ** (nd - 1)
        if write:
            out[pos] = _DOT
        pos += 1
        for _ in range(nd - 1 - _n_digits(rest)):
            if write:
                out[pos] = _ZERO
            pos += 1
        pos = _write_uint(rest, out, pos, write)
    if write:
        out[pos] = _LOWER_E
    pos += 1
    e = exp10 + nd - 1
    if e < 0:
        if write:
            out[pos] = _MINUS
        pos += 1
        e = -e
    return _write_uint(e, out, pos, write)


@njit(cache=True)
def _format_row(
    r, x_indptr, x_indices, x_values, mant, exp10, y_indptr, y_indices, index_base, out, pos, write
):
    """Write row r as `l1,l2 f:v f:v\\n` at out[pos:] (if `write`); returns the end position.

    Feature ids are written plus `index_base`; `mant`, `exp10` are from `shortest_decimals`."""
    for k in range(y_indptr[r], y_indptr[r + 1]):
        if k > y_indptr[r]:
            if write:
                out[pos] = _COMMA
            pos += 1
        pos = _write_uint(np.int64(y_indices[k]), out, pos, write)
    for k in range(x_indptr[r], x_indptr[r + 1]):
        # The space before the first feature doubles as the empty label field's marker.
        if write:
            out[pos] = _SPACE
        pos += 1
        pos = _write_uint(np.int64(x_indices[k]) + index_base, out, pos, write)
        if write:
            out[pos] = _COLON
        pos += 1
        pos = _write_value(x_values[k], np.int64(mant[k]), np.int64(exp10[k]), out, pos, write)
    if write:
        out[pos] = _NL
    return pos + 1


@njit(cache=True, parallel=True)
def format_lengths(
    x_indptr, x_indices, x_values, mant, exp10, y_indptr, y_indices, index_base, line_len
):
    """Byte length of each row's text line (newline included) into `line_len` (B,) int64.

    Inputs are a Dataset's CSR arrays plus `shortest_decimals` of its values; `index_base` is
    added to feature ids (0 XC, 1 LIBSVM)."""
    no_out = np.empty(0, dtype=np.uint8)
    for r in prange(line_len.size):
        line_len[r] = _format_row(
            r, x_indptr, x_indices, x_values, mant, exp10, y_indptr, y_indices, index_base,
            no_out, 0, False,
        )  # fmt: skip


@njit(cache=True, parallel=True)
def format_lines(
    x_indptr, x_indices, x_values, mant, exp10, y_indptr, y_indices, index_base, line_start, out
):
    """Write every row's line into `out` (n_bytes,) uint8 at `line_start` (B+1,) int64.

    Row r owns `out[line_start[r]:line_start[r + 1]]` (lengths from `format_lengths`)."""
    for r in prange(line_start.size - 1):
        _format_row(
            r, x_indptr, x_indices, x_values, mant, exp10, y_indptr, y_indices, index_base,
            out, line_start[r], True,
        )  # fmt: skip
