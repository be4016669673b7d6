"""Compact-mask targets equal their full-mask references (torchvision, mmdetection semantics)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import project_masks_on_boxes
from torchvision.ops import roi_align

from vipseg.models.mask_targets import area_ratios, mask_targets, pack_masks, semantic_target
from vipseg.utils.packed_masks import unpack_crops, unpack_masks


def random_masks(seed: int, n: int = 6, size: tuple[int, int] = (60, 80)) -> torch.Tensor:
    """Blobs, some touching the image borders, one empty."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = []
    for k in range(n):
        cy, cx = torch.randint(-5, h + 5, (2,), generator=g).tolist()
        ry, rx = torch.randint(3, 25, (2,), generator=g).tolist()
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks.append(blob & (torch.rand(h, w, generator=g) > 0.1))
    masks[2] = torch.zeros(h, w, dtype=torch.bool)
    masks[3][:10, :] = True  # touches three borders
    return torch.stack(masks)


def random_proposals(seed: int, n: int, size: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.8 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    return torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                        boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)


def test_pack_round_trip_and_margin():
    masks = random_masks(0)
    data, boxes = pack_masks(masks)
    assert data.dtype == torch.uint8 and boxes.dtype == torch.int64 and boxes.shape == (6, 4)
    assert torch.equal(unpack_masks(data, boxes, (60, 80)), masks)
    assert boxes[2].tolist() == [0, 0, 0, 0]
    for crop, (x0, y0, x1, y1) in zip(unpack_crops(data, boxes), boxes.tolist()):
        if crop.numel() == 0:
            continue
        # every crop edge is a zero line or the image border
        assert x0 == 0 or not crop[:, 0].any()
        assert y0 == 0 or not crop[0].any()
        assert x1 == 80 or not crop[:, -1].any()
        assert y1 == 60 or not crop[-1].any()
    assert boxes[3, 0] == 0 and boxes[3, 1] == 0 and boxes[3, 2] == 80


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("aligned", [True, False])
def test_mask_targets_from_crops_equal_full_image_targets(seed, aligned):
    """From the crops: aligned (the default) = aligned RoIAlign on the full masks; unaligned =
    torchvision's ``project_masks_on_boxes``; and the two conventions differ."""
    masks = random_masks(seed)
    proposals = random_proposals(seed, 40, (60, 80))
    gt_index = torch.randint(0, 6, (40,), generator=torch.Generator().manual_seed(seed))
    data, boxes = pack_masks(masks)
    packed = {"mask_data": data, "mask_boxes": boxes}
    got = mask_targets(packed, gt_index, proposals, 28, aligned=aligned)
    if aligned:
        assert torch.equal(got, mask_targets(packed, gt_index, proposals, 28))  # the default
    rois = torch.cat([gt_index[:, None].float(), proposals], 1)
    full_aligned = roi_align(masks[:, None].float(), rois, 28, 1.0, aligned=True)[:, 0]
    torchvision = project_masks_on_boxes(masks.to(torch.uint8), proposals, gt_index, 28)
    expected, other = (full_aligned, torchvision) if aligned else (torchvision, full_aligned)
    assert got.shape == (40, 28, 28)
    assert (got - expected).abs().max().item() < 1e-5
    assert expected.sum() > 10  # the comparison is not between two empty sets
    assert (got - other).abs().max().item() > 0.1


def test_mask_targets_empty():
    data, boxes = pack_masks(torch.zeros(0, 30, 40, dtype=torch.bool))
    packed = {"mask_data": data, "mask_boxes": boxes}
    assert data.shape == (0,) and boxes.shape == (0, 4)
    none = torch.zeros(0, 4)
    assert mask_targets(packed, torch.zeros(0, dtype=torch.long), none, 28).shape == (0, 28, 28)
    assert area_ratios(packed, torch.zeros(0, dtype=torch.long), none).shape == (0,)
    assert not semantic_target(packed, (30, 40), 8, torch.zeros(0, dtype=torch.long)).any()


def test_area_ratios_like_mmdetection():
    masks = random_masks(3)
    proposals = random_proposals(3, 30, (60, 80))
    proposals[0] = torch.tensor([10.7, 5.2, 10.9, 5.3])  # under one pixel: widened to 1x1
    gt_index = torch.arange(30) % 6
    data, boxes = pack_masks(masks)
    got = area_ratios({"mask_data": data, "mask_boxes": boxes}, gt_index, proposals)
    for k in range(30):  # mmdetection: crop the full mask by the truncated box, >= 1 pixel
        x0, y0, x1, y1 = proposals[k].int().tolist()
        m = masks[gt_index[k]]
        inside = m[y0:y0 + max(y1 - y0, 1), x0:x0 + max(x1 - x0, 1)].sum().item()
        assert got[k].item() == pytest.approx(inside / (m.sum().item() + 1e-7), abs=1e-6)
    assert ((got > 0) & (got < 1)).any()


def test_semantic_target_is_nearest_downsampling():
    masks = random_masks(4, size=(64, 80))
    labels = torch.tensor([1, 2, 1, 2, 1, 2])
    data, boxes = pack_masks(masks)
    got = semantic_target({"mask_data": data, "mask_boxes": boxes}, (64, 80), 8, labels)
    full = torch.zeros(64, 80, dtype=torch.int64)
    for m, label in zip(masks, labels):
        full[m] = label
    expected = F.interpolate(full[None, None].float(), scale_factor=1 / 8, mode="nearest")[0, 0].long()
    assert got.shape == (8, 10) and torch.equal(got, expected)
    assert set(got.unique().tolist()) == {0, 1, 2}
    # an image size not divisible by the stride rounds the map up
    odd = semantic_target({"mask_data": data, "mask_boxes": boxes, "labels": labels}, (63, 77), 8)
    assert odd.shape == (8, 10)


@pytest.mark.gpu
def test_mask_targets_on_cuda_equal_cpu():
    masks = random_masks(5)
    proposals = random_proposals(5, 20, (60, 80))
    gt_index = torch.arange(20) % 6
    data, boxes = pack_masks(masks.cuda())
    packed = {"mask_data": data, "mask_boxes": boxes, "labels": torch.ones(6, dtype=torch.long).cuda()}
    cpu = {"mask_data": data.cpu(), "mask_boxes": boxes.cpu()}
    got = mask_targets(packed, gt_index.cuda(), proposals.cuda(), 28)
    assert got.is_cuda
    assert torch.allclose(got.cpu(), mask_targets(cpu, gt_index, proposals, 28), atol=1e-5)
    assert torch.allclose(area_ratios(packed, gt_index.cuda(), proposals.cuda()).cpu(),
                          area_ratios(cpu, gt_index, proposals), atol=1e-6)
    assert semantic_target(packed, (60, 80), 8).is_cuda
