"""Assertions shared by the transform tests: the sample contract of docs/architecture.md."""

from __future__ import annotations

import torch
from torchvision import tv_tensors


def assert_sample_contract(image, target, num_classes: int, min_box_size: float = 0.0) -> None:
    """uint8 Image [3, H, W]; bool masks [N, H, W], none empty; boxes = their tight pixel-edge
    boxes, within the canvas; labels in range; no box side below ``min_box_size``."""
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.ndim == 3
    h, w = image.shape[-2:]
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    n = len(labels)
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.shape == (n, 4)
    assert tuple(boxes.canvas_size) == (h, w) and boxes.dtype == torch.float32
    assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.bool and masks.shape == (n, h, w)
    assert labels.dtype == torch.int64 and (n == 0 or (labels.min() >= 0 and labels.max() < num_classes))
    for box, mask in zip(boxes, masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert len(xs) > 0, "an empty instance survived"
        tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert (box - tight).abs().max() <= 1.0, (box, tight)
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h
        assert box[2] - box[0] >= min_box_size and box[3] - box[1] >= min_box_size


# The shapes dataset (tests/helpers.py) paints every instance in its class's solid colour.
CLASS_COLOURS = torch.tensor([[200, 40, 40], [240, 150, 20]], dtype=torch.float32)


def interior_pixels(image: torch.Tensor, target: dict, min_pixels: int = 4):
    """(label, RGB float [K, 3]) for each instance: the image pixels of its mask whose 3×3
    neighbourhood is all inside the mask (away from edges and interpolation); instances with
    fewer than ``min_pixels`` such pixels are skipped."""
    for mask, label in zip(target["masks"], target["labels"].tolist()):
        inner = torch.nn.functional.max_pool2d((~mask)[None].float(), 3, 1, 1)[0] == 0
        if inner.sum() >= min_pixels:
            yield label, image[:, inner].T.float()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two bool masks of the same shape."""
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union
