"""Configs in and out of files: YAML with `--set` overrides in, one-line error messages out.

    cfg = load_config("configs/quickstart.yaml", ["training.lr=0.01", "model.hidden.0.size=256"])
    cfg = config_from_dict({"training": {"epochs": 2}})   # missing keys take their defaults
    dump_config(cfg, "runs/a/config.yaml")                 # every key, atomically
    validate_paths(cfg)                                     # the files it names exist / can be made

The schema itself is config.py's; this module turns input into a Config and pydantic's errors
into the one line a user sees (`_message`): dotted key path (list items by index:
`model.hidden.0.size`), value and what is allowed, "did you mean" for unknown keys and misspelt
choices; prefixed with the file name or the `--set KEY=VALUE` that caused it. Whatever the input,
only ConfigError escapes (tests/test_fuzz.py). YAML is read with a safe loader that refuses
duplicate keys and reads 1e-4 as a float. Imports flow one way: configfile -> config.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from slidepy.atomic import atomic_write
from slidepy.config import MAX_INT, POW2, Config, CrossCheck, config_to_dict
from slidepy.errors import ConfigError


def load_config(path_or_dict: str | os.PathLike | Mapping | Config,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config from a YAML file, a dict or a Config, then apply `--set` style overrides.

    overrides: strings "dotted.key.path=VALUE", VALUE parsed as YAML ("0.01", "[256, 256]",
    "null", "lsh"); list items by index ("model.hidden.0.size=256"). A file must be valid on its
    own (its errors name its lines); the overrides are applied to it in order, then the whole
    config is validated once, so overrides may change related keys together.
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
            raise ConfigError(f"{_where(name, exc.paths)}: {exc}") from None
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


def config_from_dict(d: Mapping | None) -> Config:
    """Validate a plain (nested) dict and build a Config; missing keys take their defaults."""
    return _build(d)


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


def validate_paths(cfg: Config, *, output: bool = True, source: str | os.PathLike | None = None) -> None:
    """Check before any work that `data.train` / `data.test` / `data.labels` (when not null) are
    readable files and (with `output`) that `output.run_dir` is, or can be created as, a writable
    directory. Raises ConfigError naming the key and the path, where a relative one was looked
    for, and, when `source` (the config file) set the value, the file and line. Kept out of
    `config_from_dict`, which must accept configs whose files live elsewhere (a model file's
    stored config)."""
    checks = [(f"data.{key}", getattr(cfg.data, key), "file") for key in ("train", "test", "labels")]
    if output:
        checks.append(("output.run_dir", cfg.output.run_dir, "dir"))
    for key, path, want in checks:
        problem = None if path is None else _path_problem(path, want)
        if problem is None:
            continue
        if not os.path.isabs(path) and "\0" not in path:
            problem += f" (looked for {os.path.abspath(path)}: relative paths start from the working directory)"
        prefix = ""
        if source is not None and _file_value(source, key) == path:  # not a --set / --train override
            prefix = f"{_where(os.fspath(source), [key])}: "
        raise ConfigError(f"{prefix}{key}: {path} {problem}")


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
    except yaml.MarkedYAMLError as exc:
        mark, start = exc.problem_mark or exc.context_mark, exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        what = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context:  # e.g. an unclosed [ found only lines later
            since = f" at line {start.line + 1}" if start is not None and start.line != mark.line else ""
            what += f" ({exc.context}{since})"
        raise ConfigError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {_one_line(exc)}") from None


def _key_lines(name: str) -> dict[str, int]:
    """Dotted key path (list items by index) -> the 1-based line where the file sets it; empty
    when the file cannot be read or parsed (the message then names the file alone)."""
    try:
        with open(name, encoding="utf-8") as f:
            root = yaml.compose(f.read(), Loader=_Loader)
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return {}
    lines: dict[str, int] = {}
    stack, seen = [("", root)], set()
    while stack:
        path, node = stack.pop()
        if id(node) in seen:  # an alias: its node is walked once (one that holds itself would loop)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = _join(path, key_node.value)
                lines.setdefault(child, key_node.start_mark.line + 1)
                stack.append((child, value_node))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = _join(path, i)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item))
    return lines


def _where(name: str, paths: list[str]) -> str:
    """`name:line` of the first key path in `paths` the file sets (or of its nearest section that
    it does: a missing key's), else `name`."""
    lines = _key_lines(name)
    for path in paths:  # a key the file sets, before any section of another
        if path in lines:
            return f"{name}:{lines[path]}"
    for path in paths:
        parts = path.split(".") if path else []
        while parts:
            line = lines.get(".".join(parts))
            if line is not None:
                return f"{name}:{line}"
            parts.pop()
    return name


def _file_value(name: str | os.PathLike, key: str) -> Any:
    """The value the config file sets at dotted `key`, or None."""
    try:
        node = _read_file(os.fspath(name))
    except ConfigError:
        return None
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


# --- Error messages: pydantic's first error -> one line with the key path, value and what is allowed ---

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "power_of_two"}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _unwrap(tp: Any, meta: tuple = ()) -> tuple[Any, tuple]:
    """Strip Annotated[...] off a type, collecting its constraints (Ge, Le, POW2, ...)."""
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
    base = "power of two" if POW2 in meta else getattr(tp, "__name__", str(tp))
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
    if isinstance(ctx.get("error"), CrossCheck):
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
    if kind == "string_too_short":  # an empty path
        return f"must not be empty, got {value!r}"
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


def flat_keys(tree: Mapping, prefix: str = "") -> dict:
    """A nested config dict as dotted keys: {"training": {"lr": 0.1}} and {"training.lr": 0.1}
    both give {"training.lr": 0.1} (lists are values)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_keys(value, path + "."))
        else:
            out[path] = value
    return out


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
            if done == "model.hidden" and isinstance(value, int) and not isinstance(value, bool):
                # a hidden layer's shorthand is its size: set that, keeping the layer's other settings
                if isinstance(node[key], dict):
                    node[key]["size"] = value
                else:
                    node[key] = value
                return
            if isinstance(node[key], dict) and not isinstance(value, dict):
                example = next(iter(node[key]), "KEY")
                raise ConfigError(f"{key_path!r} is a section, not a value: set its keys, e.g. "
                                  f"{key_path}.{example}=...")
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
        raise ConfigError(f"--set {text}: cannot parse value {raw!r}: {_one_line(exc)}") from None


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's message without its second line (where in "<unicode string>" it was)."""
    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem or exc.context):
        return "; ".join(part for part in (exc.problem, exc.context) if part)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(line for line in lines if "<unicode string>" not in line) or lines[0]
