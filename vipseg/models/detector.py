"""Mask R-CNN with vipseg's model contract on top of torchvision's ``GeneralizedRCNN``.

Contract (docs/architecture.md, "Model"): ``model(images, targets=None)`` with ``images`` a
list of ``[3, H, W]`` uint8 or float tensors in 0..255 (sizes may differ) and, in training,
``targets`` a list of dicts with ``boxes`` [N, 4] XYXY pixels, ``labels`` int64 [N] in 0..C-1
and ``masks`` [N, H, W] bool/uint8 (tv_tensors are fine). Training returns a dict of scalar
losses; evaluation returns per image ``boxes`` [K, 4] XYXY in the input image's pixels,
``labels`` int64 [K] in 0..C-1, ``scores`` [K] and soft ``masks`` float [K, 1, 28, 28] in
0..1, one per box and not pasted into the image.

The model normalises with a mean and std in 0..255 units and pads the batch to a multiple of
32; it never resizes (the data pipeline does), so boxes come back in input pixels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform

SIZE_DIVISIBLE = 32
TARGET_KEYS = ("boxes", "labels", "masks")


class NoResizeTransform(GeneralizedRCNNTransform):
    """Normalise (mean/std in 0..255 units) and pad to a multiple of ``size_divisible``;
    no resizing and no mask pasting, so outputs stay in input pixels."""

    def __init__(self, *, mean: Sequence[float], std: Sequence[float],
                 size_divisible: int = SIZE_DIVISIBLE) -> None:
        # min/max size are unused: resize below is the identity.
        super().__init__(min_size=1, max_size=1, image_mean=list(mean), image_std=list(std),
                         size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """[3, H, W] uint8 or float in 0..255 -> float32 ``(image - mean) / std``."""
        return super().normalize(image.float())

    def resize(self, image: torch.Tensor, target: Optional[dict] = None):
        return image, target

    def postprocess(self, result: list[dict], image_shapes, original_image_sizes) -> list[dict]:
        return result


def to_internal_target(target: dict) -> dict[str, torch.Tensor]:
    """vipseg target -> torchvision's: plain tensors, labels shifted by one (0 = background),
    masks uint8; keys other than boxes/labels/masks dropped."""
    out = {k: target[k].as_subclass(torch.Tensor) for k in TARGET_KEYS if k in target}
    out["boxes"] = out["boxes"].float()
    out["labels"] = out["labels"].long() + 1
    if "masks" in out:
        out["masks"] = out["masks"].to(torch.uint8)
    return out


class MaskRCNN(GeneralizedRCNN):
    """Mask R-CNN: ``backbone`` (with FPN) -> ``rpn`` -> ``roi_heads``, with vipseg's contract
    (module doc). ``roi_heads`` predicts ``C + 1`` classes, 0 being background."""

    def __init__(self, *, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(backbone, rpn, roi_heads, NoResizeTransform(mean=mean, std=std))

    def forward(self, images: list[torch.Tensor], targets: Optional[list[dict]] = None):
        """Losses (training) or detections (evaluation); shapes in the module doc."""
        images = [im.as_subclass(torch.Tensor) for im in images]
        if targets is not None:
            targets = [to_internal_target(t) for t in targets]
        out = super().forward(images, targets)
        if self.training:
            return out
        for det in out:
            det["labels"] = det["labels"] - 1
        return out
