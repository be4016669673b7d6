"""The packed box-local mask format: margins, crops of regions, round trips, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vipseg.utils.packed_masks import (crop_region, margin_box, pack_crops, pack_masks,
                                       unpack_crops, unpack_masks)


def test_margin_box_clips_to_the_image():
    assert margin_box((3, 4, 10, 12), (20, 30)) == (2, 3, 11, 13)
    assert margin_box((0, 0, 30, 20), (20, 30)) == (0, 0, 30, 20)


def test_crop_region_zero_fills_outside_the_region():
    region = np.ones((2, 3), bool)  # at (5, 7): columns 5..7, rows 7..8
    crop = crop_region(5, 7, region, (4, 6, 9, 10))
    expected = np.zeros((4, 5), np.uint8)
    expected[1:3, 1:4] = 1
    assert crop.dtype == np.uint8 and np.array_equal(crop, expected)


def test_pack_crops_and_masks_agree():
    masks = torch.zeros(3, 12, 16, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 0:12, 14:16] = True  # touches the top, bottom and right borders
    data, boxes = pack_masks(masks)
    assert boxes.tolist() == [[2, 1, 10, 6], [13, 0, 16, 12], [0, 0, 0, 0]]
    assert data.numel() == 8 * 5 + 3 * 12
    crops = [c.numpy() for c in unpack_crops(data, boxes)]
    data2, boxes2 = pack_crops(boxes.tolist(), crops)
    assert torch.equal(data, data2) and torch.equal(boxes, boxes2)
    assert torch.equal(unpack_masks(data, boxes, (12, 16)), masks)
    empty_data, empty_boxes = pack_crops([], [])
    assert empty_data.shape == (0,) and empty_boxes.shape == (0, 4)


def test_unpack_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="mask_data has 3 pixels"):
        unpack_crops(torch.zeros(3, dtype=torch.uint8), torch.tensor([[0, 0, 2, 2]]))


def test_pack_masks_takes_uint8_like_bool():
    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True  # the second mask is empty
    data, boxes = pack_masks(masks)
    data8, boxes8 = pack_masks(masks.to(torch.uint8))
    assert torch.equal(data, data8) and torch.equal(boxes, boxes8)
    assert boxes8[1].tolist() == [0, 0, 0, 0]
