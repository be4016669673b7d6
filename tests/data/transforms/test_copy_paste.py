"""Copy-paste: exact occlusion, exact pasted masks, court placement and its fallbacks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.data.transforms.checks import assert_sample_contract, full_masks
from tests.data.transforms.conftest import CLASSES, write_bank
from vipseg.config.schema import AugmentConfig, CopyPasteConfig
from vipseg.data.masks import encode
from vipseg.data.transforms.copy_paste import CopyPaste, ObjectBank, Paste
from vipseg.data.transforms.court import estimate_court
from vipseg.data.transforms.geometric import GeometryParams
from vipseg.data.transforms.pipeline import AugmentParams, build_train_transform
from vipseg.errors import ConfigError, DataError

SIZE = 64


@pytest.fixture(scope="module")
def square_bank(tmp_path_factory):
    """Object 0: a 20x20 solid square (human); object 1: a 9x9 disc (ball)."""
    rng = np.random.default_rng(0)
    square = np.ones((20, 20), bool)
    disc = np.zeros((9, 9), np.uint8)
    cv2.circle(disc, (4, 4), 4, 1, -1)
    objects = [("human", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), square),
               ("ball", rng.integers(0, 255, (9, 9, 3), dtype=np.uint8), disc.astype(bool))]
    return write_bank(tmp_path_factory.mktemp("bank") / "objects", objects)


def _raw(masks: list[np.ndarray], labels: list[int]) -> dict:
    rles = [encode(m) for m in masks]
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return {"image": np.full((SIZE, SIZE, 3), 100, np.uint8), "boxes": np.array(boxes, np.float32),
            "labels": np.array(labels), "rles": rles, "image_id": 7, "orig_size": (SIZE, SIZE)}


def _transform(bank_root, **cp):
    cfg = CopyPasteConfig(enabled=True, bank=bank_root.name, scale_jitter=[1.0, 1.0],
                          brightness_delta=0.0, contrast_range=[1.0, 1.0], **cp)
    return build_train_transform(AugmentConfig(scales=[[SIZE, SIZE]], hflip_prob=0.0,
                                               min_box_size=0, copy_paste=cfg),
                                 str(bank_root.parent), CLASSES)


def _identity(pastes):
    return AugmentParams(GeometryParams((SIZE, SIZE), (SIZE, SIZE)), None, pastes)


def test_exact_occlusion(square_bank):
    small = np.zeros((SIZE, SIZE), np.uint8)
    small[10:14, 10:14] = 1  # fully under the square pasted at (5, 5)
    big = np.zeros((SIZE, SIZE), np.uint8)
    big[30:50, 30:44] = 1  # partly under the disc pasted at (38, 26)
    raw = _raw([small, big], [0, 0])
    transform = _transform(square_bank)
    pastes = [Paste(0, 0, 5, 5, (20, 20)), Paste(1, 1, 38, 26, (9, 9))]
    image, target = transform.apply(raw, _identity(pastes))
    assert_sample_contract(image, target, len(CLASSES))
    assert target["labels"].tolist() == [0, 0, 1]  # small dropped; big, square, disc kept
    square = np.zeros((SIZE, SIZE), bool)
    square[5:25, 5:25] = True
    disc = np.zeros((SIZE, SIZE), bool)
    disc[26:35, 38:47] = ObjectBank(square_bank, CLASSES).load(1)[1]
    expected_big = big.astype(bool) & ~disc
    assert 0 < (big.astype(bool) & disc).sum() < big.sum()  # partly covered
    masks = full_masks(target).numpy()
    assert np.array_equal(masks[0], expected_big)
    assert np.array_equal(masks[1], square)
    assert np.array_equal(masks[2], disc)
    # pasted pixels are the bank's pixels exactly, under exactly the pasted masks
    bank = ObjectBank(square_bank, CLASSES)
    hwc = image.permute(1, 2, 0).numpy()
    assert np.array_equal(hwc[5:25, 5:25], bank.load(0)[0])
    assert np.array_equal(hwc[26:35, 38:47][bank.load(1)[1]], bank.load(1)[0][bank.load(1)[1]])
    assert (hwc[~(square | disc)] == 100).all()


def test_later_paste_hides_earlier_paste_and_small_remainders_drop(square_bank):
    raw = _raw([np.pad(np.ones((2, 2), np.uint8), ((60, 2), (60, 2)))], [0])
    transform = _transform(square_bank, min_visible_fraction=0.5)
    # second square covers 18 of the first square's 20 columns: 10 % visible < 50 % → dropped
    pastes = [Paste(0, 0, 10, 10, (20, 20)), Paste(0, 0, 12, 10, (20, 20))]
    _, target = transform.apply(raw, _identity(pastes))
    assert target["labels"].tolist() == [0, 0] and full_masks(target)[1].sum() == 400
    # covering only 5 columns keeps it, with exactly the 15 visible columns
    pastes = [Paste(0, 0, 10, 10, (20, 20)), Paste(0, 0, 25, 10, (20, 20))]
    _, target = transform.apply(raw, _identity(pastes))
    assert full_masks(target)[1].sum() == 15 * 20 and full_masks(target)[1][10:30, 10:25].all()


def test_plan_counts_placement_occlusion_and_ball_at_hand(square_bank):
    bank = ObjectBank(square_bank, CLASSES)
    image = np.zeros((120, 160, 3), np.uint8)
    image[40:] = (180, 120, 60)  # floor in the lower two thirds
    cp = CopyPaste(bank, {0: 3, 1: 0}, occlusion_prob=1.0, ball_at_hand_prob=1.0, ball_label=1)
    for seed in range(10):
        pastes = cp.plan(image, np.random.default_rng(seed))
        humans = [p for p in pastes if p.label == 0]
        assert len(humans) <= 3 and len(pastes) == 2 * len(humans)  # one ball per player
        for a, b in zip(humans, humans[1:]):  # each player overlaps the previous one
            assert a.x < b.box[2] and b.x < a.box[2] and a.y < b.box[3] and b.y < a.box[3]
        if humans:  # the first player stands on the floor
            assert 40 <= humans[0].box[3] <= 121


def test_court_estimate_and_fallbacks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (300, 400, 3), dtype=np.uint8)
    image[120:] = (190, 140, 90)
    court = estimate_court(image)
    assert court.found
    pts = court.sample(rng, 200)
    assert (pts[:, 1] >= 110).mean() > 0.95
    for odd in (rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), np.zeros((2, 3, 3), np.uint8)):
        court = estimate_court(odd)
        pts = court.sample(rng, 50)
        assert (pts >= 0).all() and (pts[:, 0] < odd.shape[1]).all() and (pts[:, 1] < odd.shape[0]).all()


def test_copy_paste_never_fails_on_odd_images(shapes):
    aug = AugmentConfig(scales=[[64, 48]], copy_paste=CopyPasteConfig(
        enabled=True, bank="objects", max_per_class={"human": 5, "ball": 5},
        occlusion_prob=0.5, ball_at_hand_prob=0.5))
    transform = build_train_transform(aug, str(shapes), CLASSES)
    for shape in [(1, 1, 3), (3, 200, 3), (50, 50, 3)]:
        raw = {"image": np.zeros(shape, np.uint8), "boxes": np.zeros((0, 4), np.float32),
               "labels": np.zeros(0, np.int64), "rles": [], "image_id": 0, "orig_size": shape[:2]}
        torch.manual_seed(0)
        image, target = transform(raw)
        assert_sample_contract(image, target, len(CLASSES))


def test_bank_and_config_errors(tmp_path, shapes):
    with pytest.raises(DataError, match="index.json"):
        ObjectBank(tmp_path / "nowhere")
    aug = AugmentConfig(copy_paste=CopyPasteConfig(enabled=True, bank="objects",
                                                   max_per_class={"referee": 3}))
    with pytest.raises(ConfigError, match="referee"):
        build_train_transform(aug, str(shapes), CLASSES)
    with pytest.raises(ConfigError, match="bank"):
        build_train_transform(AugmentConfig(copy_paste=CopyPasteConfig(enabled=True)), str(shapes))
    with pytest.raises(ConfigError, match="augment.scales"):
        build_train_transform(AugmentConfig(scales=[]))
    with pytest.raises(ConfigError, match="augment.crop_size"):
        build_train_transform(AugmentConfig(crop_size=[100]))
