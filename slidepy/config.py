"""Typed run configuration: nested dataclasses loaded from YAML or a dict, strictly validated.

    cfg = load_config("configs/quickstart.yaml", ["training.lr=0.01", "model.hidden.0.size=256"])
    cfg.model.output.selection.lsh.k      # -> 6
    config_to_dict(cfg)                   # plain, YAML-dumpable dict; config_from_dict round-trips it

Every key has a type and an allowed range, declared once on the dataclass field (`_Rule` in the
field metadata); one generic walker checks a raw dict against the dataclasses, so the schema and
the validator cannot drift apart. Unknown keys, wrong types and out-of-range values raise
`ConfigError` naming the dotted key path (list items by index: `model.hidden.0.size`), the value
and what was expected; an unknown key also gets the nearest valid key as a suggestion. Messages
are prefixed with the file name when loaded from a file and with `--set KEY=VALUE` when an
override caused them.

Type rules: bool is never accepted as an int (YAML `true` is not 1); ints are accepted, and stored
as float, where a float is expected; floats must be finite; no int may exceed MAX_INT (2**31 - 1).
Whatever the input (huge ints, odd YAML, undecodable files), only ConfigError escapes
(tests/test_fuzz.py).

Validation here never touches the filesystem, so a config naming files of another machine still
loads; `validate_paths(cfg)` checks that `data.train` / `data.test` exist and are readable and
that `output.run_dir` is writable, and `slidepy train` calls it before any work. A section given as `null` (a YAML key
with everything under it commented out) means "all defaults".

YAML is read with PyYAML's safe loader plus two changes: duplicate keys are an error, and
`1e-4` is a float (PyYAML follows YAML 1.1, which would read it as the string "1e-4").

The dataclasses are frozen; sequences are stored as tuples. Use `dataclasses.replace` and then
`validate_config` to derive a changed config in code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from slidepy.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Limits and choices. Every numeric bound the validator enforces is named here.
# ---------------------------------------------------------------------------------------------

MIN_LABELS = 2                 # synthetic data: fewer labels is not a classification problem
MAX_K = 32                     # hashes per table
MAX_L = 512                    # tables
MIN_BIN_SIZE = 2               # WTA/DWTA bin size, a power of two
MAX_BIN_SIZE = 256
MIN_RANGE_POW = 1              # buckets per table = 2**range_pow
MAX_RANGE_POW = 24
MIN_BUCKET_CAPACITY = 1        # slots per bucket, a power of two
MAX_BUCKET_CAPACITY = 4096
MIN_REBUILD_DECAY = 1.0        # rebuild intervals never shrink
MAX_EVAL_K = 100               # largest k for P@k / nDCG@k
MAX_INT = 2**31 - 1            # no int key may exceed this (sizes, counts, steps, seeds): the
                               # kernels index with int32/int64 and seeds are mixed in uint64

AUTO = "auto"                  # value of lsh.k / lsh.l chosen from target_recall

DATA_FORMATS = ("auto", "xc", "libsvm")
SELECTION_MODES = ("all", "random", "lsh")
INFERENCE_MODES = ("exact", "lsh")
LSH_FAMILIES = ("dwta", "wta", "srp", "minhash")
INSERT_POLICIES = ("fifo", "reservoir")
QUERY_POLICIES = ("vanilla", "topk", "threshold")
ACTIVATIONS = ("relu",)
LOSSES = ("softmax", "bce")
INITS = ("he", "glorot")
OPTIMIZERS = ("adam", "sgd")
ON_NAN_ACTIONS = ("stop", "rollback")


# ---------------------------------------------------------------------------------------------
# Field rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """What one config key accepts.

    kind: "int" | "float" | "bool" | "str" | "choice" | "section" | "hidden_list" | "int_list"
    | "int_pair". Bounds `lo`/`hi` are inclusive unless `lo_open`/`hi_open`. `optional` admits
    null, `auto` admits the string "auto", `pow2` requires a power of two. `cls` is the dataclass
    of a section or list item.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    auto: bool = False
    pow2: bool = False
    choices: tuple[str, ...] = ()
    cls: type | None = None


def _field(default: Any, rule: _Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


def _int(default: int | str | None, lo=None, hi=None, **kw) -> Any:
    return _field(default, _Rule("int", lo=lo, hi=hi, **kw))


def _float(default: float | None, lo=None, hi=None, **kw) -> Any:
    return _field(default, _Rule("float", lo=lo, hi=hi, **kw))


def _bool(default: bool) -> Any:
    return _field(default, _Rule("bool"))


def _str(default: str | None, optional: bool = False) -> Any:
    return _field(default, _Rule("str", optional=optional))


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return _field(default, _Rule("choice", choices=choices))


def _section(cls: type) -> Any:
    return field(default_factory=cls, metadata={"rule": _Rule("section", cls=cls)})


class _Invalid(Exception):
    """Internal: a validation failure with the key path(s) it concerns; becomes a ConfigError."""

    def __init__(self, paths: str | tuple[str, ...], message: str):
        super().__init__(message)
        self.paths = (paths,) if isinstance(paths, str) else tuple(paths)
        self.message = message


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """Generated multi-label data, used when `data.train` is null."""

    n_train: int = _int(4000, lo=1)
    n_test: int = _int(1000, lo=1)
    n_features: int = _int(2000, lo=1)
    n_labels: int = _int(1000, lo=MIN_LABELS)
    nnz_per_sample: int = _int(20, lo=1)
    labels_per_sample: tuple[int, int] = _field((1, 3), _Rule("int_pair", lo=1))  # (min, max)
    noise_fraction: float = _float(0.2, lo=0.0, hi=1.0, hi_open=True)
    zipf_exponent: float = _float(1.0, lo=0.0)
    seed: int = _int(0, lo=0)

    def _cross_check(self, path: str) -> None:
        lo, hi = self.labels_per_sample
        if hi > self.n_labels:
            raise _Invalid(
                (_join(path, "labels_per_sample"), _join(path, "n_labels")),
                f"{_join(path, 'labels_per_sample')}: max {hi} is larger than "
                f"{_join(path, 'n_labels')} ({self.n_labels})",
            )
        if self.nnz_per_sample > self.n_features:
            raise _Invalid(
                (_join(path, "nnz_per_sample"), _join(path, "n_features")),
                f"{_join(path, 'nnz_per_sample')}: {self.nnz_per_sample} is larger than "
                f"{_join(path, 'n_features')} ({self.n_features})",
            )


@dataclass(frozen=True)
class DataConfig:
    train: str | None = _str(None, optional=True)     # path; null => data.synthetic
    test: str | None = _str(None, optional=True)
    format: str = _choice("auto", DATA_FORMATS)
    cache: bool = _bool(True)
    cache_dir: str | None = _str(None, optional=True)
    skip_bad_lines: bool = _bool(False)
    synthetic: SyntheticConfig = _section(SyntheticConfig)


@dataclass(frozen=True)
class RebuildConfig:
    """When hash tables are rebuilt (neurons re-inserted) and hash functions redrawn."""

    initial_interval: int = _int(50, lo=1)          # batches before the first rebuild
    decay: float = _float(1.1, lo=MIN_REBUILD_DECAY)  # each interval = previous * decay
    max_interval: int | None = _int(None, lo=1, optional=True)
    rehash_every: int = _int(0, lo=0)               # redraw hashes every N rebuilds; 0 = never
    drift_threshold: float | None = _float(None, lo=0.0, hi=1.0, lo_open=True, optional=True)
    drift_sample: int = _int(1024, lo=1)
    drift_check_every: int = _int(50, lo=1)         # batches

    def _cross_check(self, path: str) -> None:
        if self.max_interval is not None and self.max_interval < self.initial_interval:
            raise _Invalid(
                (_join(path, "max_interval"), _join(path, "initial_interval")),
                f"{_join(path, 'max_interval')}: {self.max_interval} is smaller than "
                f"{_join(path, 'initial_interval')} ({self.initial_interval})",
            )


@dataclass(frozen=True)
class Lsh:
    """Hash family and table shape for one layer."""

    family: str = _choice("dwta", LSH_FAMILIES)
    k: int | str = _int(6, lo=1, hi=MAX_K, auto=True)       # hashes per table, or "auto"
    l: int | str = _int(50, lo=1, hi=MAX_L, auto=True)      # tables, or "auto"
    bin_size: int = _int(8, lo=MIN_BIN_SIZE, hi=MAX_BIN_SIZE, pow2=True)  # WTA/DWTA
    srp_density: float = _float(0.33, lo=0.0, hi=1.0, lo_open=True)
    range_pow: int = _int(16, lo=MIN_RANGE_POW, hi=MAX_RANGE_POW)   # 2**range_pow buckets
    bucket_capacity: int = _int(32, lo=MIN_BUCKET_CAPACITY, hi=MAX_BUCKET_CAPACITY, pow2=True)
    insert: str = _choice("fifo", INSERT_POLICIES)
    policy: str = _choice("vanilla", QUERY_POLICIES)
    threshold: int = _int(2, lo=1)                  # min tables hit, for policy threshold
    # Share of the budget (after the labels) always given to uniform negatives: LSH-only negatives
    # are all hard ones, and neurons the tables never return then drift up unchecked at exact scoring.
    random_share: float = _float(0.25, lo=0.0, hi=1.0, hi_open=True)
    target_recall: float = _float(0.9, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    target_active_fraction: float = _float(0.01, lo=0.0, hi=1.0, lo_open=True)
    rebuild: RebuildConfig = _section(RebuildConfig)


@dataclass(frozen=True)
class Selection:
    """How one layer picks its active neurons per sample, in training and in eval."""

    mode: str = _choice("all", SELECTION_MODES)
    budget: int = _int(1024, lo=1)        # max active neurons per sample (clipped to layer size)
    min_active: int = _int(0, lo=0)       # top up with random neurons to at least this many
    inference: str = _choice("exact", INFERENCE_MODES)
    # Output layer, modes random/lsh: weight each uniform negative as the neurons it stands for
    # (sampled-softmax correction). Without it, labels rarely drawn as negatives drift upwards.
    correction: bool = _bool(True)
    lsh: Lsh = _section(Lsh)

    @property
    def uses_lsh(self) -> bool:
        """True when hash tables are needed for this layer (training or inference)."""
        return self.mode == "lsh" or self.inference == "lsh"

    def _cross_check(self, path: str) -> None:
        if self.min_active > self.budget:
            raise _Invalid(
                (_join(path, "min_active"), _join(path, "budget")),
                f"{_join(path, 'min_active')}: {self.min_active} is larger than "
                f"{_join(path, 'budget')} ({self.budget}); min_active must be <= budget",
            )
        lsh = self.lsh
        if self.uses_lsh and lsh.policy == "threshold" and isinstance(lsh.l, int) \
                and lsh.threshold > lsh.l:
            lsh_path = _join(path, "lsh")
            raise _Invalid(
                (_join(lsh_path, "threshold"), _join(lsh_path, "l"), _join(lsh_path, "policy")),
                f"{_join(lsh_path, 'threshold')}: {lsh.threshold} is larger than "
                f"{_join(lsh_path, 'l')} ({lsh.l}); policy 'threshold' needs threshold <= l",
            )


@dataclass(frozen=True)
class HiddenLayer:
    """One hidden layer; in YAML a bare int N is shorthand for {size: N}."""

    size: int = _field(dataclasses.MISSING, _Rule("int", lo=1))
    selection: Selection = _section(Selection)


@dataclass(frozen=True)
class OutputLayer:
    selection: Selection = _section(Selection)


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[HiddenLayer, ...] = field(
        default_factory=lambda: (HiddenLayer(size=128),),
        metadata={"rule": _Rule("hidden_list", cls=HiddenLayer)},
    )
    output: OutputLayer = _section(OutputLayer)
    activation: str = _choice("relu", ACTIVATIONS)
    loss: str = _choice("softmax", LOSSES)
    init: str = _choice("glorot", INITS)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = _int(5, lo=1)
    batch_size: int = _int(128, lo=1)
    lr: float = _float(0.001, lo=0.0, lo_open=True)
    optimizer: str = _choice("adam", OPTIMIZERS)
    beta1: float = _float(0.9, lo=0.0, hi=1.0, hi_open=True)
    beta2: float = _float(0.999, lo=0.0, hi=1.0, hi_open=True)
    eps: float = _float(1e-8, lo=0.0, lo_open=True)
    seed: int = _int(0, lo=0)
    threads: int | None = _int(None, lo=1, optional=True)   # null = all cores
    deterministic: bool = _bool(False)                      # forces threads=1
    max_steps: int | None = _int(None, lo=1, optional=True)
    log_every: int = _int(50, lo=1)                         # steps
    on_nan: str = _choice("stop", ON_NAN_ACTIONS)


@dataclass(frozen=True)
class EvalConfig:
    every: int = _int(0, lo=0)                              # steps; 0 = at epoch ends only
    subset: int | None = _int(2000, lo=1, optional=True)    # null = whole test set
    k: tuple[int, ...] = _field((1, 3, 5), _Rule("int_list", lo=1, hi=MAX_EVAL_K))
    recall_samples: int = _int(256, lo=0)                   # 0 = LSH diagnostics off


@dataclass(frozen=True)
class OutputConfig:
    run_dir: str = _str("runs/default")
    checkpoint_every: int = _int(1000, lo=0)                # steps; 0 = only at end/interrupt
    keep_last: int = _int(3, lo=1)


@dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training on Ray (slidepy/distributed.py); workers 0 = one process, no Ray."""
    workers: int = _int(0, lo=0)
    ray_address: str | None = _str(None, optional=True)    # null = a local Ray bound to 127.0.0.1
    sync_every: int = _int(50, lo=1)                        # steps between parameter syncs


@dataclass(frozen=True)
class Config:
    data: DataConfig = _section(DataConfig)
    model: ModelConfig = _section(ModelConfig)
    training: TrainingConfig = _section(TrainingConfig)
    eval: EvalConfig = _section(EvalConfig)
    output: OutputConfig = _section(OutputConfig)
    distributed: DistributedConfig = _section(DistributedConfig)

    @property
    def n_layers(self) -> int:
        """Number of weight layers: the hidden layers plus the output layer."""
        return len(self.model.hidden) + 1


def layer_selections(cfg: Config) -> list[Selection]:
    """The Selection of every weight layer, hidden layers first, then the output layer."""
    return [layer.selection for layer in cfg.model.hidden] + [cfg.model.output.selection]


# ---------------------------------------------------------------------------------------------
# Validation: raw dict -> dataclasses
# ---------------------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    """A value as it appears in a message: repr plus its YAML-ish type name."""
    kind = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null",
            list: "list", tuple: "list", dict: "mapping"}.get(type(value))
    if kind is None:
        kind = "mapping" if isinstance(value, Mapping) else type(value).__name__
    text = _safe_repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def _safe_repr(value: Any) -> str:
    """repr(value), or a description where repr fails (ints beyond Python's 4300-digit limit)."""
    try:
        return repr(value)
    except (ValueError, RecursionError):
        if _is_int(value):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__} that cannot be shown>"


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _describe(rule: _Rule) -> str:
    """What a rule accepts, in words: 'int in [1, 32] or "auto"', 'float > 0 or null', ..."""
    if rule.kind == "choice":
        text = "one of " + ", ".join(repr(c) for c in rule.choices)
    elif rule.kind == "bool":
        text = "bool"
    elif rule.kind == "str":
        text = "str"
    elif rule.kind in ("section", "hidden_list"):
        text = "mapping" if rule.kind == "section" else "list of hidden layers (int or mapping)"
    else:
        base = {"int": "int", "float": "float", "int_list": "sorted list of unique ints",
                "int_pair": "[min, max] pair of ints"}[rule.kind]
        if rule.pow2:
            base = "power of two"
        lo, hi = rule.lo, rule.hi
        if lo is not None and hi is not None:
            text = (f"{base} in {'(' if rule.lo_open else '['}{_fmt_num(lo)}, "
                    f"{_fmt_num(hi)}{')' if rule.hi_open else ']'}")
        elif lo is not None:
            text = f"{base} {'>' if rule.lo_open else '>='} {_fmt_num(lo)}"
        elif hi is not None:
            text = f"{base} {'<' if rule.hi_open else '<='} {_fmt_num(hi)}"
        else:
            text = base
        if rule.kind == "int_pair":
            text += ", min <= max"
    if rule.auto:
        text += f" or {AUTO!r}"
    if rule.optional:
        text += " or null"
    return text


def _in_range(rule: _Rule, x: float) -> bool:
    if rule.lo is not None and not (x > rule.lo if rule.lo_open else x >= rule.lo):
        return False
    if rule.hi is not None and not (x < rule.hi if rule.hi_open else x <= rule.hi):
        return False
    if rule.pow2 and (x < 1 or int(x) & (int(x) - 1)):
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _wrong_type(path: str, value: Any, rule: _Rule) -> _Invalid:
    return _Invalid(path, f"{path}: expected {_describe(rule)}, got {_show(value)}")


def _out_of_range(path: str, value: Any, rule: _Rule) -> _Invalid:
    return _Invalid(path, f"{path}: {_short(value)} is out of range; expected {_describe(rule)}")


def _short(value: Any) -> str:
    """repr of a value for a message, with absurdly long numbers (10**400) abbreviated."""
    text = _safe_repr(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} characters)"


def _check_int_size(path: str, value: int, rule: _Rule) -> None:
    if value > MAX_INT:
        raise _Invalid(path, f"{path}: {_short(value)} is too large; expected {_describe(rule)}, "
                             f"at most {MAX_INT}")


def _check_value(rule: _Rule, value: Any, path: str) -> Any:
    """Validate one raw value against its rule; return the stored (typed) value."""
    if value is None and rule.optional:
        return None
    kind = rule.kind
    if kind == "section":
        return _build_section(rule.cls, value, path)
    if kind == "hidden_list":
        return _check_hidden_list(rule, value, path)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _wrong_type(path, value, rule)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _wrong_type(path, value, rule)
        return value
    if kind == "choice":
        if not isinstance(value, str):
            raise _wrong_type(path, value, rule)
        if value not in rule.choices:
            hint = difflib.get_close_matches(value, rule.choices, n=1, cutoff=0.6)
            raise _Invalid(path, f"{path}: {value!r} is not allowed; expected {_describe(rule)}"
                           + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return value
    if kind == "int":
        if rule.auto and value == AUTO:
            return AUTO
        if not _is_int(value):
            raise _wrong_type(path, value, rule)
        if not _in_range(rule, value):
            raise _out_of_range(path, value, rule)
        _check_int_size(path, value, rule)
        return int(value)
    if kind == "float":
        if not _is_real(value):
            raise _wrong_type(path, value, rule)
        try:
            as_float = float(value)
        except (OverflowError, ValueError):   # an int beyond float range: 10**400
            as_float = math.inf
        if not math.isfinite(as_float):
            raise _Invalid(path, f"{path}: {_short(value)} is not finite; expected {_describe(rule)}")
        if not _in_range(rule, as_float):
            raise _out_of_range(path, value, rule)
        return as_float
    if kind in ("int_list", "int_pair"):
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(path, value, rule)
        if kind == "int_pair" and len(value) != 2:
            raise _Invalid(path, f"{path}: expected {_describe(rule)}, got {len(value)} items")
        if kind == "int_list" and not value:
            raise _Invalid(path, f"{path}: must not be empty; expected {_describe(rule)}")
        item_rule = dataclasses.replace(rule, kind="int")
        for i, item in enumerate(value):
            if not _is_int(item):
                raise _wrong_type(_join(path, i), item, item_rule)
            if not _in_range(item_rule, item):
                raise _out_of_range(_join(path, i), item, item_rule)
            _check_int_size(_join(path, i), item, item_rule)
        items = tuple(int(v) for v in value)
        if kind == "int_pair" and items[0] > items[1]:
            raise _Invalid(path, f"{path}: min {items[0]} is larger than max {items[1]}; "
                                 f"expected {_describe(rule)}")
        if kind == "int_list" and any(a >= b for a, b in zip(items, items[1:])):
            raise _Invalid(path, f"{path}: {list(items)} is not sorted ascending without repeats")
        return items
    raise AssertionError(f"unknown rule kind {kind!r}")


def _check_hidden_list(rule: _Rule, value: Any, path: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _wrong_type(path, value, rule)
    if not value:
        raise _Invalid(path, f"{path}: must have at least one hidden layer")
    layers = []
    for i, item in enumerate(value):
        item_path = _join(path, i)
        if _is_int(item):
            item = {"size": item}
        elif not (item is None or isinstance(item, Mapping)):
            raise _Invalid(item_path, f"{item_path}: expected a layer size (int) or a mapping "
                                      f"{{size: N, selection: ...}}, got {_show(item)}")
        layers.append(_build_section(rule.cls, item, item_path))
    return tuple(layers)


def _build_section(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass `cls` from mapping `raw`; `path` is its dotted key path ('' for root)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        where = path or "config"
        raise _Invalid(path, f"{where}: expected a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise _unknown_key(path, key, list(fields))
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in raw:
            kwargs[name] = _check_value(f.metadata["rule"], raw[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Invalid(key_path, f"{key_path}: missing required key")
    obj = cls(**kwargs)
    cross_check = getattr(obj, "_cross_check", None)
    if cross_check is not None:
        cross_check(path)
    return obj


# ---------------------------------------------------------------------------------------------
# Unknown keys and suggestions
# ---------------------------------------------------------------------------------------------


def _schema_paths(cls: type | None = None, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, key) of every key in the schema; list items appear as index 0."""
    cls = cls or Config
    out = []
    for f in dataclasses.fields(cls):
        path = _join(prefix, f.name)
        out.append((path, f.name))
        rule = f.metadata["rule"]
        if rule.kind == "section":
            out.extend(_schema_paths(rule.cls, path))
        elif rule.kind == "hidden_list":
            out.extend(_schema_paths(rule.cls, _join(path, 0)))
    return out


def _suggest(key: str, siblings: list[str]) -> str | None:
    """The sibling key the user most likely meant, or None."""
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return close[0]
    # 'lr_rate' -> 'lr', 'synth' -> 'synthetic': one is a prefix of the other.
    prefixed = [s for s in siblings if key.startswith(s) or s.startswith(key)]
    if prefixed:
        return max(prefixed, key=len)
    return None


def _unknown_key(path: str, key: Any, siblings: list[str]) -> _Invalid:
    key_path = _join(path, key)
    if not isinstance(key, str):
        return _Invalid(key_path, f"unknown key {key_path!r} (keys must be strings)")
    hint = _suggest(key, siblings)
    if hint is not None:
        return _Invalid(key_path, f"unknown key {key_path!r}; did you mean {_join(path, hint)!r}?")
    # A key put in the wrong section: 'model.epochs' -> 'training.epochs'.
    elsewhere = [p for p, name in _schema_paths() if name == key]
    if elsewhere:
        return _Invalid(key_path, f"unknown key {key_path!r}; did you mean {elsewhere[0]!r}?")
    return _Invalid(key_path, f"unknown key {key_path!r}; valid keys here: "
                              + ", ".join(siblings))


# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-4 as a float."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:               # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    """Parse YAML text; every failure (ints past Python's digit limit and absurd nesting
    included) is a yaml.YAMLError."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:
        raise yaml.YAMLError(f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def _apply_override(tree: dict, key_path: str, value: Any) -> None:
    """Set `key_path` (dots, list indices) in the full config dict `tree`, in place."""
    parts = key_path.split(".")
    node: Any = tree
    done = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if part not in node:
                raise _unknown_key(done, part, list(node))
            if last:
                node[part] = value
                return
            child = node[part]
        elif isinstance(node, list):
            if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                raise _Invalid(_join(done, part),
                               f"{done}: has {len(node)} entries; {part!r} is not an index "
                               f"0..{len(node) - 1} (set the whole list to change its length)")
            idx = int(part)
            if last:
                node[idx] = value
                return
            if _is_int(node[idx]) and done == "model.hidden":   # shorthand entry set earlier
                node[idx] = {"size": node[idx]}
            child = node[idx]
        else:
            raise _Invalid(done, f"{done!r} is a value, not a section (it holds {node!r})")
        node = child
        done = _join(done, part)


def _parse_override(text: str) -> tuple[str, Any]:
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. training.lr=0.01")
    key_path, raw = text.split("=", 1)
    key_path = key_path.strip()
    if not key_path or any(not part for part in key_path.split(".")):
        raise ConfigError(f"--set {text}: {key_path!r} is not a dotted key path")
    try:
        value = _load_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: cannot parse value {raw!r}: {exc}") from None
    return key_path, value


def _touches(override_path: str, error_path: str) -> bool:
    return (override_path == error_path or error_path.startswith(override_path + ".")
            or override_path.startswith(error_path + "."))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def config_from_dict(d: Mapping | None) -> Config:
    """Validate a plain (nested) dict and build a Config; missing keys take their defaults."""
    try:
        return _build_section(Config, d, "")
    except _Invalid as exc:
        raise ConfigError(exc.message) from None


def config_to_dict(cfg: Config) -> dict:
    """A plain dict of builtins (lists, not tuples); YAML-dumpable; round-trips via config_from_dict."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = [config_to_dict(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out


def validate_config(cfg: Config) -> Config:
    """Re-check a Config built or changed in code (e.g. by dataclasses.replace)."""
    return config_from_dict(config_to_dict(cfg))


def dump_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write `cfg` as YAML (every key, defaults included) to `path`, creating its directory.

    Atomic (temp file + rename): a run killed mid-write leaves the previous file, never a
    truncated one, so the `--config <run_dir>/config.yaml --resume` hint always works.
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _path_problem(path: str, want: str) -> str | None:
    """Why `path` cannot serve as an input file (want="file") or an output directory
    (want="dir", created if missing), or None when it can."""
    try:
        if want == "file":
            if not os.path.exists(path):
                return "does not exist"
            if os.path.isdir(path):
                return "is a directory, not a file"
            if not os.access(path, os.R_OK):
                return "is not readable (permission denied)"
            return None
        if os.path.exists(path):
            if not os.path.isdir(path):
                return "exists and is not a directory"
            if not os.access(path, os.W_OK | os.X_OK):
                return "is not writable (permission denied)"
            return None
        # Missing: it will be created, so its nearest existing ancestor must be a writable dir.
        ancestor = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            return f"cannot be created: {ancestor} is not a directory"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"cannot be created: {ancestor} is not writable (permission denied)"
        return None
    except (OSError, ValueError) as exc:    # ValueError: an embedded NUL byte
        return f"is not a usable path ({exc})"


def validate_paths(cfg: Config, *, output: bool = True) -> None:
    """Check the filesystem side of a config before any work: `data.train` / `data.test` (when
    not null) exist and are readable files, and (with `output`) `output.run_dir` is, or can be
    created as, a writable directory. Raises ConfigError naming the key and the path.

    Kept out of `config_from_dict`, which must stay usable for configs whose files live
    elsewhere (a model file's stored config, a config written for another machine).
    """
    checks = [(f"data.{key}", getattr(cfg.data, key), "file") for key in ("train", "test")]
    if output:
        checks.append(("output.run_dir", cfg.output.run_dir, "dir"))
    for key, path, want in checks:
        if path is None:
            continue
        problem = _path_problem(path, want)
        if problem is not None:
            raise ConfigError(f"{key}: {path} {problem}")


def load_config(path_or_dict: str | os.PathLike | Mapping | Config,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config from a YAML file, a dict or a Config, then apply `--set` style overrides.

    overrides: strings "dotted.key.path=VALUE", VALUE parsed as YAML ("0.01", "[256, 256]",
    "null", "lsh"); list items by index ("model.hidden.0.size=256"). Applied in order, then the
    whole config is validated once, so overrides may change related keys together.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(path_or_dict, Config):
        cfg = validate_config(path_or_dict)
    elif isinstance(path_or_dict, Mapping):
        cfg = config_from_dict(path_or_dict)
    elif isinstance(path_or_dict, (str, os.PathLike)):
        name = os.fspath(path_or_dict)
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read config file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
                              "expected a YAML config") from None
        except ValueError as exc:           # e.g. an embedded NUL byte in the path
            raise ConfigError(f"{name!r}: cannot read config file: {exc}") from None
        try:
            raw = _load_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: invalid YAML: {exc}") from None
        try:
            cfg = _build_section(Config, raw, "")
        except _Invalid as exc:
            raise ConfigError(f"{name}: {exc.message}") from None
    else:
        raise TypeError(f"load_config expects a path, a dict or a Config, "
                        f"got {type(path_or_dict).__name__}")
    if not overrides:
        return cfg

    tree = config_to_dict(cfg)
    parsed = []
    for text in overrides:
        key_path, value = _parse_override(text)
        try:
            _apply_override(tree, key_path, value)
        except _Invalid as exc:
            raise ConfigError(f"--set {text}: {exc.message}") from None
        parsed.append((text, key_path))
    try:
        return _build_section(Config, tree, "")
    except _Invalid as exc:
        culprits = [text for text, key_path in parsed
                    if any(_touches(key_path, p) for p in exc.paths)]
        named = culprits[-1:] or [text for text, _ in parsed]
        raise ConfigError(" ".join(f"--set {t}" for t in named) + f": {exc.message}") from None
