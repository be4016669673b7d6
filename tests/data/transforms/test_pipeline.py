"""The training pipeline keeps the sample contract after any composition of its stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from dataclasses import replace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.data.transforms.checks import (CLASS_COLOURS, assert_sample_contract, full_masks,
                                          interior_pixels)
from tests.data.transforms.conftest import CLASSES
from vipseg.config.schema import AugmentConfig, CopyPasteConfig, GeometricConfig, PhotometricConfig
from vipseg.data.build import build_dataset
from vipseg.config import load_config
from vipseg.data.transforms.geometric import (GeometryParams, compose, flip_matrix, map_box,
                                              valid_box)
from vipseg.data.transforms.pipeline import AugmentParams, build_train_transform
from vipseg.data.transforms.window import source_window

stage_configs = st.builds(
    lambda scales, crop, shear, translate, flip, photometric, paste, occlusion, hand, min_box:
    AugmentConfig(
        scales=scales, hflip_prob=flip, crop_size=crop, min_box_size=min_box,
        photometric=PhotometricConfig(prob=0.5, channel_swap_prob=0.5) if photometric else None,
        geometric=GeometricConfig(shear, 0.7, translate, 0.7),
        copy_paste=CopyPasteConfig(enabled=paste, bank="objects", max_per_class={"human": 4, "ball": 4},
                                   occlusion_prob=occlusion, ball_at_hand_prob=hand)),
    scales=st.lists(st.tuples(st.integers(40, 260), st.integers(30, 200)).map(list), min_size=1, max_size=3),
    crop=st.one_of(st.none(), st.tuples(st.integers(16, 200), st.integers(16, 160)).map(list)),
    shear=st.floats(0, 25), translate=st.floats(0, 0.4), flip=st.sampled_from([0.0, 0.5, 1.0]),
    photometric=st.booleans(), paste=st.booleans(), occlusion=st.sampled_from([0.0, 1.0]),
    hand=st.sampled_from([0.0, 1.0]), min_box=st.sampled_from([0.0, 2.0, 6.0]),
)


# Seed 0 puts the crop wholly in the part moved off the canvas (an empty source window).
OFF_CANVAS = [AugmentConfig(scales=[[160, 120]], crop_size=[32, 32],
                            geometric=GeometricConfig(0.0, 0.0, 0.4, 1.0)),
              AugmentConfig(scales=[[160, 120]], crop_size=[64, 48],
                            geometric=GeometricConfig(89.0, 1.0, 0.0, 0.0))]


def assert_masks_on_content(target: dict, g: GeometryParams) -> None:
    """Mask pixels lie on image content: not in the padding, not in the borders filled after
    the translation, and they map back inside the source image."""
    masks = full_masks(target).any(0)
    vx0, vy0, vx1, vy1 = valid_box(g)
    outside = torch.ones_like(masks)
    outside[vy0:vy1, vx0:vx1] = False
    assert not (masks & outside).any()
    ys, xs = torch.nonzero(masks, as_tuple=True)
    src = np.linalg.inv(compose(g)) @ np.stack([xs.numpy() + 0.5, ys.numpy() + 0.5, np.ones(len(xs))])
    h, w = g.src_size
    assert (src[0] > -1).all() and (src[0] < w + 1).all() and (src[1] > -1).all() and (src[1] < h + 1).all()


def assert_labels_match_colours(image: torch.Tensor, target: dict) -> None:
    """Each mask's interior carries its own label's class colour (nearer than any other)."""
    for label, px in interior_pixels(image, target):
        dist = [(px - c).abs().max(1).values.median().item() for c in CLASS_COLOURS]
        assert int(np.argmin(dist)) == label and dist[label] <= 48, (label, dist)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(augment=stage_configs, seed=st.integers(0, 2**31 - 1))
@example(augment=OFF_CANVAS[0], seed=0)
@example(augment=OFF_CANVAS[1], seed=0)
def test_any_composition_keeps_the_contract(shapes, raws, augment, seed):
    transform = build_train_transform(augment, str(shapes), CLASSES)
    raw = raws[seed % len(raws)]
    params = transform.sample(raw, np.random.default_rng(seed))
    image, target = transform.apply(raw, params)
    assert_sample_contract(image, target, len(CLASSES), augment.min_box_size)
    if augment.crop_size is not None:
        assert tuple(image.shape[-2:]) == (augment.crop_size[1], augment.crop_size[0])
    else:
        assert tuple(image.shape[-2:]) == params.geometry.size
    assert target["image_id"] == raw["image_id"] and target["orig_size"] == raw["orig_size"]
    assert_masks_on_content(target, params.geometry)
    # Labels stay aligned: checked on the colours before the photometric step, which moves
    # nothing (same masks and labels with and without it).
    plain, plain_target = transform.apply(raw, replace(params, photometric=None))
    assert torch.equal(plain_target["labels"], target["labels"])
    assert torch.equal(plain_target["mask_boxes"], target["mask_boxes"])
    assert torch.equal(plain_target["mask_data"], target["mask_data"])
    assert_labels_match_colours(plain, plain_target)


@pytest.mark.parametrize("augment", OFF_CANVAS)
def test_crop_off_the_canvas_gives_a_filled_empty_sample(shapes, raws, augment):
    transform = build_train_transform(augment, str(shapes), CLASSES, mean=(10, 20, 30))
    params = transform.sample(raws[0], np.random.default_rng(0))
    m = compose(params.geometry)
    x0, y0, x1, y1 = source_window(m, params.geometry.out_size, params.geometry.src_size)
    assert x1 <= x0 or y1 <= y0  # the case under test: nothing of the source is read
    image, target = transform.apply(raws[0], params)
    assert tuple(image.shape) == (3, augment.crop_size[1], augment.crop_size[0])
    assert (image == torch.tensor([10, 20, 30], dtype=torch.uint8)[:, None, None]).all()
    assert len(target["labels"]) == 0 and target["mask_boxes"].shape == (0, 4)
    assert target["mask_data"].shape == (0,)


def test_extra_v2_transforms_run_on_the_final_sample(shapes, raws):
    aug = AugmentConfig(scales=[[200, 150]], crop_size=[96, 80], geometric=GeometricConfig(10, 1.0, 0.1, 1.0))
    plain = build_train_transform(aug, str(shapes), CLASSES)
    flipped = build_train_transform(aug, str(shapes), CLASSES, extra=[v2.RandomVerticalFlip(p=1.0)])
    torch.manual_seed(5)
    image0, target0 = plain(raws[2])
    torch.manual_seed(5)
    image1, target1 = flipped(raws[2])
    assert len(target0["labels"]) > 0
    assert torch.equal(image1, image0.flip(-2))
    assert torch.equal(full_masks(target1), full_masks(target0).flip(-2))
    assert isinstance(image1, tv_tensors.Image) and torch.equal(target1["labels"], target0["labels"])
    assert_sample_contract(image1, target1, len(CLASSES))

def test_identity_geometry_keeps_image_and_masks(raws):
    """Scale 1, no other stage: the sample is the raw sample itself."""
    raw = raws[0]
    h, w = raw["image"].shape[:2]
    transform = build_train_transform(AugmentConfig(scales=[[w, h]], hflip_prob=0.0, min_box_size=0))
    image, target = transform.apply(raw, AugmentParams(GeometryParams((h, w), (h, w))))
    assert torch.equal(image, torch.from_numpy(raw["image"]).permute(2, 0, 1))
    assert target["labels"].tolist() == raw["labels"].tolist()
    assert torch.equal(target["boxes"], torch.as_tensor(raw["boxes"]))


def test_flip_mirrors_image_and_masks(raws):
    raw = raws[1]
    h, w = raw["image"].shape[:2]
    transform = build_train_transform(AugmentConfig(scales=[[w, h]], min_box_size=0))
    plain, t0 = transform.apply(raw, AugmentParams(GeometryParams((h, w), (h, w))))
    flipped, t1 = transform.apply(raw, AugmentParams(GeometryParams((h, w), (h, w), flip=True)))
    assert torch.equal(flipped, plain.flip(-1)) and torch.equal(full_masks(t1), full_masks(t0).flip(-1))


def test_objects_keep_their_colour_after_all_stages(raws):
    """Image and masks stay aligned: mask interiors keep the painted shape colours."""
    aug = AugmentConfig(scales=[[320, 240], [200, 150]], crop_size=[128, 96], min_box_size=0,
                        geometric=GeometricConfig(15, 1.0, 0.2, 1.0))
    transform = build_train_transform(aug)
    for seed in range(6):
        raw = raws[seed % len(raws)]
        image, target = transform.apply(raw, transform.sample(raw, np.random.default_rng(seed)))
        for label, px in interior_pixels(image, target):
            assert (px - CLASS_COLOURS[label]).abs().max(1).values.median() <= 12


def test_empty_crop_is_redrawn_when_not_allowed(raws):
    def hit_rate(allow: bool) -> float:
        aug = AugmentConfig(scales=[[1600, 1200]], crop_size=[200, 200], allow_empty_crop=allow)
        transform = build_train_transform(aug)
        hits = []
        for seed, raw in enumerate(raws * 5):
            g = transform.sample(raw, np.random.default_rng(seed)).geometry
            boxes = [map_box(compose(g), tuple(b)) for b in raw["boxes"]]
            hits.append(any(b[0] < 200 and b[2] > 0 and b[1] < 200 and b[3] > 0 for b in boxes))
        return float(np.mean(hits))

    allowed, redrawn = hit_rate(True), hit_rate(False)
    assert redrawn >= 0.9 and redrawn > allowed


def test_source_window_covers_what_the_output_reads():
    g = GeometryParams((100, 200), (150, 300), shear=(10.0, -5.0), translate=(7, -3), flip=True,
                       crop=(40, 20, 64, 48))
    m = compose(g)
    x0, y0, x1, y1 = source_window(m, g.out_size, g.src_size, margin=0)
    inv = np.linalg.inv(m)
    ys, xs = np.mgrid[0:48, 0:64] + 0.5
    src = inv @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    inside = (src[0] >= 0) & (src[0] < 200) & (src[1] >= 0) & (src[1] < 100)
    assert (src[0][inside] >= x0).all() and (src[0][inside] <= x1).all()
    assert (src[1][inside] >= y0).all() and (src[1][inside] <= y1).all()
    assert np.allclose(flip_matrix(10) @ flip_matrix(10), np.eye(3))


def test_build_dataset_uses_the_pipeline(shapes, repo):
    cfg = load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml",
                      ["augment.crop_size=[96,80]", "augment.copy_paste.enabled=true",
                       "augment.copy_paste.bank=objects", f"dataset.root={shapes}"])
    ds = build_dataset(cfg, "train", train=True)
    torch.manual_seed(0)
    image, target = ds[0]
    assert image.shape == (3, 80, 96)
    assert_sample_contract(image, target, len(CLASSES), cfg.augment.min_box_size)
