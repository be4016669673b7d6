"""The reference recipe (configs/_base_/augment/autoid_recipe.yaml): every setting reaches the
drawn samples, and docs/augmentation.md's table names exactly the defaults that differ."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import yaml

from tests.data.transforms.conftest import CLASSES
from vipseg.config import load_config
from vipseg.config.schema import Config, PhotometricConfig
from vipseg.data.transforms.basic import fit_scale
from vipseg.data.transforms.copy_paste import image_side
from vipseg.data.transforms.geometric import GeometryParams
from vipseg.data.transforms.photometric import PhotometricParams
from vipseg.data.transforms.pipeline import AugmentParams, build_train_transform

RECIPE = "configs/_base_/augment/autoid_recipe.yaml"
SCALES = [(3680, 3080), (3200, 2400), (2680, 2080), (2000, 1400), (1920, 1440), (1800, 1200),
          (1600, 1024), (1333, 800), (1624, 1234), (2336, 1752), (2456, 2054)]


@pytest.fixture(scope="module")
def cfg(repo) -> Config:
    return load_config(repo / RECIPE)


@pytest.fixture(scope="module")
def transform(cfg, shapes):
    # the recipe's counts (20 humans, 40 balls) at a 1760x1280 crop make every sample ~100 MB
    # of full-size masks; a few objects show the same behaviour
    aug = replace(cfg.augment, copy_paste=replace(cfg.augment.copy_paste,
                                                  max_per_class={"human": 3, "ball": 3}))
    return build_train_transform(aug, str(shapes), CLASSES, cfg.dataset.mean)


def _draws(transform, raw, n: int, seed: int = 0) -> list[AugmentParams]:
    return [transform.sample(raw, np.random.default_rng(seed + k)) for k in range(n)]


def test_recipe_values_reach_the_transform(cfg, transform):
    assert [tuple(s) for s in cfg.augment.scales] == SCALES
    assert transform.geometry.crop_size == (1760, 1280)
    assert transform.min_box_size == 0.01 and not transform.allow_empty_crop
    assert transform.photometric_first and transform.photometric.channel_swap_prob == 0.5
    assert transform.fill == tuple(round(v) for v in cfg.dataset.mean)
    cp = transform.copy_paste
    hard = (cp.prob, cp.scale_jitter, cp.brightness_delta, cp.contrast_range)
    assert hard == (1.0, (1.0, 1.0), 0.0, (1.0, 1.0))
    assert cp.side_rule == "id_suffix" and cp.ball_in_next_human
    assert cfg.dataset.filter_empty and cfg.dataset.min_size == 32
    assert cfg.dataset.test_scale == [1760, 1280]


def test_drawn_samples_show_scales_shear_translate_and_colour(transform, raws):
    raw = raws[0]
    h, w = raw["image"].shape[:2]
    allowed = {(round(h * fit_scale(h, w, *s)), round(w * fit_scale(h, w, *s))) for s in SCALES}
    draws = _draws(transform, raw, 400)
    sizes = [d.geometry.size for d in draws]
    assert set(sizes) <= allowed and len(set(sizes)) == len(allowed)  # every scale drawn
    for axis in (0, 1):
        shear = np.array([d.geometry.shear[axis] for d in draws])
        assert 0.32 < (shear != 0).mean() < 0.48 and np.abs(shear).max() <= 10.0
        side = np.array([d.geometry.size[1 - axis] for d in draws])
        shift = np.array([d.geometry.translate[axis] for d in draws])
        assert 0.3 < (shift != 0).mean() < 0.48 and (np.abs(shift) <= 0.1 * side + 0.5).all()
    photo = [d.photometric for d in draws]
    swapped = np.mean([p.channel_order != (0, 1, 2) for p in photo])
    assert 0.35 < swapped < 0.55  # 0.5, minus the draws of the identity permutation (1/6)
    assert all(sorted(p.channel_order) == [0, 1, 2] for p in photo)
    brightness = np.array([p.brightness for p in photo])
    assert 0.42 < (brightness != 0).mean() < 0.58 and np.abs(brightness).max() <= 32
    contrast = np.array([p.contrast for p in photo])
    assert contrast.min() >= 0.5 and contrast.max() <= 1.5
    assert max(abs(p.hue) for p in photo) <= 18


def test_crop_size_and_hard_pastes_in_a_drawn_sample(transform, raws):
    raw = raws[1]
    bank = transform.copy_paste.bank
    for k, params in enumerate(_draws(transform, raw, 6, seed=50)):
        for p in params.pastes:  # hard paste: the bank's size and pixels, no colour change
            assert p.size == bank.crop_size(p.obj) and (p.brightness, p.contrast) == (0.0, 1.0)
        if k < 2:
            image, target = transform.apply(raw, params)
            assert image.shape == (3, 1280, 1760)
            assert tuple(target["boxes"].canvas_size) == (1280, 1760)
            assert (target["mask_boxes"][:, 2:] <= target["mask_boxes"].new_tensor([1760, 1280])).all()
            assert len(target["labels"]) > 0  # allow_empty_crop false: a crop with instances


def test_photometric_before_geometry_leaves_the_fill_undistorted(transform, raws):
    raw = raws[2]
    h, w = raw["image"].shape[:2]
    s = fit_scale(h, w, 1333, 800)
    size = (round(h * s), round(w * s))  # 800 x 1067, shifted 200 px right: fill on the left
    geometry = GeometryParams((h, w), size, translate=(200, 0), crop=(0, 0, size[1], size[0]),
                              pad_to=(1280, 1760))
    bright = PhotometricParams(brightness=30.0)
    images = {}
    for first in (True, False):
        transform.photometric_first = first
        try:
            images[first] = transform.apply(raw, AugmentParams(geometry, bright))[0].int()
        finally:
            transform.photometric_first = True
    plain = transform.apply(raw, AugmentParams(geometry, None))[0].int()
    fill = plain.new_tensor(transform.fill)[:, None, None]
    border = (slice(None), slice(0, size[0]), slice(0, 200))
    assert (plain[border] == fill).all()
    assert (images[True][border] == fill).all()  # first: the border is filled after the colour
    assert (images[False][border] == fill + 30).all()  # on the crop: the border is brightened too
    content = (slice(None), slice(0, size[0]), slice(200, size[1]))
    for first in (True, False):
        gain = (images[first][content] - plain[content]).float().mean()
        assert 25 < gain <= 30  # the image itself got +30 (less where it clipped at 255)


def test_side_rules():
    assert image_side("img_12_0", "a.png", "id_suffix") == 0
    assert image_side("img_12_1", "a.png", "id_suffix") == 1
    assert image_side(12, "a.png", "id_suffix") is None
    assert image_side(3, "KS-FR-BLOIS/24330/camcourt1_1513710529019_0.png", "camcourt") == 0
    assert image_side(3, "KS-FR-BLOIS/24330/camcourt2_1513714168447_0.png", "camcourt") == 1
    assert image_side("x_1", "camcourt2_1.png", "none") is None


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "max_per_class":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _value(obj: object, key: str) -> object:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _doc_rows(repo) -> dict[str, tuple[str, str]]:
    text = (repo / "docs/augmentation.md").read_text(encoding="utf-8")
    section = text.split("## The reference recipe", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z_.]+`", cells[1]):
            rows[cells[1].strip("`")] = (cells[2], cells[3])
    return rows


def _parse(cell: str) -> object:
    return yaml.safe_load(cell.split("`")[1]) if "`" in cell else cell


def test_doc_table_names_exactly_the_defaults_that_differ(repo, cfg):
    rows = _doc_rows(repo)
    recipe = _flat(yaml.safe_load((repo / RECIPE).read_text(encoding="utf-8")))
    assert set(recipe) <= set(rows), set(recipe) - set(rows)  # every setting is in the table
    defaults = Config()
    defaults.augment.photometric = PhotometricConfig()  # the section's own defaults when on
    documented_different = set()
    for key, (value_cell, default_cell) in rows.items():
        if key == "augment.photometric":  # the section switch: on in the recipe, null by default
            assert cfg.augment.photometric is not None and Config().augment.photometric is None
            continue
        value, default = _value(cfg, key), _value(defaults, key)
        assert _parse(value_cell) == value, key
        if default_cell == "`same`":
            assert value == default, f"{key}: the table says same, the default is {default!r}"
        else:
            assert _parse(default_cell) == default, key
            assert value != default, key
            documented_different.add(key)
    actually_different = {k for k in rows if k != "augment.photometric"
                          and _value(cfg, k) != _value(defaults, k)}
    assert documented_different == actually_different
