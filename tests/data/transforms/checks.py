"""Assertions shared by the transform tests: the sample contract of docs/architecture.md."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from vipseg.utils.packed_masks import margin_box, unpack_crops, unpack_masks


def full_masks(target: dict, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The target's instance masks as bool [N, H, W] (unpacked from ``mask_boxes`` /
    ``mask_data``; ``size`` defaults to the boxes' canvas)."""
    if "masks" in target:
        return target["masks"].as_subclass(torch.Tensor)
    size = size or tuple(target["boxes"].canvas_size)
    return unpack_masks(target["mask_data"], target["mask_boxes"], size)


def assert_sample_contract(image, target, num_classes: int, min_box_size: float = 0.0) -> None:
    """uint8 Image [3, H, W]; packed masks (no full ``masks``): ``mask_boxes`` int64 [N, 4]
    each the tight box of its crop's pixels widened by one pixel and clipped to the image,
    ``mask_data`` uint8 0/1 of exactly their areas; no empty instance; boxes = the masks'
    tight pixel-edge boxes, within the canvas; labels in range; no box side below
    ``min_box_size``."""
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.ndim == 3
    h, w = image.shape[-2:]
    boxes, labels = target["boxes"], target["labels"]
    n = len(labels)
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.shape == (n, 4)
    assert tuple(boxes.canvas_size) == (h, w) and boxes.dtype == torch.float32
    assert "masks" not in target
    mask_boxes, mask_data = target["mask_boxes"], target["mask_data"]
    assert type(mask_boxes) is torch.Tensor and type(mask_data) is torch.Tensor
    assert mask_boxes.dtype == torch.int64 and mask_boxes.shape == (n, 4)
    assert mask_data.dtype == torch.uint8 and mask_data.ndim == 1 and (mask_data <= 1).all()
    assert labels.dtype == torch.int64 and (n == 0 or (labels.min() >= 0 and labels.max() < num_classes))
    for box, crop, (x0, y0, x1, y1) in zip(boxes, unpack_crops(mask_data, mask_boxes),
                                           mask_boxes.tolist()):
        ys, xs = torch.nonzero(crop, as_tuple=True)
        assert len(xs) > 0, "an empty instance survived"
        tight = torch.tensor([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
        assert (x0, y0, x1, y1) == margin_box(tight.tolist(), (h, w))
        assert (box - tight.float()).abs().max() <= 1.0, (box, tight)
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h
        assert box[2] - box[0] >= min_box_size and box[3] - box[1] >= min_box_size


# The shapes dataset (tests/helpers.py) paints every instance in its class's solid colour.
CLASS_COLOURS = torch.tensor([[200, 40, 40], [240, 150, 20]], dtype=torch.float32)


def interior_pixels(image: torch.Tensor, target: dict, min_pixels: int = 4):
    """(label, RGB float [K, 3]) for each instance: the image pixels of its mask whose 3×3
    neighbourhood is all inside the mask (away from edges and interpolation); instances with
    fewer than ``min_pixels`` such pixels are skipped."""
    for mask, label in zip(full_masks(target, tuple(image.shape[-2:])), target["labels"].tolist()):
        inner = torch.nn.functional.max_pool2d((~mask)[None].float(), 3, 1, 1)[0] == 0
        if inner.sum() >= min_pixels:
            yield label, image[:, inner].T.float()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two bool masks of the same shape."""
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union
