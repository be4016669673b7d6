"""The two-stage detector of every model family: features -> RPN -> RoI heads.

Contract (docs/architecture.md, "Model"): ``model(images, targets=None)`` with ``images`` a
list of ``[3, H, W]`` uint8 or float tensors in 0..255 (sizes may differ) and, in training,
``targets`` a list of dicts with ``boxes`` [N, 4] XYXY pixels, ``labels`` int64 [N] in 0..C-1
and the instance masks, either compact (``mask_boxes`` int64 [N, 4] crop boxes and
``mask_data`` uint8, the crops' pixels concatenated; see :mod:`vipseg.models.mask_targets`)
or full ``masks`` [N, H, W] bool/uint8 (packed here; tv_tensors are fine). Training returns
a dict of scalar losses; evaluation returns per image ``boxes`` [K, 4] XYXY in the input
image's pixels, ``labels`` int64 [K] in 0..C-1, ``scores`` [K] and soft ``masks`` float
[K, 1, 28, 28] in 0..1, one per box and not pasted into the image.

The model normalises with a mean and std in 0..255 units and pads the batch to a multiple of
32; it never resizes (the data pipeline does), so boxes come back in input pixels. Labels are
shifted to the heads' convention (0 = background, class c at c + 1) here and only here.

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

Composite backbones (CBNet-style) return, in training, a list of feature dicts: the lead's
first, then the assisting ones with weights ``backbone.aux_weights``. Proposals come from
the lead; the RPN and RoI losses are computed on every set, the RoI losses of an assisting
set on the lead's sampled RoIs, scaled by its weight and reported as ``aux{i}_<loss>``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from vipseg.models.heads.roi_heads import (PIXELS_KEY, StandardRoIHeads,
                                           upgrade_torchvision_keys)
from vipseg.models.mask_targets import pack_masks

SIZE_DIVISIBLE = 32


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
    """vipseg target -> the heads': plain tensors, ``boxes`` float, ``labels`` + 1 (0 =
    background), compact masks (``mask_boxes``, ``mask_data``; full ``masks`` are packed)."""
    out = {"boxes": target["boxes"].as_subclass(torch.Tensor).float(),
           "labels": target["labels"].as_subclass(torch.Tensor).long() + 1}
    if "mask_data" in target:
        out["mask_boxes"] = target["mask_boxes"].as_subclass(torch.Tensor).long()
        out["mask_data"] = target["mask_data"].as_subclass(torch.Tensor)
    else:
        out["mask_data"], out["mask_boxes"] = pack_masks(target["masks"].as_subclass(torch.Tensor))
    return out


@dataclass
class FeatureBatch:
    """A batch's pyramid: ``maps[level]`` float [B, C, Hp / stride, Wp / stride] of the padded
    batch, ``image_sizes`` the unpadded (H, W) of each image and ``padded_size`` (Hp, Wp) of
    the batch, in input pixels. ``aux_maps``: the assisting backbones' pyramids of a
    composite backbone (training only; empty otherwise). ``pixels``: the normalised padded
    batch [B, 3, Hp, Wp] the pyramid was computed from (box and mask heads with
    ``pixel_channels`` crop it); ``None`` for features made without the images."""

    maps: "OrderedDict[str, torch.Tensor]"
    image_sizes: list[tuple[int, int]]
    padded_size: tuple[int, int]
    aux_maps: list["OrderedDict[str, torch.Tensor]"] = field(default_factory=list)
    pixels: Optional[torch.Tensor] = None

    def head_maps(self, maps: Optional["OrderedDict[str, torch.Tensor]"] = None
                  ) -> "OrderedDict[str, torch.Tensor]":
        """``maps`` (default: the lead pyramid) as the RoI heads read them: with the pixels
        under ``PIXELS_KEY`` when there are pixels. The RPN reads the plain pyramid."""
        maps = self.maps if maps is None else maps
        if self.pixels is None:
            return maps
        return OrderedDict(maps, **{PIXELS_KEY: self.pixels})


class TwoStageDetector(nn.Module):
    """``backbone`` (features module: backbone + neck) -> ``rpn`` -> ``roi_heads``, with
    vipseg's contract (module doc). ``roi_heads`` is a :class:`StandardRoIHeads` (or a
    cascade / HTC subclass); ``transform`` normalises and pads."""

    def __init__(self, *, backbone: nn.Module, rpn: RegionProposalNetwork,
                 roi_heads: StandardRoIHeads, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.transform = NoResizeTransform(mean=mean, std=std)
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads

    def upgrade_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A copy of ``state`` with the keys of older vipseg checkpoints (torchvision-style
        RoI heads) renamed to this model's; what :func:`vipseg.engine.checkpoint.load_weights`
        compares against the model (``load_state_dict`` applies the same renaming itself)."""
        state = dict(state)
        upgrade_torchvision_keys(self.roi_heads, state, "roi_heads.")
        return state

    # ------------------------------------------------------------------------ stages
    def extract_features(self, images: list[torch.Tensor]) -> FeatureBatch:
        """Normalise, pad and run backbone + neck on ``images`` ([3, H, W] in 0..255)."""
        batch, _ = self.transform([im.as_subclass(torch.Tensor) for im in images])
        out = self.backbone(batch.tensors)
        maps, aux = (out[0], list(out[1:])) if isinstance(out, (list, tuple)) else (out, [])
        return FeatureBatch(maps, [tuple(s) for s in batch.image_sizes],
                            tuple(batch.tensors.shape[-2:]), aux, batch.tensors)

    @staticmethod
    def _image_list(features: FeatureBatch) -> ImageList:
        # The anchor generator reads only the padded size and dtype/device of ``tensors``.
        level = next(iter(features.maps.values()))
        return ImageList(level.new_empty((0, 0, *features.padded_size)), features.image_sizes)

    def detect(self, features: FeatureBatch) -> list[dict[str, torch.Tensor]]:
        """Proposals, box stage(s) and per-class NMS: per image ``boxes`` [K, 4] (input
        pixels), ``labels`` [K] in 0..C-1, box ``scores`` [K]; no masks."""
        proposals, _ = self.rpn(self._image_list(features), features.maps)
        dets = self.roi_heads.detect(features.head_maps(), proposals, features.image_sizes)
        return [{"boxes": b, "labels": lab - 1, "scores": s} for b, s, lab in dets]

    def predict_masks(self, features: FeatureBatch, boxes: list[torch.Tensor],
                      labels: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Soft masks for given boxes: per image ``masks`` float [K, 1, 28, 28] in 0..1 for
        ``boxes[i]`` [K, 4] (XYXY input pixels) and ``labels[i]`` [K] (0..C-1), and
        ``mask_iou`` [K] when the model has a mask-IoU head."""
        boxes = [b.to(dtype=torch.float32) for b in boxes]
        internal = [lab.long().to(b.device) + 1 for lab, b in zip(labels, boxes)]
        probs, iou = self.roi_heads.predict_masks(features.head_maps(), boxes, internal,
                                                  features.image_sizes)
        counts = [len(b) for b in boxes]
        out = [{"masks": m} for m in probs.split(counts)]
        if iou is not None:
            for o, v in zip(out, iou.split(counts)):
                o["mask_iou"] = v
        return out

    # ------------------------------------------------------------------------ forward
    def forward(self, images: list[torch.Tensor], targets: Optional[list[dict]] = None):
        """Losses (training) or detections (evaluation); shapes in the module doc."""
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            return self.losses(images, targets)
        features = self.extract_features(images)
        dets = self.detect(features)
        masks = self.predict_masks(features, [d["boxes"] for d in dets],
                                   [d["labels"] for d in dets])
        for det, m in zip(dets, masks):
            det["masks"] = m["masks"]
            if "mask_iou" in m:
                det["scores"] = det["scores"] * m["mask_iou"]
        return dets

    def losses(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        """Training losses: RPN (``loss_objectness``, ``loss_rpn_box_reg``) and the RoI heads'
        (names by family), plus ``aux{i}_*`` for the assisting sets of a composite backbone."""
        internal = [to_internal_target(t) for t in targets]
        features = self.extract_features(images)
        batch = self._image_list(features)
        proposals, losses = self.rpn(batch, features.maps, internal)
        roi_losses, plan = self.roi_heads.forward_train(features.head_maps(), proposals,
                                                        features.image_sizes, internal)
        losses = {**losses, **roi_losses}
        weights = tuple(getattr(self.backbone, "aux_weights", ()))
        if len(weights) != len(features.aux_maps):
            raise ValueError(f"backbone returned {len(features.aux_maps)} assisting feature sets "
                             f"but has {len(weights)} aux_weights")
        for i, (maps, w) in enumerate(zip(features.aux_maps, weights)):
            _, aux = self.rpn(batch, maps, internal)
            aux.update(self.roi_heads.forward_train(features.head_maps(maps), proposals,
                                                    features.image_sizes,
                                                    internal, plan)[0])
            losses.update({f"aux{i}_{k}": w * v for k, v in aux.items()})
        return losses
