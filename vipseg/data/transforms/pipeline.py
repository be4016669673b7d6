"""Training augmentation pipeline built from ``cfg.augment`` (first version: scale + flip).

``build_train_transform`` returns a callable ``RawSample -> (image, target)`` producing the
sample contract of :mod:`vipseg.data.transforms.basic`; boxes are recomputed from masks.
"""

from __future__ import annotations

import random

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from vipseg.config.schema import AugmentConfig
from vipseg.data.transforms.basic import fit_scale, to_sample


class ScaleFlipTransform:
    """Resize to a random scale from ``scales`` ([long, short] each), then flip horizontally."""

    def __init__(self, scales: list[list[int]], hflip_prob: float, min_box_size: float) -> None:
        self.scales = [(max(s), min(s)) for s in scales]
        self.hflip_prob = hflip_prob
        self.min_box_size = min_box_size

    def __call__(self, raw: dict) -> tuple[tv_tensors.Image, dict]:
        image, target = to_sample(raw)
        h, w = image.shape[-2:]
        long_side, short_side = random.choice(self.scales)
        s = fit_scale(h, w, long_side, short_side)
        size = [max(1, round(h * s)), max(1, round(w * s))]
        image, target = v2.functional.resize(image, size, antialias=True), dict(target)
        target["masks"] = v2.functional.resize(target["masks"], size)
        if random.random() < self.hflip_prob:
            image = v2.functional.horizontal_flip(image)
            target["masks"] = v2.functional.horizontal_flip(target["masks"])
        masks = target["masks"]
        keep = masks.flatten(1).any(1)
        masks, labels = masks[keep], target["labels"][keep]
        boxes = masks_to_boxes(masks) if len(masks) else torch.zeros((0, 4))
        boxes[:, 2:] += 1  # masks_to_boxes gives inclusive max pixel; boxes are pixel edges
        big = ((boxes[:, 2:] - boxes[:, :2]) >= self.min_box_size).all(1)
        target["masks"] = tv_tensors.Mask(masks[big])
        target["labels"] = labels[big]
        target["boxes"] = tv_tensors.BoundingBoxes(boxes[big], format="XYXY", canvas_size=tuple(size))
        return image, target


def build_train_transform(augment: AugmentConfig, root: str = "") -> ScaleFlipTransform:
    """Map ``cfg.augment`` onto the training transform (``root``: dataset root for the bank)."""
    return ScaleFlipTransform(augment.scales, augment.hflip_prob, augment.min_box_size)
