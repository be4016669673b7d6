"""Turn plain nested dicts into typed dataclass trees, with errors a user can act on.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``Any``,
``Optional[X]`` / ``X | None``, ``list[X]``, ``tuple[X, ...]`` and fixed ``tuple[X, Y]``,
``dict[str, X]``, ``Literal[...]`` and nested dataclasses. An unknown key names the closest valid
key; a wrong type names the key, the expected and the given type. ``sources`` maps dotted keys
to the file that set them, so each error can name its file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

from vipseg.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _where(key: str, sources: Mapping[str, str]) -> str:
    """The source of ``key`` or of its nearest ancestor, as '<file>: ' (empty if unknown)."""
    probe = key
    while probe:
        if probe in sources:
            return f"{sources[probe]}: "
        probe = probe.rpartition(".")[0]
    return ""


def _fail(key: str, tp: Any, value: Any, sources: Mapping[str, str]) -> ConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigError(
        f"{_where(key, sources)}config key '{key}': expected {_type_name(tp)}, "
        f"got {type(value).__name__} ({shown})"
    )


def convert(tp: Any, value: Any, key: str, sources: Mapping[str, str]) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (dataclasses built)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, key, sources)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(key, tp, value, sources)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _fail(key, tp, value, sources)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(key, tp, value, sources)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(
                    f"{_where(key, sources)}config key '{key}': expected {len(args)} items, "
                    f"got {len(value)}"
                )
            return tuple(convert(a, v, f"{key}[{i}]", sources) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [convert(item, v, f"{key}[{i}]", sources) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(key, tp, value, sources)
        vt = args[1] if args else Any
        return {str(k): convert(vt, v, f"{key}.{k}", sources) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _fail(key, tp, value, sources)
        return from_dict(tp, value, prefix=key, sources=sources)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(key, tp, value, sources)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{_where(key, sources)}config key '{key}': expected a finite "
                                  f"number, got {value}")
            return float(value)
        raise _fail(key, tp, value, sources)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(key, tp, value, sources)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(key, tp, value, sources)
    raise TypeError(f"unsupported config field type {tp!r} at {key}")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "",
              sources: Mapping[str, str] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; missing keys take the dataclass defaults."""
    sources = sources or {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else (
                f"; valid keys: {', '.join(names)}")
            raise ConfigError(f"{_where(key, sources)}unknown config key '{key}'{hint}")
        kwargs[k] = convert(hints[k], v, key, sources)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as e:
            # validate() messages start with the dotted key at fault: name the file that set it.
            first = str(e).split(" ", 1)[0].rstrip(":,").split("[")[0]
            key = first if prefix and first.startswith(prefix) else prefix
            raise ConfigError(f"{_where(key, sources)}{e}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass tree → plain dict/list/scalars (tuples become lists), ready for YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
