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

Beside ``forward`` the detector exposes its stages, which test-time augmentation and
ensembles call (every family keeps this API):

- ``extract_features(images) -> FeatureBatch``: pyramid maps and the unpadded image sizes;
- ``detect(features) -> list[dict]``: per image ``boxes`` [K, 4], ``labels`` [K] (0..C-1) and
  box ``scores`` [K], before any mask-IoU rescoring;
- ``predict_masks(features, boxes, labels) -> list[dict]``: for given boxes [K, 4] (input
  pixels) and labels [K], soft ``masks`` [K, 1, M, M] in 0..1 and, for models with a mask-IoU
  head, ``mask_iou`` [K] (the predicted IoU of each mask, multiplied into the final score).

In evaluation ``forward(images)`` equals ``detect`` followed by ``predict_masks`` on the
detected boxes (scores times ``mask_iou`` where present).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
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


@dataclass
class FeatureBatch:
    """A batch's pyramid: ``maps[level]`` float [B, C, Hp / stride, Wp / stride] of the padded
    batch, ``image_sizes`` the unpadded (H, W) of each image and ``padded_size`` (Hp, Wp) of
    the batch, in input pixels."""

    maps: "OrderedDict[str, torch.Tensor]"
    image_sizes: list[tuple[int, int]]
    padded_size: tuple[int, int]


class MaskRCNN(GeneralizedRCNN):
    """Mask R-CNN: ``backbone`` (with FPN) -> ``rpn`` -> ``roi_heads``, with vipseg's contract
    (module doc). ``roi_heads`` predicts ``C + 1`` classes, 0 being background."""

    def __init__(self, *, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(backbone, rpn, roi_heads, NoResizeTransform(mean=mean, std=std))

    def extract_features(self, images: list[torch.Tensor]) -> FeatureBatch:
        """Normalise, pad and run backbone + neck on ``images`` ([3, H, W] in 0..255)."""
        batch, _ = self.transform([im.as_subclass(torch.Tensor) for im in images])
        return FeatureBatch(self.backbone(batch.tensors), [tuple(s) for s in batch.image_sizes],
                            tuple(batch.tensors.shape[-2:]))

    def detect(self, features: FeatureBatch) -> list[dict[str, torch.Tensor]]:
        """Proposals, box head and per-class NMS: per image ``boxes`` [K, 4] (input pixels),
        ``labels`` [K] in 0..C-1, ``scores`` [K]; no masks."""
        level = next(iter(features.maps.values()))
        # The anchor generator reads only the padded size and dtype/device of ``tensors``.
        batch = ImageList(level.new_empty((0, 0, *features.padded_size)), features.image_sizes)
        proposals, _ = self.rpn(batch, features.maps)
        heads = self.roi_heads
        feats = heads.box_roi_pool(features.maps, proposals, features.image_sizes)
        logits, deltas = heads.box_predictor(heads.box_head(feats))
        boxes, scores, labels = heads.postprocess_detections(logits, deltas, proposals,
                                                             features.image_sizes)
        return [{"boxes": b, "labels": l - 1, "scores": s}
                for b, s, l in zip(boxes, scores, labels)]

    def predict_masks(self, features: FeatureBatch, boxes: list[torch.Tensor],
                      labels: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Soft masks for given boxes: per image ``masks`` float [K, 1, 28, 28] in 0..1 for
        ``boxes[i]`` [K, 4] (XYXY input pixels) and ``labels[i]`` [K] (0..C-1)."""
        heads = self.roi_heads
        boxes = [b.to(dtype=torch.float32) for b in boxes]
        feats = heads.mask_roi_pool(features.maps, boxes, features.image_sizes)
        logits = heads.mask_predictor(heads.mask_head(feats))
        flat = torch.cat(labels).long() + 1 if labels else torch.zeros(0, dtype=torch.long)
        probs = logits[torch.arange(len(flat), device=logits.device), flat][:, None].sigmoid()
        return [{"masks": m} for m in probs.split([len(b) for b in boxes])]

    def forward(self, images: list[torch.Tensor], targets: Optional[list[dict]] = None):
        """Losses (training) or detections (evaluation); shapes in the module doc."""
        if not self.training:
            features = self.extract_features(images)
            dets = self.detect(features)
            masks = self.predict_masks(features, [d["boxes"] for d in dets],
                                       [d["labels"] for d in dets])
            for det, m in zip(dets, masks):
                det["masks"] = m["masks"]
                if "mask_iou" in m:
                    det["scores"] = det["scores"] * m["mask_iou"]
            return dets
        images = [im.as_subclass(torch.Tensor) for im in images]
        if targets is not None:
            targets = [to_internal_target(t) for t in targets]
        return super().forward(images, targets)
