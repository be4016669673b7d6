"""Every numeric config key is range-checked: one-line errors naming the key and the file."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from vipseg.config import Config, load_config
from vipseg.config.ranges import CHECKED_BY_SECTION, RANGES, numeric_leaves
from vipseg.errors import ConfigError


def numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of every field whose type holds a number (int / float, in lists, mappings
    or Optional), found from the schema's type hints (not from default values)."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        inner = _unwrap(tp)
        if dataclasses.is_dataclass(inner):
            keys += numeric_keys(inner, key)
        elif _holds_number(tp):
            keys.append(key)
    return keys


def _unwrap(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) \
        and len(args) == 1 else tp


def _holds_number(tp) -> bool:
    if tp in (int, float):
        return True
    if typing.get_origin(tp) is typing.Literal:
        return False
    return any(_holds_number(a) for a in typing.get_args(tp))


def test_every_numeric_key_has_a_range():
    keys = numeric_keys(Config)
    unchecked = [k for k in keys if k not in RANGES and not k.startswith(CHECKED_BY_SECTION)]
    assert not unchecked, f"add these keys to vipseg/config/ranges.py RANGES: {unchecked}"
    assert not [k for k in RANGES if k not in keys], "RANGES names keys the schema lacks"


def test_the_defaults_and_the_shipped_configs_are_in_range(repo):
    for key, shown, value in numeric_leaves(Config()):
        r = RANGES.get(key)
        assert r is None or r.holds(value), (shown, value)
    for path in sorted((repo / "configs/exp").rglob("*.yaml")):
        load_config(path)


def _bad_value(key: str) -> str:
    """A YAML value shaped like the key's default (lists and mappings kept) whose every
    number is just outside the key's range."""
    r = RANGES[key]
    v = (r.low - 1) if r.low is not None else (r.high + 1)
    if r.low is not None and r.low_open:
        v = r.low
    scalar = str(int(v)) if float(v).is_integer() else str(v)

    def shaped(value) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(shaped(x) for x in value) + "]" if value else f"[{scalar}]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {shaped(x)}" for k, x in value.items()) + "}" \
                if value else f"{{human: {scalar}}}"
        return scalar

    return shaped(_default_of(key))


GATED = ("mask_iou", "semantic")


def _default_of(key: str):
    """The default of ``key``; an optional section that defaults to None is taken at its own
    defaults (``model.backbone.composite`` -> ``CompositeConfig()``)."""
    obj = Config()
    for part in key.split("."):
        parent, obj = obj, getattr(obj, part)
        if obj is None:
            hint = typing.get_type_hints(type(parent))[part]
            section = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
            if not section:  # an optional number (train.clip_grad): a scalar
                return None
            obj = section[0]()
    return obj


@pytest.mark.parametrize("key", sorted(RANGES))
def test_out_of_range_value_names_the_key_and_the_file(tmp_path, key):
    cfg = tmp_path / "c.yaml"
    *parents, leaf = key.split(".")
    tree: dict = {}
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = yaml.safe_load(_bad_value(key))
    # keys that act only where their section is on (mask-IoU, the semantic branch) or in a
    # cascade (stages): switch those on, so that the range is what is checked
    if parents[-1] in GATED:
        node["enabled"] = True
    if parents[:2] in (["model", "cascade"], ["model", "semantic"]):
        tree["model"]["family"] = "htc"
    cfg.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    msg = str(err.value)
    # the range table's message (one line): the file, the key (item), the range, the value
    assert msg.startswith(f"{cfg}: {key}") and "\n" not in msg
    assert f" must be {RANGES[key].describe()}, got " in msg


@pytest.mark.parametrize("key", sorted(k for k in RANGES
                                       if not k.startswith(("optimizer.", "schedule."))))
def test_sections_built_in_code_check_the_same_ranges(key):
    """A section's ``validate()`` (what ``build_model`` and the trainer's callers run on a
    config built in code, without the loader) applies the same range table. The optimizer and
    schedule sections have no cross-field rules and no ``validate()``: the loader checks them."""
    cfg = Config()
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        child = getattr(node, p)
        if child is None:  # an optional section (composite, cascade, seesaw, one_ball)
            hint = typing.get_type_hints(type(node))[p]
            child = next(a for a in typing.get_args(hint) if dataclasses.is_dataclass(a))()
            setattr(node, p, child)
        node = child
    setattr(node, leaf, yaml.safe_load(_bad_value(key)))
    if parents[-1] in GATED:
        node.enabled = True
    if parents[:2] in (["model", "cascade"], ["model", "semantic"]):
        cfg.model.family = "htc"
    with pytest.raises(ConfigError) as err:
        getattr(cfg, parents[0]).validate()
    assert str(err.value).startswith(key)
    assert f" must be {RANGES[key].describe()}, got " in str(err.value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_refused_for_every_float(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"optimizer:\n  lr: {value}\n")
    with pytest.raises(ConfigError, match=f"{cfg}: config key 'optimizer.lr': expected a finite"):
        load_config(cfg)


def test_repeated_yaml_key_and_missing_sections_are_one_line_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="invalid YAML at line 3: the key 'train' is repeated"):
        load_config(cfg)
    cfg.write_text("")
    with pytest.raises(ConfigError, match="no 'model' and 'dataset' sections"):
        load_config(cfg, require=("model", "dataset"))
    load_config(cfg)  # a library caller may still start from the defaults
