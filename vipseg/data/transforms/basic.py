"""Raw sample → model input, and the evaluation-time resize.

A *sample* is ``(image, target)``: ``image`` is a uint8 ``tv_tensors.Image`` [3, H, W];
``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes`` XYXY float32 [N, 4], canvas (H, W)),
``labels`` int64 [N], ``masks`` (``tv_tensors.Mask`` bool [N, H, W]), ``image_id`` and
``orig_size`` (H, W) of the source image.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision import tv_tensors

from vipseg.data.masks import decode


def image_tensor(image: np.ndarray) -> tv_tensors.Image:
    """RGB uint8 array [H, W, 3] -> ``tv_tensors.Image`` [3, H, W] (contiguous copy)."""
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))


def to_sample(raw: dict) -> tuple[tv_tensors.Image, dict]:
    """Decode a raw sample's masks and wrap everything as tv_tensors (no resizing)."""
    img = raw["image"]
    h, w = img.shape[:2]
    masks = np.stack([decode(r) for r in raw["rles"]]) if raw["rles"] else np.zeros((0, h, w), np.uint8)
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(raw["boxes"], dtype=torch.float32).reshape(-1, 4),
                                          format="XYXY", canvas_size=(h, w)),
        "labels": torch.as_tensor(raw["labels"], dtype=torch.int64),
        "masks": tv_tensors.Mask(torch.from_numpy(masks.astype(bool))),
        "image_id": raw["image_id"],
        "orig_size": tuple(raw["orig_size"]),
    }
    return image_tensor(img), target


def fit_scale(height: int, width: int, long_side: int, short_side: int) -> float:
    """Scale factor that fits (height, width) inside long×short keeping the aspect ratio."""
    return min(long_side / max(height, width), short_side / min(height, width))


class TestTransform:
    """Resize the image to fit ``scale`` = (long, short); no masks are decoded.

    Returns ``(image, target)`` where target has ``image_id``, ``orig_size`` (H, W) and
    ``scale_factor`` (resized / original, per axis: (sy, sx)); predictions on the resized
    image map back by dividing coordinates by it.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, scale: tuple[int, int] | list[int]) -> None:
        self.long, self.short = int(max(scale)), int(min(scale))

    def __call__(self, raw: dict) -> tuple[tv_tensors.Image, dict]:
        img = raw["image"]
        h, w = img.shape[:2]
        s = fit_scale(h, w, self.long, self.short)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        target = {"image_id": raw["image_id"], "orig_size": (h, w), "scale_factor": (nh / h, nw / w)}
        return image_tensor(img), target
