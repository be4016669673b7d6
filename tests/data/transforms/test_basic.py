"""Conversions between a target's full and packed mask forms."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from vipseg.data.transforms.basic import full_masks_target, packed_target


def test_full_and_packed_targets_round_trip():
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 1:4, 2:6] = True
    masks[1, 5:10, 0:3] = True
    target = {"labels": torch.tensor([0, 1]), "masks": tv_tensors.Mask(masks), "image_id": 7}
    packed = packed_target(target)
    assert "masks" not in packed and packed["mask_boxes"].tolist() == [[1, 0, 7, 5], [0, 4, 4, 10]]
    assert packed["image_id"] == 7 and packed_target(packed) is packed
    full = full_masks_target(packed, (10, 12))
    assert isinstance(full["masks"], tv_tensors.Mask) and torch.equal(full["masks"], masks)
    assert "mask_data" not in full and full_masks_target(full, (10, 12)) is full
