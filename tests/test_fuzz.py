"""Fuzzing the two user-facing parsers: data files (load_dataset) and configs (config_from_dict,
load_config with `--set` overrides, YAML files). Whatever the input, the only exception that may
escape is a SlidepyError subclass (DataError / ConfigError) — never IndexError, ValueError,
TypeError, OverflowError or a numba error — and whatever is accepted is internally consistent.

Hypothesis runs derandomized (the same examples on every run, so CI cannot flake) with a bounded
number of examples; the whole file takes about 20-30 s. Raise FUZZ_EXAMPLES to search longer:
    FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
"""

import gzip
import os
import tempfile

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from slidepy.config import config_to_dict  # noqa: E402
from slidepy.configfile import _schema_paths, config_from_dict, load_config, validate_config  # noqa: E402
from slidepy.data import load_dataset, write_dataset  # noqa: E402
from slidepy.errors import ConfigError, DataError, SlidepyError  # noqa: E402
from slidepy.memory import estimate_for_config  # noqa: E402

SCALE = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None


def fuzz_settings(n):
    return settings(max_examples=SCALE or n, deadline=None, database=None, derandomize=SCALE is None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------------ data

TOKENS = ["0", "1", "2", "3", "7", "12", "-1", "-0", "+3", "007", "2147483647", "2147483648", "4294967296",
          "99999999999999999999", ":", ",", " ", " ", "\t", "\r", ".", "e", "E", "-", "+", "nan", "NaN", "inf",
          "-inf", "Infinity", "1e39", "-1e39", "1e-50", "3.5", ".5", "5.", "1e", "1e+", "x", "é", "\x00", "\x0b",
          "0:1", "3:0.5", "1:-2e-3", "4:1E5", "1,2", ",,", "::", "#", "1:", ":1", "1:1:1", "0x1", "1_0"]

token_lines = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)
byte_lines = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ").decode("latin-1"))
lines = st.lists(st.one_of(token_lines, token_lines, byte_lines), max_size=12)
headers = st.one_of(
    st.none(),                                                              # LIBSVM: no header
    st.just("match"),                                                       # B = number of lines
    st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)).map(lambda t: "%d %d %d" % t),
    st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40)).map(lambda t: "%d %d %d" % t),
    st.sampled_from(["3 5", "3 5 4 1", "a b c", "-1 5 4", "3 5 4 ", " 3 5 4", "3\t5\t4", "", "3 5 4:1"]),
)


def _text(header, body_lines, dims, trailing_newline):
    if header == "match":
        header = f"{len(body_lines)} {dims[0]} {dims[1]}"
    text = "\n".join(([] if header is None else [header]) + body_lines)
    return text + ("\n" if trailing_newline and text else "")


@pytest.mark.filterwarnings("ignore:.*skipped .* bad line")
@fuzz_settings(300)
@given(header=headers, body=lines, dims=st.tuples(st.integers(0, 20), st.integers(0, 20)),
       newline=st.booleans(), fmt=st.sampled_from(["auto", "auto", "xc", "libsvm"]),
       n_features=st.one_of(st.none(), st.integers(0, 30)), n_labels=st.one_of(st.none(), st.integers(0, 30)),
       index_base=st.sampled_from([None, 0, 1]), skip=st.booleans(),
       packing=st.sampled_from(["plain", "plain", "gzip", "gzip-truncated"]), cut=st.integers(0, 200))
@example(header="match", body=["0 0:1"], dims=(1, 1), newline=True, fmt="auto", n_features=None, n_labels=None,
         index_base=None, skip=False, packing="plain", cut=0)
def test_load_dataset_raises_only_data_error(header, body, dims, newline, fmt, n_features, n_labels,
                                             index_base, skip, packing, cut):
    raw = _text(header, body, dims, newline).encode("utf-8", "surrogatepass")
    if packing != "plain":
        raw = gzip.compress(raw)
        if packing == "gzip-truncated":
            raw = raw[: cut % max(1, len(raw))]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.txt")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            ds = load_dataset(path, format=fmt, n_features=n_features, n_labels=n_labels, index_base=index_base,
                              skip_bad_lines=skip, cache=True, cache_dir=os.path.join(tmp, "cache"))
        except DataError:
            return
        except Exception as exc:  # pragma: no cover - the point of the test
            raise AssertionError(f"{type(exc).__name__} escaped load_dataset: {exc}\ninput: {raw[:300]!r}") from exc
        # Accepted: consistent, finite, in range, and the cache and the writer reproduce it.
        assert ds.x_values.size == 0 or np.isfinite(ds.x_values).all()
        assert ds.x_indices.size == 0 or 0 <= ds.x_indices.min() <= ds.x_indices.max() < ds.n_features
        assert ds.y_indices.size == 0 or 0 <= ds.y_indices.min() <= ds.y_indices.max() < ds.n_labels
        if not skip:
            assert ds.skipped_lines == 0
        again = load_dataset(path, format=fmt, n_features=n_features, n_labels=n_labels, index_base=index_base,
                             skip_bad_lines=skip, cache=True, cache_dir=os.path.join(tmp, "cache"))
        copy = os.path.join(tmp, "copy.txt")
        write_dataset(ds, copy)
        back = load_dataset(copy, cache=False)
        for other in (again, back):
            for name in ("x_indptr", "x_indices", "x_values", "y_indptr", "y_indices"):
                assert np.array_equal(getattr(ds, name), getattr(other, name)), name
            assert (other.n_features, other.n_labels) == (ds.n_features, ds.n_labels)


@fuzz_settings(60)
@given(data=st.binary(max_size=400), gz=st.booleans())
def test_random_bytes_file_raises_only_data_error(data, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            f.write((b"\x1f\x8b" + data) if gz else data)
        try:
            load_dataset(path, cache=False)
        except DataError:
            pass


# ---------------------------------------------------------------------------------- configs

SCHEMA = [path for path, _ in _schema_paths()]
CHOICES = ["auto", "xc", "libsvm", "all", "random", "lsh", "exact", "dwta", "wta", "srp", "minhash", "fifo",
           "reservoir", "vanilla", "topk", "threshold", "relu", "softmax", "bce", "he", "glorot", "adam", "sgd",
           "stop", "rollback"]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 300), st.integers(-2**70, 2**70), st.sampled_from([0, 1, 2, 4, 8, 32, 33, 512, 513, 2**31, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0, 1.5, 1e-8, 1e300, -0.0]),
    st.sampled_from(CHOICES), st.text(max_size=8),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.sampled_from(["size", "mode", "k", "x"]),
                                                                            scalars, max_size=3))


def _set_path(tree, path, value):
    """Put `value` at dotted `path` in a nested dict, creating sections; `model.hidden.0` is a list."""
    parts = path.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            while len(node) <= int(part):
                node.append({"size": 8})
            if not isinstance(node[int(part)], dict):
                return
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            return
        child = node.get(part)
        if nxt.isdigit():
            if not isinstance(child, list):
                child = node[part] = []
        elif not isinstance(child, dict):
            child = node[part] = {}
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if last.isdigit():
            while len(node) <= int(last):
                node.append({"size": 8})
            node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value


def _accepted_config_is_sound(cfg):
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert validate_config(cfg) == cfg
    try:
        estimate = estimate_for_config(cfg, threads=2)
    except SlidepyError:
        return
    assert estimate.total >= 0 and all(isinstance(v, int) for v in estimate.parts.values())


@fuzz_settings(400)
@given(st.lists(st.tuples(st.sampled_from(SCHEMA + ["model.hidden.1.size", "training.bogus", "zzz"]), values),
                max_size=5))
def test_config_from_dict_raises_only_config_error(assignments):
    tree = {}
    for path, value in assignments:
        _set_path(tree, path, value)
    try:
        cfg = config_from_dict(tree)
    except ConfigError:
        return
    except Exception as exc:  # pragma: no cover
        raise AssertionError(f"{type(exc).__name__} escaped config_from_dict: {exc}\nconfig: {tree!r}") from exc
    _accepted_config_is_sound(cfg)


yaml_values = st.one_of(
    st.sampled_from(["0", "1", "-1", "0.5", "1e-4", "1e400", ".inf", ".nan", "null", "~", "true", "yes", "auto",
                     "lsh", "[]", "[1, 2]", "[64, {size: 8}]", "{}", "{mode: lsh}", "[", "{", "'", "\"", "&a [*a]",
                     "!!binary aGk=", "!!python/name:os.system", "0x10", "1_000", "9" * 5000, "- a", ": x", "%", "@"]),
    st.text(max_size=12),
)
override_keys = st.one_of(st.sampled_from(SCHEMA), st.sampled_from(["", ".", "training.", ".lr", "model.hidden.7",
                                                                     "model.hidden.-1.size", "eval.k.0.x",
                                                                     "training.lr.x", "a.b.c"]), st.text(max_size=10))


@fuzz_settings(300)
@given(st.lists(st.one_of(st.tuples(override_keys, yaml_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
                          st.text(max_size=15)), min_size=1, max_size=4))
def test_load_config_overrides_raise_only_config_error(overrides):
    base = {"model": {"hidden": [16, {"size": 8, "selection": {"mode": "lsh"}}]}}
    try:
        cfg = load_config(base, overrides)
    except ConfigError:
        return
    except Exception as exc:  # pragma: no cover
        raise AssertionError(f"{type(exc).__name__} escaped load_config: {exc}\noverrides: {overrides!r}") from exc
    _accepted_config_is_sound(cfg)


@fuzz_settings(150)
@given(st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80),
    st.lists(st.tuples(st.sampled_from(SCHEMA), yaml_values), max_size=4).map(
        lambda kvs: "\n".join(f"{k}: {v}" for k, v in kvs)),
    st.dictionaries(st.sampled_from(["data", "model", "training", "eval", "output", "x"]), values, max_size=4).map(
        lambda d: yaml.safe_dump(d) if all(isinstance(k, str) for k in d) else ""),
))
def test_load_config_file_raises_only_config_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cfg.yaml")
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            cfg = load_config(path)
        except ConfigError:
            return
        except Exception as exc:  # pragma: no cover
            raise AssertionError(f"{type(exc).__name__} escaped load_config: {exc}\nfile: {content!r}") from exc
        _accepted_config_is_sound(cfg)


def test_regressions_found_by_fuzzing():
    """Inputs that used to escape as non-slidepy exceptions."""
    for raw in ({"training": {"lr": 10**400}},                     # OverflowError in math.isfinite
                {"training": {"lr": 10**5000}},                    # ValueError: repr of a 5000-digit int
                {"training": {"epochs": 10**5000}},
                {"training": {"seed": 2**64}}):                    # accepted, then overflowed np.uint64
        with pytest.raises(ConfigError):
            config_from_dict(raw)
    with pytest.raises(ConfigError, match="cannot parse value"):
        load_config({}, ["training.epochs=" + "9" * 5000])            # PyYAML's int() ValueError
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cfg.yaml")
        with open(path, "wb") as f:
            f.write(b"\xff\xfe training: {}")
        with pytest.raises(ConfigError, match="not a UTF-8 text file"):  # UnicodeDecodeError
            load_config(path)
