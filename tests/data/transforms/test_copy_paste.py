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
    image[40:90] = (180, 120, 60)  # the floor: rows 40..89 (dark above and below)
    cp = CopyPaste(bank, {0: 3, 1: 0}, occlusion_prob=1.0, ball_at_hand_prob=1.0, ball_label=1)
    firsts = 0
    for seed in range(10):
        pastes = cp.plan(image, np.random.default_rng(seed))
        humans = [p for p in pastes if p.label == 0]
        assert len(humans) <= 3 and len(pastes) == 2 * len(humans)  # one ball per player
        for a, b in zip(humans, humans[1:]):  # each player overlaps the previous one
            assert a.x < b.box[2] and b.x < a.box[2] and a.y < b.box[3] and b.y < a.box[3]
        for player, ball in zip(pastes[::2], pastes[1::2]):  # each ball at its player's hand
            assert (player.label, ball.label) == (0, 1)
            cx, cy = ball.x + ball.size[1] / 2, ball.y + ball.size[0] / 2
            # the square's mask spans all 20 columns: a hand is its left or right edge column
            sx = player.size[1] / 20
            edges = (player.x + 0.5 * sx, player.x + 19.5 * sx)
            assert min(abs(cx - e) for e in edges) <= 1.0
            assert abs(cy - (player.y + 0.45 * player.size[0])) <= 1.0
        if humans:  # the first player stands on the floor (its feet on a floor row)
            firsts += 1
            assert 40 <= humans[0].box[3] <= 91 and 0 <= humans[0].x + 10 <= 160
    assert firsts >= 5


def test_side_named_by_the_image_gets_the_pastes(square_bank):
    bank = ObjectBank(square_bank, CLASSES)
    image = np.full((120, 160, 3), 100, np.uint8)
    cp = CopyPaste(bank, {0: 6, 1: 6}, scale_jitter=(1.0, 1.0), court_aware=False, ball_label=1,
                   side_boxes=[(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)])
    seen = {0: 0, 1: 0}
    for seed in range(20):
        for side in (0, 1):
            for p in cp.plan(image, np.random.default_rng(seed), side):
                foot = p.label == 0  # players stand on the anchor, balls are centred on it
                x = p.x + p.size[1] / 2
                y = p.y + (p.size[0] if foot else p.size[0] / 2)
                assert (x <= 80.5) if side == 0 else (x >= 79.5), (side, p)
                assert 0 <= y <= 120.5
                seen[side] += 1
    assert min(seen.values()) > 50
    # through the pipeline: an image id ending in _1 puts every paste on the right half
    transform = _transform(square_bank, max_per_class={"human": 4, "ball": 0}, court_aware=False,
                           side_rule="id_suffix")
    raw = dict(_raw([np.pad(np.ones((2, 2), np.uint8), ((0, 62), (0, 62)))], [0]), image_id="a_1")
    for seed in range(10):
        params = transform.sample(raw, np.random.default_rng(seed))
        assert all(p.x + p.size[1] / 2 >= SIZE / 2 - 0.5 for p in params.pastes)
        _, target = transform.apply(raw, params)
        for mask in full_masks(target)[1:]:  # the pasted squares: centred in the right half
            cols = torch.nonzero(mask.any(0)).flatten().float()
            assert cols.mean() >= SIZE / 2 - 1


def test_side_and_floor_together(square_bank):
    bank = ObjectBank(square_bank, CLASSES)
    image = np.zeros((120, 160, 3), np.uint8)
    image[40:90] = (180, 120, 60)
    cp = CopyPaste(bank, {0: 5}, scale_jitter=(1.0, 1.0), court_aware=True)
    for seed in range(10):
        for p in cp.plan(image, np.random.default_rng(seed), side=1):
            assert p.x + 10 >= 79.5 and 40 <= p.box[3] <= 91  # right half, on the floor


class _Unshuffled:
    """A numpy Generator whose ``shuffle`` keeps the order (draws stay per class, balls first)."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def shuffle(self, x) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._rng, name)


def test_ball_inside_the_following_humans_box(square_bank):
    bank = ObjectBank(square_bank, CLASSES)
    image = np.full((120, 160, 3), 100, np.uint8)
    # balls first in the draw order: only the last ball is followed by a human
    cp = CopyPaste(bank, {1: 3, 0: 3}, court_aware=False, ball_label=1, ball_in_next_human=True)
    checked = 0
    for seed in range(30):
        pastes = cp.plan(image, _Unshuffled(seed))
        labels = [p.label for p in pastes]
        nb, nh = labels.count(1), labels.count(0)
        if nb == 0 or nh == 0:
            assert labels == sorted(labels, reverse=True)  # nothing to pair: draw order kept
            continue
        # the other balls were drawn, then the first human with the paired ball just after it
        assert labels == [1] * (nb - 1) + [0, 1] + [0] * (nh - 1)
        human, ball = pastes[nb - 1], pastes[nb]
        cx, cy = ball.x + ball.size[1] / 2, ball.y + ball.size[0] / 2
        assert human.x - 0.5 <= cx <= human.box[2] + 0.5
        assert human.y - 0.5 <= cy <= human.box[3] + 0.5
        checked += 1
    assert checked >= 10
    off = CopyPaste(bank, {1: 3, 0: 3}, court_aware=False, ball_label=1)
    kept = [[p.label for p in off.plan(image, _Unshuffled(seed))] for seed in range(30)]
    assert all(k == sorted(k, reverse=True) for k in kept)  # without the option: no pairing


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


@pytest.mark.parametrize("size", [(384, 288), (1624, 1234)])
def test_court_estimate_on_rendered_courts(size):
    """On `vipseg data demo` scenes (perspective floor, lines, lighting, boards, crowd, people)
    the sampled anchors lie on the floor and the region covers most of it."""
    from vipseg.data.tools.demo.court import COURT_LENGTH, COURT_WIDTH, MARGIN, random_camera
    from vipseg.data.tools.demo.scene import render_scene

    def on_floor(camera, pts: np.ndarray) -> np.ndarray:
        c = camera.to_court(pts)  # the floor is the court plus MARGIN, below the boards
        return ((c[:, 0] >= -MARGIN) & (c[:, 0] <= COURT_LENGTH + MARGIN) & (c[:, 1] >= -MARGIN)
                & (c[:, 1] <= COURT_WIDTH + MARGIN) & (pts[:, 1] >= camera.horizon))

    covers = []
    for seed in range(6 if size[0] < 1000 else 2):
        scene = render_scene(np.random.default_rng(seed), size)
        camera = random_camera(np.random.default_rng(seed), size)  # the scene's first draw
        court = estimate_court(scene.image)
        assert court.found
        pts = court.sample(np.random.default_rng(0), 400)
        assert on_floor(camera, pts).mean() > 0.97
        ys, xs = np.mgrid[0:size[1]:8, 0:size[0]:8]
        grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
        floor = on_floor(camera, grid)
        cell = (grid // court.stride).astype(int)
        cells = court.mask[cell[:, 1], cell[:, 0]]
        covers.append((cells & floor).sum() / floor.sum())
    assert min(covers) > 0.4 and np.mean(covers) > 0.7


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
