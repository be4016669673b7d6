"""The fast pipeline matches the straightforward resize-everything-then-crop reference."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.data_pipeline_reference import reference_apply
from tests.data.transforms.checks import assert_sample_contract, full_masks, mask_iou
from tests.data.transforms.conftest import CLASSES
from vipseg.config.schema import AugmentConfig, CopyPasteConfig, GeometricConfig, PhotometricConfig
from vipseg.data.transforms.pipeline import build_train_transform


def _augment(shear: float) -> AugmentConfig:
    return AugmentConfig(
        scales=[[320, 240], [200, 150], [120, 90]], crop_size=[128, 96], min_box_size=2,
        photometric=PhotometricConfig(), geometric=GeometricConfig(shear, 0.7, 0.15, 0.7),
        copy_paste=CopyPasteConfig(enabled=True, bank="objects", max_per_class={"human": 4, "ball": 4},
                                   occlusion_prob=0.5, ball_at_hand_prob=0.5))


def _match(fast: dict, ref: dict) -> list[tuple[int, int]]:
    """Pairs (i, j) of same-label instances with the best mask IoU; unpaired ones must be
    slivers (an instance at a size threshold may be kept by one and dropped by the other)."""
    pairs, used = [], set()
    fast_masks, ref_masks = full_masks(fast), full_masks(ref)
    for i, (a, la) in enumerate(zip(fast_masks, fast["labels"])):
        scores = [(mask_iou(a, b), j) for j, (b, lb) in enumerate(zip(ref_masks, ref["labels"]))
                  if lb == la and j not in used]
        best = max(scores, default=(0.0, -1))
        if best[0] > 0.3:
            pairs.append((i, best[1]))
            used.add(best[1])
    paired_fast = {i for i, _ in pairs}
    for k, m in enumerate(fast_masks):
        assert k in paired_fast or m.sum() <= 24
    for k, m in enumerate(ref_masks):
        assert k in used or m.sum() <= 24
    return pairs


def _compare(shapes, raws, shear: float, seeds: range, min_iou: float, mean_iou: float):
    transform = build_train_transform(_augment(shear), str(shapes), CLASSES)
    ious, shifts, image_diffs = [], [], []
    for seed in seeds:
        raw = raws[seed % len(raws)]
        params = transform.sample(raw, np.random.default_rng(seed))
        fast_img, fast = transform.apply(raw, params)
        ref_img, ref = reference_apply(transform, raw, params)
        assert_sample_contract(ref_img, ref, len(CLASSES), 2)
        assert fast_img.shape == ref_img.shape
        image_diffs.append((fast_img.float() - ref_img.float()).abs().mean().item())
        fast_masks, ref_masks = full_masks(fast), full_masks(ref)
        for i, j in _match(fast, ref):
            a, b = fast_masks[i], ref_masks[j]
            if b.sum() >= 64:
                ious.append(mask_iou(a, b))
                assert (fast["boxes"][i] - ref["boxes"][j]).abs().max() <= 2
            ya, xa = torch.nonzero(a, as_tuple=True)
            yb, xb = torch.nonzero(b, as_tuple=True)
            shifts.append([(xa.float().mean() - xb.float().mean()).item(),
                           (ya.float().mean() - yb.float().mean()).item()])
    assert len(ious) > 20
    assert min(ious) > min_iou and np.mean(ious) > mean_iou
    assert np.abs(np.mean(shifts, 0)).max() < 0.2  # no systematic offset
    return np.mean(image_diffs)


# Why not IoU 1 here: the objects are small (64 px and up at 96x128) and both sides warp
# masks nearest-neighbour, the fast side once, the reference twice (resize, then the rest),
# so pixels on an object's outline can fall either way; IoU ~ 1 - outline / area. Measured
# on these seeds: min 0.90, mean 0.963 without shear; min 0.75, mean 0.944 with 15° shear.
# Copy-paste (with occlusion and ball-at-hand) is on in both.


def test_same_parameters_same_geometry_without_shear(shapes, raws):
    # one bilinear warp vs resize + shift: equal up to interpolation rounding
    assert _compare(shapes, raws, 0.0, range(12), min_iou=0.85, mean_iou=0.95) < 1.0


def test_same_parameters_same_geometry_with_shear(shapes, raws):
    # the reference resamples twice (resize, then shear): thin fragments differ more, and the
    # image (a noisy texture) is smoothed twice
    assert _compare(shapes, raws, 15.0, range(12, 24), min_iou=0.7, mean_iou=0.93) < 8.0


def test_recipe_on_real_full_resolution_masks(deepsport, repo):
    """The challenge recipe on real 2336x1752 DeepSport masks: contract kept, same as reference.

    Copy-paste is off: the shared data has annotations only, no object bank of real crops
    (copy-paste against the reference is covered by the tests above). The drawn geometry of
    seed 1 has no shear, and at this resolution the single warp and resize-then-crop give the
    same pixels: IoU 1.0 measured for every instance, so the bound is tight.
    """
    from vipseg.config import load_config
    from vipseg.data.coco import load_coco

    coco = load_coco(deepsport / "train.json")
    image = next(im for im in coco.images if (im["width"], im["height"]) == (2336, 1752)
                 and len(coco.anns_by_image[im["id"]]) >= 5)
    anns = coco.anns_by_image[image["id"]]
    rles = [coco.rle(a) for a in anns]
    raw = {"image": np.full((1752, 2336, 3), 90, np.uint8), "rles": rles,
           "boxes": np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32),
           "labels": np.zeros(len(anns), np.int64), "image_id": image["id"], "orig_size": (1752, 2336)}
    cfg = load_config(repo / "configs/_base_/augment/vipriors_recipe.yaml",
                      ["augment.copy_paste.enabled=false", "augment.allow_empty_crop=false",
                       "augment.scales=[[2272,1712]]"])  # one scale: keeps the reference quick
    transform = build_train_transform(cfg.augment)
    params = transform.sample(raw, np.random.default_rng(1))
    fast_img, fast = transform.apply(raw, params)
    ref_img, ref = reference_apply(transform, raw, params)
    assert fast_img.shape == ref_img.shape == (3, 1280, 1760)
    assert_sample_contract(fast_img, fast, len(CLASSES), cfg.augment.min_box_size)
    assert len(fast["labels"]) > 0
    fast_masks, ref_masks = full_masks(fast), full_masks(ref)
    ious = [mask_iou(fast_masks[i], ref_masks[j]) for i, j in _match(fast, ref)]
    assert len(ious) == len(fast["labels"]) and min(ious) > 0.99
