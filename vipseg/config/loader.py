"""Load YAML configs with ``_base_`` inheritance and ``key.sub=value`` overrides.

A config file may start with ``_base_: [a.yaml, b.yaml]`` (paths relative to that file). Bases
are deep-merged in order, then the file's own keys on top (mappings merge, everything else
replaces). Command-line overrides come last; their values are parsed as YAML scalars or lists
(``train.epochs=3``, ``dataset.classes=[human,ball]``). Only ``yaml.safe_load`` is used: no code
runs from a config.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from vipseg.config.ranges import check_ranges
from vipseg.config.schema import Config
from vipseg.config.typed import from_dict, to_dict
from vipseg.errors import ConfigError

BASE_KEY = "_base_"
#: sections a config given to train / test / predict / browse must set (in the file, its
#: bases or an override), so that an empty file never silently means the large defaults.
REQUIRED_SECTIONS = ("model", "dataset")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping repeating a key (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is repeated", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` that also refuses repeated mapping keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = safe_load_unique(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def _merge(dst: dict, src: dict, sources: dict[str, str], origin: str, prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` in place, recording ``origin`` for every key it sets."""
    for k, v in src.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            sources.setdefault(key, origin)
            _merge(dst[k], v, sources, origin, key)
        else:
            dst[k] = copy.deepcopy(v)
            for stale in [s for s in sources if s == key or s.startswith(key + ".")]:
                del sources[stale]
            sources[key] = origin
            if isinstance(v, dict):
                _record(v, sources, origin, key)


def _record(d: dict, sources: dict[str, str], origin: str, prefix: str) -> None:
    for k, v in d.items():
        key = f"{prefix}.{k}"
        sources[key] = origin
        if isinstance(v, dict):
            _record(v, sources, origin, key)


def load_raw(path: str | Path, sources: dict[str, str] | None = None,
             _chain: tuple[Path, ...] = ()) -> dict:
    """Read ``path`` and its ``_base_`` files into one merged dict (not yet validated)."""
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"{path}: _base_ files form a cycle: {cycle}")
    sources = {} if sources is None else sources
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '{BASE_KEY}' must be a list of file paths")
    merged: dict = {}
    for base in bases:
        _merge(merged, load_raw(path.parent / base, sources, (*_chain, path)), {}, "")
    _merge(merged, data, sources, str(path))  # keys of this file win over its bases
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'a.b=1'`` → (['a', 'b'], 1); the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"command line: override '{item}' must look like key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(raw: dict, overrides: Iterable[str], sources: dict[str, str]) -> dict:
    """Set each ``key.sub=value`` override in ``raw`` (in place) and return it."""
    for item in overrides:
        parts, value = parse_override(item)
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        _merge(raw, nested, sources, "command line")
    return raw


def load_config(path: str | Path, overrides: Iterable[str] = (),
                require: Sequence[str] = ()) -> Config:
    """Load, merge and validate a config file into a typed ``Config``; every section named in
    ``require`` (e.g. :data:`REQUIRED_SECTIONS`) must be set by the file, a base or an override.
    """
    sources: dict[str, str] = {}
    raw = load_raw(path, sources)
    apply_overrides(raw, overrides, sources)
    missing = [k for k in require if not raw.get(k)]
    if missing:
        names = " and ".join(f"'{k}'" for k in missing)
        raise ConfigError(f"{path}: no {names} section{'s' if len(missing) > 1 else ''} (in "
                          "the file, its _base_ files or the overrides); a config must choose "
                          f"its {' and '.join(require)} instead of silently using the defaults")
    cfg = from_dict(Config, raw, sources=sources)
    check_ranges(cfg, sources)
    return cfg


def config_from_yaml_text(text: str, origin: str = "<config>") -> Config:
    """Validate a config saved as YAML text (e.g. inside a checkpoint); no ``_base_`` allowed."""
    try:
        data = safe_load_unique(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict) or BASE_KEY in data:
        raise ConfigError(f"{origin}: expected a fully merged config mapping")
    sources = {k: origin for k in data}
    cfg = from_dict(Config, data, sources=sources)
    check_ranges(cfg, sources)
    return cfg


def dump_config(cfg: Config) -> str:
    """The fully merged config as YAML text; loading it back reproduces ``cfg``."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
