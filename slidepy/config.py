"""Typed run configuration: frozen pydantic models loaded from YAML or a dict, strictly validated.

    cfg = load_config("configs/quickstart.yaml", ["training.lr=0.01", "model.hidden.0.size=256"])
    cfg.model.output.selection.lsh.k      # -> 6 (or "auto")
    config_to_dict(cfg)                   # plain, YAML-dumpable dict; config_from_dict round-trips it

The models below are the schema (types, `Literal` choices, `Field` ranges, a validator per section
for rules between keys); pydantic checks it, and `_message` turns its first error into the one
line a user sees: dotted key path (list items by index: `model.hidden.0.size`), value and what is
allowed, "did you mean" for unknown keys and misspelt choices; prefixed with the file name or the
`--set KEY=VALUE` that caused it. Whatever the input, only ConfigError escapes (tests/test_fuzz.py).

Types are strict (YAML `true` is not 1, "5" is not 5) except that an int is accepted, and stored as
a float, where a float is expected; floats are finite; no int exceeds MAX_INT. A section given as
`null` (everything under it commented out) means "all defaults". Validation never touches the
filesystem, so a config naming another machine's files loads; `validate_paths` checks them.
Models are frozen; to change one in code, `cfg.model_copy(update={...})` then `validate_config`.
"""

from __future__ import annotations

import difflib
import numbers
import os
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from slidepy.atomic import atomic_write
from slidepy.constants import (MAX_BIN_SIZE, MAX_BUCKET_CAPACITY, MAX_INT, MAX_K, MAX_L, MAX_RANGE_POW,
                               MIN_BIN_SIZE, MIN_BUCKET_CAPACITY, MIN_RANGE_POW)
from slidepy.errors import ConfigError

MIN_LABELS = 2           # synthetic data: fewer labels is not a classification problem
MIN_REBUILD_DECAY = 1.0  # rebuild intervals never shrink
MAX_EVAL_K = 100         # largest k for P@k / nDCG@k
AUTO = "auto"            # value of lsh.k / lsh.l chosen from target_recall


def _power_of_two(n: int) -> int:
    if n < 1 or n & (n - 1):
        raise PydanticCustomError("power_of_two", "not a power of two")
    return n


_POW2 = AfterValidator(_power_of_two)
_Int = Annotated[int, Field(le=MAX_INT)]      # kernels index with int32, seeds mix in uint64
_PosInt = Annotated[int, Field(ge=1, le=MAX_INT)]


class _CrossCheck(ValueError):
    """A broken rule between keys of one section: `keys` relative to the section; `{0}`, `{1}`...
    in `text` become their full paths, which only the formatter knows."""

    def __init__(self, keys: tuple[str, ...], text: str):
        super().__init__(text)
        self.keys, self.text = keys, text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    expected: ClassVar[str] = "a mapping"     # what an error message says the section accepts

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):         # strict mode wants the tuples and ints that YAML
            return {k: _plain(v) for k, v in data.items()}   # and numpy give as lists, np.int64
        return data


def _plain(v: Any, top: bool = True) -> Any:
    if isinstance(v, (list, tuple)) and top:  # one level: the schema has no nested lists, and
        return tuple(_plain(x, False) for x in v)   # YAML `&a [*a]` is a list inside itself
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, (bool, int)) else v


# --- Schema ---------------------------------------------------------------------------------------


class SyntheticConfig(_Section):
    """Generated multi-label data, used when `data.train` is null."""

    n_train: _Int = Field(4000, ge=1)
    n_test: _Int = Field(1000, ge=1)
    n_features: _Int = Field(2000, ge=1)
    n_labels: _Int = Field(1000, ge=MIN_LABELS)
    nnz_per_sample: _Int = Field(20, ge=1)
    labels_per_sample: tuple[_PosInt, ...] = Field((1, 3), min_length=2, max_length=2,
                                                  description="[min, max] pair of ints >= 1")
    noise_fraction: float = Field(0.2, ge=0, lt=1)
    zipf_exponent: float = Field(1.0, ge=0)
    seed: _Int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        lo, hi = self.labels_per_sample
        if lo > hi:
            raise _CrossCheck(("labels_per_sample",), f"{{0}}: min {lo} is larger than max {hi}")
        if hi > self.n_labels:
            raise _CrossCheck(("labels_per_sample", "n_labels"),
                              f"{{0}}: max {hi} is larger than {{1}} ({self.n_labels})")
        if self.nnz_per_sample > self.n_features:
            raise _CrossCheck(("nnz_per_sample", "n_features"),
                              f"{{0}}: {self.nnz_per_sample} is larger than {{1}} ({self.n_features})")
        return self


class DataConfig(_Section):
    train: str | None = None                      # null => data.synthetic
    test: str | None = None
    labels: str | None = None                     # one label name per line, for predictions
    format: Literal["auto", "xc", "libsvm"] = "auto"
    cache: bool = True
    cache_dir: str | None = None
    skip_bad_lines: bool = False
    synthetic: SyntheticConfig = SyntheticConfig()


class RebuildConfig(_Section):
    """When hash tables are rebuilt (neurons re-inserted) and hash functions redrawn."""

    initial_interval: _Int = Field(50, ge=1)         # batches before the first rebuild
    decay: float = Field(1.1, ge=MIN_REBUILD_DECAY)  # each interval = previous * decay
    max_interval: _Int | None = Field(None, ge=1)
    rehash_every: _Int = Field(0, ge=0)              # redraw hashes every N rebuilds; 0 = never
    drift_threshold: float | None = Field(None, gt=0, le=1)
    drift_sample: _Int = Field(1024, ge=1)
    drift_check_every: _Int = Field(50, ge=1)        # batches
    # kmeans: re-centre clusters on their members' current weights every N batches between
    # rebuilds (O(N D), cheap); 0 = never.
    refresh_every: _Int = Field(10, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RebuildConfig:
        if self.max_interval is not None and self.max_interval < self.initial_interval:
            raise _CrossCheck(("max_interval", "initial_interval"),
                              f"{{0}}: {self.max_interval} is smaller than {{1}} ({self.initial_interval})")
        return self


class Lsh(_Section):
    """Hash family and table shape for one layer."""

    family: Literal["kmeans", "dwta", "wta", "srp", "minhash"] = "kmeans"
    clusters: Annotated[int, Field(ge=2, le=MAX_INT)] | Literal["auto"] = "auto"  # kmeans: per table
    k: Annotated[int, Field(ge=1, le=MAX_K)] | Literal["auto"] = 6     # hashes per table
    l: Annotated[int, Field(ge=1, le=MAX_L)] | Literal["auto"] = "auto"  # tables (kmeans auto: 1)
    bin_size: Annotated[int, _POW2] = Field(8, ge=MIN_BIN_SIZE, le=MAX_BIN_SIZE)   # WTA/DWTA
    srp_density: float = Field(0.33, gt=0, le=1)
    range_pow: int = Field(16, ge=MIN_RANGE_POW, le=MAX_RANGE_POW)    # 2**range_pow buckets
    bucket_capacity: Annotated[int, _POW2] = Field(32, ge=MIN_BUCKET_CAPACITY, le=MAX_BUCKET_CAPACITY)
    insert: Literal["fifo", "reservoir"] = "fifo"
    policy: Literal["vanilla", "topk", "threshold"] = "vanilla"
    threshold: _Int = Field(2, ge=1)                 # min tables hit, for policy threshold
    # Share of the budget (after the labels) always given to uniform negatives: LSH-only negatives
    # are all hard ones, and neurons the tables never return then drift up unchecked at exact scoring.
    random_share: float = Field(0.25, ge=0, lt=1)
    target_recall: float = Field(0.9, gt=0, lt=1)
    target_active_fraction: float = Field(0.01, gt=0, le=1)
    rebuild: RebuildConfig = RebuildConfig()


class Selection(_Section):
    """How one layer picks its active neurons per sample, in training and in eval."""

    mode: Literal["all", "random", "lsh"] = "all"
    budget: _Int = Field(1024, ge=1)     # max active neurons per sample (clipped to layer size)
    min_active: _Int = Field(0, ge=0)    # top up with random neurons to at least this many
    inference: Literal["exact", "lsh"] = "exact"
    # Output layer, modes random/lsh: weight each uniform negative as the neurons it stands for
    # (sampled-softmax correction). Without it, labels rarely drawn as negatives drift upwards.
    correction: bool = True
    lsh: Lsh = Lsh()

    @property
    def uses_lsh(self) -> bool:
        """True when hash tables are needed for this layer (training or inference)."""
        return self.mode == "lsh" or self.inference == "lsh"

    @model_validator(mode="after")
    def _check(self) -> Selection:
        if self.min_active > self.budget:
            raise _CrossCheck(("min_active", "budget"), f"{{0}}: {self.min_active} is larger than {{1}} "
                                                        f"({self.budget}); min_active must be <= budget")
        lsh = self.lsh
        if self.uses_lsh and lsh.policy == "threshold" and lsh.l != AUTO and lsh.threshold > lsh.l:
            raise _CrossCheck(("lsh.threshold", "lsh.l", "lsh.policy"),
                              f"{{0}}: {lsh.threshold} is larger than {{1}} ({lsh.l}); "
                              f"policy 'threshold' needs threshold <= l")
        return self


class HiddenLayer(_Section):
    """One hidden layer; in YAML a bare int N is shorthand for {size: N}."""

    expected: ClassVar[str] = "a layer size (int) or a mapping {size: N, selection: ...}"
    size: _Int = Field(ge=1)
    selection: Selection = Selection()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"size": data} if isinstance(data, int) and not isinstance(data, bool) else data


class OutputLayer(_Section):
    selection: Selection = Selection()


class ModelConfig(_Section):
    hidden: tuple[HiddenLayer, ...] = Field((HiddenLayer(size=128),), min_length=1,
                                            description="list of at least one hidden layer (int size or mapping)")
    output: OutputLayer = OutputLayer()
    activation: Literal["relu"] = "relu"
    loss: Literal["softmax", "bce"] = "softmax"
    init: Literal["he", "glorot"] = "glorot"
    dropout: float = Field(0.0, ge=0, lt=1)          # of every hidden layer's outputs, in training


class TrainingConfig(_Section):
    epochs: _Int = Field(5, ge=1)
    batch_size: _Int = Field(128, ge=1)
    lr: float = Field(0.001, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)          # Adam only: decoupled (AdamW), weight rows only
    seed: _Int = Field(0, ge=0)
    threads: _Int | None = Field(None, ge=1)      # null = all cores
    deterministic: bool = False                     # forces threads=1
    max_steps: _Int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)  # stop after this many training seconds
    # Learning rate over the run: constant, or linear decay to 0 at its planned end (the last
    # epoch / max_steps, or time_budget_s, whichever comes first); either after warmup_steps of
    # linear ramp-up from 0.
    lr_schedule: Literal["constant", "linear"] = "constant"
    warmup_steps: _Int = Field(0, ge=0)
    log_every: _Int = Field(50, ge=1)                # steps
    on_nan: Literal["stop", "rollback"] = "stop"


class EvalConfig(_Section):
    every: _Int = Field(0, ge=0)                     # steps; 0 = at epoch ends only
    subset: _Int | None = Field(2000, ge=1)       # null = whole test set
    k: tuple[Annotated[int, Field(ge=1, le=MAX_EVAL_K)], ...] = Field(
        (1, 3, 5), min_length=1, description=f"sorted list of unique ints in [1, {MAX_EVAL_K}]")
    recall_samples: _Int = Field(256, ge=0)          # 0 = LSH diagnostics off

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if any(a >= b for a, b in zip(self.k, self.k[1:])):
            raise _CrossCheck(("k",), f"{{0}}: {list(self.k)} is not sorted ascending without repeats")
        return self


class OutputConfig(_Section):
    run_dir: str = "runs/default"
    checkpoint_every: _Int = Field(1000, ge=0)       # steps; 0 = only at end/interrupt
    keep_last: _Int = Field(3, ge=1)


class DistributedConfig(_Section):
    workers: _Int = Field(0, ge=0)                   # 0 = single process
    ray_address: str | None = None               # null = start a local Ray
    sync_every: _Int = Field(50, ge=1)               # steps between weight syncs


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()
    distributed: DistributedConfig = DistributedConfig()

    @property
    def n_layers(self) -> int:
        """Number of weight layers: the hidden layers plus the output layer."""
        return len(self.model.hidden) + 1


def layer_selections(cfg: Config) -> list[Selection]:
    """The Selection of every weight layer, hidden layers first, then the output layer."""
    return [layer.selection for layer in cfg.model.hidden] + [cfg.model.output.selection]


# --- Error messages: pydantic's first error -> one line with the key path, value and what is allowed ---

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "power_of_two"}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _unwrap(tp: Any, meta: tuple = ()) -> tuple[Any, tuple]:
    """Strip Annotated[...] off a type, collecting its constraints (Ge, Le, _POW2, ...)."""
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        for m in extra:
            meta += tuple(m.metadata) if isinstance(m, FieldInfo) else (m,)
    return tp, meta


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _walk(loc: tuple) -> tuple[str, Any, tuple, FieldInfo | None]:
    """Follow a pydantic error location through the schema as far as it names keys and list
    indices (it goes on with union member tags and unknown keys): that dotted path, the type
    found there with its constraints, and its field (None for a list item)."""
    tp, meta, info, parts = Config, (), None, []
    for part in loc:
        tp, meta = _unwrap(tp, meta)
        if _is_model(tp) and part in tp.model_fields:
            info = tp.model_fields[part]
            tp, meta = info.annotation, tuple(info.metadata)
        elif get_origin(tp) is tuple and isinstance(part, int):
            tp, meta, info = get_args(tp)[0], (), None
        else:
            break
        parts.append(str(part))
    tp, meta = _unwrap(tp, meta)
    return ".".join(parts), tp, meta, info


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _describe(tp: Any, meta: tuple = ()) -> str:
    """What a type accepts, in words: "int in [1, 32] or 'auto'", "float > 0 or null", ..."""
    tp, meta = _unwrap(tp, meta)
    args = get_args(tp)
    if get_origin(tp) in (Union, types.UnionType):
        text = " or ".join(_describe(a, meta) for a in args if a is not type(None))
        return text + (" or null" if type(None) in args else "")
    if get_origin(tp) is Literal:
        return repr(args[0]) if len(args) == 1 else "one of " + ", ".join(map(repr, args))
    if get_origin(tp) is tuple:
        return "list of " + _describe(args[0])
    if _is_model(tp):
        return tp.expected
    base = "power of two" if _POW2 in meta else getattr(tp, "__name__", str(tp))
    lo = max([(m.ge, "[", ">=") for m in meta if isinstance(m, Ge)]
             + [(m.gt, "(", ">") for m in meta if isinstance(m, Gt)], default=None)
    hi = min([(m.le, "]", "<=") for m in meta if isinstance(m, Le) and m.le != MAX_INT]
             + [(m.lt, ")", "<") for m in meta if isinstance(m, Lt)], default=None)
    if lo and hi:
        return f"{base} in {lo[1]}{_num(lo[0])}, {_num(hi[0])}{hi[1]}"
    if lo or hi:
        bound, _, op = lo or hi
        return f"{base} {op} {_num(bound)}"
    return base


def _short(value: Any) -> str:
    """repr for a message: tuples as the lists they came from, long values cut (the repr of an int
    past 4300 digits raises)."""
    try:
        text = repr(list(value) if isinstance(value, tuple) else value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= 60 else f"{text[:45]}...({len(text)} characters)"


def _schema_paths(cls: type = None, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, key) of every key in the schema; list items appear as index 0."""
    out = []
    for name, info in (cls or Config).model_fields.items():
        path = _join(prefix, name)
        out.append((path, name))
        tp = info.annotation
        if get_origin(tp) is tuple and _is_model(get_args(tp)[0]):
            tp, path = get_args(tp)[0], _join(path, 0)
        if _is_model(tp):
            out.extend(_schema_paths(tp, path))
    return out


def _unknown_key(path: str, key: Any, siblings: list[str]) -> str:
    key_path = _join(path, key)
    if not isinstance(key, str):
        return f"unknown key {key_path!r} (keys must be strings)"
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    # 'lr_rate' -> 'lr', 'synth' -> 'synthetic': one is a prefix of the other.
    prefixed = sorted((s for s in siblings if key.startswith(s) or s.startswith(key)), key=len)
    hint = _join(path, close[0]) if close else _join(path, prefixed[-1]) if prefixed else None
    # A key put in the wrong section: 'model.epochs' -> 'training.epochs'.
    hint = hint or next((p for p, name in _schema_paths() if name == key), None)
    if hint:
        return f"unknown key {key_path!r}; did you mean {hint!r}?"
    return f"unknown key {key_path!r}; valid keys here: " + ", ".join(siblings)


def _message(exc: ValidationError) -> tuple[str, list[str]]:
    """One line for the first error of `exc`, and the key paths it concerns."""
    errors = exc.errors(include_url=False)
    # Unknown keys first: a misspelt key also leaves the right one missing.
    err = min(errors, key=lambda e: e["type"] not in ("extra_forbidden", "invalid_key"))
    path, tp, meta, info = _walk(err["loc"])
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in ("extra_forbidden", "invalid_key"):
        key = err["loc"][-1]
        return _unknown_key(path, key, list(tp.model_fields)), [_join(path, key)]
    if isinstance(ctx.get("error"), _CrossCheck):
        paths = [_join(path, k) for k in ctx["error"].keys]
        return ctx["error"].text.format(*paths), paths
    return f"{path or 'config'}: {_problem(err, errors, path, tp, meta, info)}", [path]


def _problem(err: dict, errors: list[dict], path: str, tp: Any, meta: tuple, info: FieldInfo | None) -> str:
    value, kind, ctx = err["input"], err["type"], err.get("ctx", {})
    if kind == "missing":
        return "missing required key"
    expected = info.description if info is not None and info.description else _describe(tp, meta)
    # A union (lsh.k: int or 'auto') reports one error per member; a range error wins.
    group = [e for e in errors if _walk(e["loc"])[0] == path]
    in_range = next((e for e in group if e["type"] in _RANGE_ERRORS), None)
    if in_range is not None:
        if in_range.get("ctx", {}).get("le") == MAX_INT:
            return f"{_short(value)} is too large; expected {expected}, at most {MAX_INT}"
        return f"{_short(value)} is out of range; expected {expected}"
    if kind == "finite_number" or (kind == "float_type" and type(value) is int):   # 10**400
        return f"{_short(value)} is not finite; expected {expected}"
    if kind in ("too_short", "too_long"):
        n = ctx["actual_length"]
        return f"must not be empty; expected {expected}" if n == 0 else f"expected {expected}, got {n} items"
    if all(e["type"] == "literal_error" for e in group) and isinstance(value, str):
        hint = difflib.get_close_matches(value, [str(a) for a in get_args(tp)], n=1, cutoff=0.6)
        return f"{value!r} is not allowed; expected {expected}" + (f"; did you mean {hint[0]!r}?" if hint else "")
    kind = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null", tuple: "list",
            list: "list", dict: "mapping"}.get(type(value), type(value).__name__)
    return f"expected {expected}, got {_short(value)} ({kind})"


def _build(raw: Any) -> Config:
    """raw dict -> Config; a failure is a ConfigError(message) with `.paths` for override blame."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        message, paths = _message(exc)
    error = ConfigError(message)
    error.paths = paths
    raise error


# --- YAML: safe loader, but duplicate keys are an error and 1e-4 is a float (YAML 1.1 reads a string) ---


class _Loader(yaml.SafeLoader):
    pass


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
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _load_yaml(text: str) -> Any:
    """Parse YAML; every failure (ints past Python's digit limit, absurd nesting) is a YAMLError."""
    try:
        return yaml.load(text, Loader=_Loader)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise yaml.YAMLError(f"{type(exc).__name__}: {exc}") from None


# --- Overrides: --set dotted.key=VALUE, applied to the full config dict before validation ---------


def _apply_override(tree: dict, key_path: str, value: Any) -> None:
    """Set `key_path` (dots, list indices) in the full config dict `tree`, in place."""
    parts = key_path.split(".")
    node, done = tree, ""
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            if part not in node:
                raise ConfigError(_unknown_key(done, part, list(node)))
            key = part
        elif isinstance(node, list):
            if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                raise ConfigError(f"{done}: has {len(node)} entries; {part!r} is not an index "
                                  f"0..{len(node) - 1} (set the whole list to change its length)")
            key = int(part)
            if done == "model.hidden" and isinstance(node[key], int) and i < len(parts) - 1:
                node[key] = {"size": node[key]}      # shorthand entry from an earlier override
        else:
            raise ConfigError(f"{done!r} is a value, not a section (it holds {_short(node)})")
        if i == len(parts) - 1:
            node[key] = value
            return
        node, done = node[key], _join(done, part)


def _parse_override(text: Any) -> tuple[str, Any]:
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. training.lr=0.01")
    key_path, raw = text.split("=", 1)
    key_path = key_path.strip()
    if not key_path or any(not part for part in key_path.split(".")):
        raise ConfigError(f"--set {text}: {key_path!r} is not a dotted key path")
    try:
        return key_path, _load_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: cannot parse value {raw!r}: {exc}") from None


# --- Public API -----------------------------------------------------------------------------------


def config_from_dict(d: Mapping | None) -> Config:
    """Validate a plain (nested) dict and build a Config; missing keys take their defaults."""
    return _build(d)


def config_to_dict(cfg: Config) -> dict:
    """A plain dict of builtins (lists, not tuples); YAML-dumpable; round-trips via config_from_dict."""
    return cfg.model_dump(mode="json", warnings=False)   # warnings: validate_config reports bad values


def validate_config(cfg: Config) -> Config:
    """Re-check a Config changed in code (`model_copy(update=...)` does not validate)."""
    return config_from_dict(config_to_dict(cfg))


def dump_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write `cfg` as YAML (every key, defaults included) to `path`, creating its directory.
    Atomic (temp file + rename): a run killed mid-write leaves the previous file, so the
    `--config <run_dir>/config.yaml --resume` hint always works."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _path_problem(path: str, want: str) -> str | None:
    """Why `path` cannot serve as an input file (want="file") or an output directory
    (want="dir", created if missing), or None when it can."""
    try:
        if want == "file":
            if not os.path.exists(path):
                return "does not exist"
            if os.path.isdir(path):
                return "is a directory, not a file"
            return None if os.access(path, os.R_OK) else "is not readable (permission denied)"
        if os.path.exists(path):
            if not os.path.isdir(path):
                return "exists and is not a directory"
            return None if os.access(path, os.W_OK | os.X_OK) else "is not writable (permission denied)"
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
    """Check before any work that `data.train` / `data.test` / `data.labels` (when not null) are
    readable files and (with `output`) that `output.run_dir` is, or can be created as, a writable
    directory. Raises ConfigError naming the key and the path. Kept out of `config_from_dict`,
    which must accept configs whose files live elsewhere (a model file's stored config)."""
    checks = [(f"data.{key}", getattr(cfg.data, key), "file") for key in ("train", "test", "labels")]
    if output:
        checks.append(("output.run_dir", cfg.output.run_dir, "dir"))
    for key, path, want in checks:
        problem = None if path is None else _path_problem(path, want)
        if problem is not None:
            raise ConfigError(f"{key}: {path} {problem}")


def _read_file(name: str) -> Any:
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
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from None


def load_config(path_or_dict: str | os.PathLike | Mapping | Config,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config from a YAML file, a dict or a Config, then apply `--set` style overrides.

    overrides: strings "dotted.key.path=VALUE", VALUE parsed as YAML ("0.01", "[256, 256]",
    "null", "lsh"); list items by index ("model.hidden.0.size=256"). Applied in order, then the
    whole config is validated once, so overrides may change related keys together.
    """
    overrides = [overrides] if isinstance(overrides, str) else overrides
    if isinstance(path_or_dict, Config):
        cfg = validate_config(path_or_dict)
    elif isinstance(path_or_dict, Mapping):
        cfg = config_from_dict(path_or_dict)
    elif isinstance(path_or_dict, (str, os.PathLike)):
        name = os.fspath(path_or_dict)
        raw = _read_file(name)
        try:
            cfg = _build(raw)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    else:
        raise TypeError(f"load_config expects a path, a dict or a Config, got {type(path_or_dict).__name__}")
    if not overrides:
        return cfg
    tree, applied = config_to_dict(cfg), []
    for text in overrides:
        key_path, value = _parse_override(text)
        try:
            _apply_override(tree, key_path, value)
        except ConfigError as exc:
            raise ConfigError(f"--set {text}: {exc}") from None
        applied.append((text, key_path))
    try:
        return _build(tree)
    except ConfigError as exc:
        # Blame the last override that set a key the error names (or a section above or below it).
        culprits = [text for text, key in applied
                    if any((key + ".").startswith(p + ".") or (p + ".").startswith(key + ".") for p in exc.paths)]
        named = culprits[-1:] or [text for text, _ in applied]
        raise ConfigError(" ".join(f"--set {t}" for t in named) + f": {exc}") from None
