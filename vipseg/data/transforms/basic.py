"""Raw sample → model input, the evaluation-time resize, and the two mask forms of a target.

A *sample* is ``(image, target)``: ``image`` is a uint8 ``tv_tensors.Image`` [3, H, W];
``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes`` XYXY float32 [N, 4], canvas (H, W)),
``labels`` int64 [N], the instance masks, ``image_id`` and ``orig_size`` (H, W) of the source
image. Masks come in one of two forms: packed box-local ``mask_boxes`` int64 [N, 4] and
``mask_data`` uint8 (:mod:`vipseg.utils.packed_masks`; the training pipeline's form), or full
``masks`` (``tv_tensors.Mask`` bool [N, H, W]; :func:`to_sample`'s form, for small images and
tools). :func:`full_masks_target` and :func:`packed_target` convert between them.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision import tv_tensors

from vipseg.data.masks import decode
from vipseg.utils.packed_masks import pack_masks, unpack_masks


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


def full_masks_target(target: dict, size: tuple[int, int]) -> dict:
    """``target`` with full ``masks`` (``tv_tensors.Mask`` bool [N, H, W] of ``size`` (H, W))
    in place of packed ``mask_boxes`` / ``mask_data``; unchanged if it has no packed masks."""
    if "mask_data" not in target:
        return target
    out = {k: v for k, v in target.items() if k not in ("mask_boxes", "mask_data")}
    out["masks"] = tv_tensors.Mask(unpack_masks(target["mask_data"], target["mask_boxes"], size))
    return out


def packed_target(target: dict) -> dict:
    """``target`` with packed ``mask_boxes`` / ``mask_data`` in place of full ``masks``;
    unchanged if it has no full masks."""
    if "masks" not in target:
        return target
    out = {k: v for k, v in target.items() if k != "masks"}
    out["mask_data"], out["mask_boxes"] = pack_masks(target["masks"].as_subclass(torch.Tensor))
    return out


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
