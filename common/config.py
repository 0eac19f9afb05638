"""Typed configuration: dataclasses with a help text per field, loaded from YAML, with `key.path=value` overrides.

Every section of an experiment is a dataclass whose fields are declared with :func:`option`, which records the help
text and the accepted range next to the default. :func:`build` turns a plain mapping (parsed YAML) into such a
dataclass, checking every key against the declared type; anything wrong raises :class:`ConfigError`, whose message
names the file, the dotted key and what was expected. The command line turns that error into exit code 2.

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, ``Literal[...]``, ``X | None``,
``list[X]``, ``dict[str, X]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range. The message names the key and file."""

    def __init__(self, key: str, expected: str, got: object = _MISSING, source: str = "<config>") -> None:
        self.key, self.expected, self.source = key, expected, source
        got_text = "" if got is _MISSING else f", got {got!r}"
        super().__init__(f"{source}: `{key}`: expected {expected}{got_text}")


def option(
    default: Any = _MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    default_factory: Any = _MISSING,
) -> Any:
    """Declare a config field: default, help text and accepted range (checked by :func:`build`)."""
    metadata = {"help": help, "choices": choices, "ge": ge, "le": le, "gt": gt, "lt": lt}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, list | dict):  # mutable defaults need a factory; copy so instances never share them
        frozen_default = default
        return dataclasses.field(default_factory=lambda: _deepcopy(frozen_default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------- building


def build(cls: type[T], data: Mapping[str, Any] | None, *, source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating every key; missing keys take their defaults."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "<root>", f"a mapping of {cls.__name__} fields", data, source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(prefix, str(key)), f"one of the known keys ({known})", source=source)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, source)
            _check_range(f.metadata, kwargs[name], key, source)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(key, "a value (this key is required)", source=source)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):  # cross-field checks; they raise ConfigError with their own key
        try:
            validate()
        except ConfigError as err:
            raise ConfigError(_join(prefix, err.key), err.expected, source=source) from None
    return obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({getattr(tp, '__name__', tp)})"
    if isinstance(tp, type):
        return {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, source)
            except ConfigError as err:
                errors.append(err.expected)
        raise ConfigError(key, " or ".join(errors + (["null"] if type(None) in args else [])), value, source)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(key, _type_name(tp), value, source)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"a list of {_type_name(get_args(tp)[0])}", value, source)
        return [_coerce(get_args(tp)[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, "a mapping", value, source)
        return {str(k): _coerce(get_args(tp)[1], v, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source=source, prefix=key)  # type: ignore[arg-type]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "a boolean (true/false)", value, source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "an integer", value, source)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, "a number", value, source)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, "a string", value, source)
        return value
    raise TypeError(f"config field {key}: unsupported annotation {tp!r}")  # a programming error, not user input


def _check_range(meta: Mapping[str, Any], value: Any, key: str, source: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(key, "one of " + ", ".join(map(repr, choices)), value, source)
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for bound, ok, text in (
            ("ge", lambda v, b: v >= b, ">="),
            ("le", lambda v, b: v <= b, "<="),
            ("gt", lambda v, b: v > b, ">"),
            ("lt", lambda v, b: v < b, "<"),
        ):
            b = meta.get(bound)
            if b is not None and not ok(v, b):
                raise ConfigError(key, f"a value {text} {b}", value, source)


# ---------------------------------------------------------------------------------------------------- YAML + overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value (``x=3`` gives int 3, ``x=[a,b]`` a list)."""
    if "=" not in text:
        raise ConfigError(text, "an override of the form key.path=value", source="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(text, "an override of the form key.path=value", source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not valid YAML: keep it as a plain string
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` override set (creating nested mappings as needed)."""
    out = _deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(path[: i + 1]), "a mapping to hold " + ".".join(path), nxt, "--set")
            node = nxt
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping top level is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("<file>", "an existing YAML file", str(p), source=str(p))
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        raise ConfigError(f"<syntax at {where}>", "valid YAML", str(getattr(err, "problem", err)), str(p)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("<root>", "a mapping at the top level", type(data).__name__, str(p))
    return data


def load(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Load dataclass ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        source += " + --set"
    return build(cls, apply_overrides(data, overrides), source=source)


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (for writing the resolved `config.yaml` of a run)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field, recursively: the source of `relief config keys`."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))  # type: ignore[arg-type]
            continue
        default = f.default if f.default is not _MISSING else f.default_factory()  # type: ignore[operator]
        rows.append((key, repr(to_dict(default)), f.metadata.get("help", "")))  # to_dict: lists of sections
    return rows
