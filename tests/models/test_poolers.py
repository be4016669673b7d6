"""PyramidRoIAlign: with ``aligned=False`` it is torchvision's ``MultiScaleRoIAlign`` bit for bit
(level assignment, inferred strides, one and several levels); with ``aligned=True`` it samples
as ``roi_align(..., aligned=True)`` on each box's level (detectron2's ROIAlignV2)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from vipseg.models.poolers import PyramidRoIAlign

SIZES = [(120, 160), (96, 128)]  # two images (H, W); the padded batch is 128 x 160


def pyramid(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((name, torch.randn(2, 8, 128 // s, 160 // s, generator=g))
                       for name, s in (("p2", 4), ("p3", 8), ("p4", 16), ("p5", 32)))


def boxes(seed: int = 0) -> list[torch.Tensor]:
    """Small to image-sized boxes, so every level gets some."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in SIZES:
        xy = torch.rand(30, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 2 + torch.rand(30, 2, generator=g) ** 2 * torch.tensor([w * 0.4, h * 0.4])
        out.append(torch.cat([xy, xy + wh], 1))
    return out


# canonical scale 32 (torchvision's default: 224) spreads these small images' boxes over levels
@pytest.mark.parametrize("levels", [["p2"], ["p2", "p3", "p4", "p5"], ["p3", "p4"]])
@pytest.mark.parametrize("size", [7, 14])
@pytest.mark.parametrize("canonical", [224, 32])
def test_unaligned_equals_torchvision(levels, size, canonical):
    maps, rois = pyramid(), boxes()
    ours = PyramidRoIAlign(levels, size, 2, aligned=False, canonical_scale=canonical)(
        maps, rois, SIZES)
    theirs = MultiScaleRoIAlign(levels, size, sampling_ratio=2, canonical_scale=canonical)(
        maps, rois, SIZES)
    assert ours.shape == (60, 8, size, size)
    assert torch.equal(ours, theirs)


def test_aligned_samples_each_level_with_the_half_pixel_offset():
    maps, rois = pyramid(1), boxes(1)
    pool = PyramidRoIAlign(["p2", "p3", "p4", "p5"], 7, 2, aligned=True, canonical_scale=32)
    got = pool(maps, rois, SIZES)
    flat = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1)
                      for i, b in enumerate(rois)])
    levels = pool._levels(flat[:, 1:])
    assert len(torch.unique(levels)) >= 3  # the boxes reach several levels
    for k, (name, scale) in enumerate(zip(["p2", "p3", "p4", "p5"], pool.scales)):
        idx = torch.where(levels == k)[0]
        expected = roi_align(maps[name], flat[idx], 7, scale, 2, aligned=True)
        assert torch.equal(got[idx], expected)
    unaligned = PyramidRoIAlign(["p2", "p3", "p4", "p5"], 7, 2, aligned=False,
                                canonical_scale=32)(maps, rois, SIZES)
    assert (got - unaligned).abs().max() > 0.1
    assert pool.scales == [0.25, 0.125, 0.0625, 0.03125]


def test_a_map_of_no_power_of_two_stride_is_refused():
    maps = OrderedDict(p2=torch.randn(2, 8, 32, 80))  # stride 4 down, 2 across
    with pytest.raises(ValueError, match="power-of-two stride"):
        PyramidRoIAlign(["p2"], 7, 2)(maps, boxes(), SIZES)
