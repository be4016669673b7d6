"""``augment`` keys are validated when the config is loaded: one-line errors naming the key."""

from __future__ import annotations

import pytest

from vipseg.config import load_config
from vipseg.data.build import build_dataset
from vipseg.errors import ConfigError


CLI = "command line: "
# Keys of augment itself get the source of the `augment` section (vipseg/config/typed.py
# prefixes validate() errors with the source of the section, not of the key).
SECTION = ""


@pytest.mark.parametrize("override, source, message", [
    ('augment.photometric={"contrast_range": [0.5]}', CLI, "augment.photometric.contrast_range must be [low, high]"),
    ("augment.photometric.prob=1.5", CLI, "augment.photometric.prob must be in [0, 1], got 1.5"),
    ("augment.geometric.shear_prob=-1", CLI, "augment.geometric.shear_prob must be in [0, 1], got -1"),
    ("augment.geometric.shear_max_degrees=90", CLI, "augment.geometric.shear_max_degrees must be in [0, 90)"),
    ("augment.copy_paste.scale_jitter=[-2,-1]", CLI,
     "augment.copy_paste.scale_jitter must be [low, high] with 0 < low <= high"),
    ("augment.copy_paste.scale_jitter=[1.2,0.8]", CLI, "augment.copy_paste.scale_jitter must be [low, high]"),
    ("augment.copy_paste.occlusion_prob=2", CLI, "augment.copy_paste.occlusion_prob must be in [0, 1], got 2"),
    ("augment.hflip_prob=3", SECTION, "augment.hflip_prob must be in [0, 1], got 3"),
    ("augment.fill=[1,2]", SECTION, "augment.fill must be 3 values"),
    ("augment.fill=[1,2,300]", SECTION, "augment.fill must be 3 values"),
    ("augment.crop_size=[32,0]", SECTION, "augment.crop_size must be [width, height]"),
    ("augment.crop_size=[32]", SECTION, "augment.crop_size must be [width, height]"),
    ("augment.scales=[[100,80,60]]", SECTION, "augment.scales must be a non-empty list of [long, short]"),
    ("augment.scales=[[100,-1]]", SECTION, "augment.scales must be a non-empty list of [long, short]"),
    ("augment.min_box_size=-1", SECTION, "augment.min_box_size must be >= 0"),
])
def test_bad_augment_keys_are_one_line_errors_naming_the_key(repo, override, source, message):
    with pytest.raises(ConfigError) as e:
        load_config(repo / "configs/exp/mask_rcnn/demo_cpu.yaml", [override])
    text = str(e.value)
    assert "\n" not in text and text.startswith(source) and message in text


def test_recipe_and_defaults_are_valid(repo):
    cfg = load_config(repo / "configs/exp/mask_rcnn/r50_fpn_gn_vipriors_recipe.yaml")
    assert cfg.augment.fill is None and cfg.augment.photometric is not None


def test_fill_follows_the_dataset_mean(repo, shapes):
    base = repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"
    mean = build_dataset(load_config(base, [f"dataset.root={shapes}", "dataset.mean=[10.4,20.6,30]"]),
                         "train", train=True)
    assert mean.transform.fill == (10, 21, 30)
    fixed = build_dataset(load_config(base, [f"dataset.root={shapes}", "dataset.mean=[10,20,30]",
                                             "augment.fill=[1,2,3]"]), "train", train=True)
    assert fixed.transform.fill == (1, 2, 3)
