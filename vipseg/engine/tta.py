"""Test-time augmentation at mask level, for one model or an ensemble, on the detector stages.

Built only on the stage API every detector family keeps (vipseg/models/detector.py):
``extract_features``, ``detect`` (box scores before mask-IoU) and ``predict_masks`` (soft
masks [K, 1, M, M] for given boxes, optional ``mask_iou`` [K]). As in detectron2's
``GeneralizedRCNNWithTTA``, per image:

1. every *view* (a member model at one scale, flipped or not) detects boxes; they are mapped
   back to the original image (un-flipped, divided by the view's scale);
2. the boxes of all views are merged per class: ``nms`` keeps the best box of each cluster,
   ``wbf`` (weighted box fusion) averages each cluster's boxes weighted by score x member
   weight, scored ``sum(w * s) / max(sum(w), W)`` with ``W`` the total weight of all views;
   at most ``max_detections`` boxes per image remain;
3. the masks of the merged boxes are re-predicted: every merged box is mapped into each view
   (scaled, mirrored for a flipped view) and ``predict_masks`` runs there. Because every view
   predicts on the *same* box, the M x M grids cover the same region of the original image and
   are averaged cell by cell (a flipped view's grid is mirrored back). ``mask_merge: select``
   instead keeps only the mask of the view that found the box (the reference's behaviour).
   ``mask_iou``, when a member has it, is averaged the same way and multiplies the score.

Memory stays bounded at any resolution: only one view's features exist at a time (the
backbone runs again for the second pass, as detectron2 does) and the masks stay box-local
[K, 1, M, M]; nothing full-size is held per view or per detection before pasting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou

from vipseg.data.transforms.basic import TestTransform, image_tensor

Scale = Union[float, tuple[int, int]]


@dataclass(frozen=True)
class View:
    """One test-time view: ``scale`` is a factor of the original image or a (long, short)
    size the image is fitted into (aspect kept, as ``dataset.test_scale``); ``flip`` mirrors
    the view horizontally."""

    scale: Scale
    flip: bool = False


@dataclass(frozen=True)
class MergeOptions:
    """How views' boxes and masks are merged (the config's ``tta:`` section)."""

    merge: str = "nms"  # nms | wbf
    iou_thresh: float = 0.5
    max_detections: int = 100
    mask_merge: str = "average"  # average | select


@dataclass
class Member:
    """A model taking part in multi-view prediction: its ``views`` and ensemble ``weight``."""

    model: nn.Module
    views: tuple[View, ...]
    weight: float = 1.0


def views_from_config(tta_cfg: Any) -> tuple[View, ...]:
    """``tta.scales`` x (no flip, flip if ``tta.flip``) -> views, scale-major order."""
    scales = [tuple(int(v) for v in s) if isinstance(s, (list, tuple)) else float(s)
              for s in tta_cfg.scales]
    flips = (False, True) if tta_cfg.flip else (False,)
    return tuple(View(s, f) for s in scales for f in flips)


def merge_options(tta_cfg: Any) -> MergeOptions:
    """The config's ``tta:`` section -> ``MergeOptions``."""
    return MergeOptions(merge=tta_cfg.merge, iou_thresh=float(tta_cfg.iou_thresh),
                        max_detections=int(tta_cfg.max_detections),
                        mask_merge=tta_cfg.mask_merge)


class OriginalImage:
    """Dataset transform for multi-view prediction: the image at its original size, with
    ``image_id``, ``orig_size`` (H, W) and ``scale_factor`` (1, 1); views are made later."""

    def __call__(self, raw: dict) -> tuple[torch.Tensor, dict]:
        image = raw["image"]
        return image_tensor(image), {"image_id": raw["image_id"], "orig_size": image.shape[:2],
                                     "scale_factor": (1.0, 1.0)}


def view_image(hwc: np.ndarray, view: View) -> tuple[torch.Tensor, tuple[float, float]]:
    """Original RGB uint8 [H, W, 3] -> the view's (unflipped) image [3, h, w] and its
    ``(sy, sx)`` = resized / original per axis. A (long, short) view resizes exactly as
    ``TestTransform`` does, so it reproduces plain testing's input."""
    h, w = hwc.shape[:2]
    if isinstance(view.scale, tuple):
        image, target = TestTransform(view.scale)({"image": hwc, "image_id": None,
                                                   "orig_size": (h, w)})
        return image.as_subclass(torch.Tensor), target["scale_factor"]
    nh, nw = max(1, round(h * view.scale)), max(1, round(w * view.scale))
    if (nh, nw) != (h, w):
        hwc = cv2.resize(hwc, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return image_tensor(hwc).as_subclass(torch.Tensor), (nh / h, nw / w)


def to_view(boxes: torch.Tensor, sy: float, sx: float, width: int, flip: bool) -> torch.Tensor:
    """XYXY boxes [K, 4] in original pixels -> the view's pixels (``width`` = view width)."""
    b = boxes * boxes.new_tensor([sx, sy, sx, sy])
    return torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1) if flip else b


def from_view(boxes: torch.Tensor, sy: float, sx: float, width: int, flip: bool) -> torch.Tensor:
    """Inverse of ``to_view``: view pixels -> original pixels."""
    if flip:
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0],
                             boxes[:, 3]], 1)
    return boxes / boxes.new_tensor([sx, sy, sx, sy])


def weighted_box_fusion(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                        weights: torch.Tensor, total_weight: float,
                        iou_thresh: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluster boxes [N, 4] per label, best score first: a box joins the cluster whose fused
    box it overlaps most if that IoU > ``iou_thresh``, else it leads a new one. Returns the
    fused boxes [K, 4] (mean of members weighted by ``weights * scores``), their scores
    ``sum(w s) / max(sum(w), total_weight)`` [K] and each cluster's leader index [K]."""
    out_boxes, out_scores, leaders = [], [], []
    for label in labels.unique().tolist():
        idx = (labels == label).nonzero().flatten()
        idx = idx[scores[idx].argsort(descending=True, stable=True)]
        fused = boxes.new_zeros((len(idx), 4))
        box_sum = boxes.new_zeros((len(idx), 4))
        bw_sum = boxes.new_zeros(len(idx))  # sum of w * s (box weights)
        s_sum = boxes.new_zeros(len(idx))   # sum of w * s (score)
        w_sum = boxes.new_zeros(len(idx))
        lead: list[int] = []
        for i in idx.tolist():
            j = -1
            if lead:
                ious = box_iou(boxes[i:i + 1], fused[:len(lead)])[0]
                best = int(ious.argmax())
                if float(ious[best]) > iou_thresh:
                    j = best
            if j < 0:
                j = len(lead)
                lead.append(i)
            bw = (weights[i] * scores[i]).clamp(min=1e-12)
            box_sum[j] += bw * boxes[i]
            bw_sum[j] += bw
            s_sum[j] += weights[i] * scores[i]
            w_sum[j] += weights[i]
            fused[j] = box_sum[j] / bw_sum[j]
        n = len(lead)
        out_boxes.append(fused[:n])
        out_scores.append(s_sum[:n] / w_sum[:n].clamp(min=total_weight))
        leaders.append(torch.tensor(lead, dtype=torch.long, device=boxes.device))
    if not out_boxes:
        return boxes[:0], scores[:0], labels.new_zeros(0)
    return torch.cat(out_boxes), torch.cat(out_scores), torch.cat(leaders)


class MultiViewPredictor:
    """Callable ``(images, targets) -> outputs`` for original-size images (``OriginalImage``):
    per image ``boxes`` [K, 4] in original pixels, ``labels`` [K], ``scores`` [K] and soft
    ``masks`` [K, 1, M, M] (merged as in the module doc)."""

    def __init__(self, members: Sequence[Member], merge: MergeOptions) -> None:
        if not members or any(not m.views for m in members):
            raise ValueError("multi-view prediction needs at least one member with views")
        if merge.merge not in ("nms", "wbf") or merge.mask_merge not in ("average", "select"):
            raise ValueError(f"unknown merge options {merge}")
        self.members, self.opt = list(members), merge
        self.views = [(m, v) for m in self.members for v in m.views]

    def __call__(self, images: list[torch.Tensor], targets: list[dict]) -> list[dict]:
        return [self.predict_image(im) for im in images]

    def _inputs(self, hwc: np.ndarray, view: View, device: torch.device):
        image, (sy, sx) = view_image(hwc, view)
        image = image.to(device)
        if view.flip:
            image = image.flip(-1)
        return image, float(sy), float(sx), int(image.shape[-1])

    def predict_image(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One original image [3, H, W] uint8 (any device) -> merged detections."""
        device = next(self.members[0].model.parameters()).device
        hwc = np.ascontiguousarray(image.cpu().numpy().transpose(1, 2, 0))
        found = []  # per view: (boxes in original pixels, in view pixels, scores, labels)
        for member, view in self.views:
            img, sy, sx, width = self._inputs(hwc, view, device)
            det = member.model.detect(member.model.extract_features([img]))[0]
            raw = det["boxes"].float()
            found.append((from_view(raw, sy, sx, width, view.flip), raw, det["scores"].float(),
                          det["labels"].long()))
        boxes, raw, scores, labels = (torch.cat(x) for x in zip(*found))
        source = torch.cat([torch.full((len(f[0]),), i, dtype=torch.long, device=boxes.device)
                            for i, f in enumerate(found)])
        weights = boxes.new_tensor([m.weight for m, _ in self.views])
        boxes, scores, labels, lead = self._merge(boxes, scores, labels, weights[source])
        masks, mask_iou = self._masks(hwc, boxes, labels, source[lead], raw[lead], device)
        if mask_iou is not None:
            scores = scores * mask_iou
        return {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks}

    def _merge(self, boxes, scores, labels, weights):
        opt = self.opt
        if opt.merge == "nms":
            lead = batched_nms(boxes, scores, labels, opt.iou_thresh)
            boxes, scores, labels = boxes[lead], scores[lead], labels[lead]
        else:
            total = float(sum(m.weight for m, _ in self.views))
            boxes, scores, lead = weighted_box_fusion(boxes, scores, labels, weights, total,
                                                      opt.iou_thresh)
            labels = labels[lead]
            order = scores.argsort(descending=True, stable=True)
            boxes, scores, labels, lead = boxes[order], scores[order], labels[order], lead[order]
        k = opt.max_detections
        return boxes[:k], scores[:k], labels[:k], lead[:k]

    def _masks(self, hwc: np.ndarray, boxes: torch.Tensor, labels: torch.Tensor,
               source: torch.Tensor, source_boxes: torch.Tensor,
               device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weighted mean over views of the merged boxes' soft masks [K, 1, M, M] (each view
        predicting on the same box) and of ``mask_iou`` [K] (None if no member has one)."""
        k = len(boxes)
        acc: Optional[torch.Tensor] = None
        w_sum, iou_sum, iou_w = (boxes.new_zeros(k) for _ in range(3))
        for vi, (member, view) in enumerate(self.views):
            idx = (torch.arange(k, device=boxes.device) if self.opt.mask_merge == "average"
                   else (source == vi).nonzero().flatten())
            if len(idx) == 0:
                continue
            img, sy, sx, width = self._inputs(hwc, view, device)
            vboxes = to_view(boxes[idx], sy, sx, width, view.flip)
            if self.opt.merge == "nms":  # a view sees its own boxes exactly as it found them
                own = source[idx] == vi
                vboxes[own] = source_boxes[idx][own]
            out = member.model.predict_masks(member.model.extract_features([img]), [vboxes],
                                             [labels[idx]])[0]
            m = out["masks"].float()
            if view.flip:
                m = m.flip(-1)
            if acc is None:
                acc = m.new_zeros((k, *m.shape[1:]))
            elif m.shape[-2:] != acc.shape[-2:]:  # members with another mask resolution
                m = F.interpolate(m, size=acc.shape[-2:], mode="bilinear", align_corners=False)
            acc[idx] += member.weight * m
            w_sum[idx] += member.weight
            if "mask_iou" in out:
                iou_sum[idx] += member.weight * out["mask_iou"].float()
                iou_w[idx] += member.weight
        if acc is None:  # no detections at all
            return boxes.new_zeros((0, 1, 28, 28)), None
        masks = acc / w_sum.clamp(min=1e-12)[:, None, None, None]
        if not bool((iou_w > 0).any()):
            return masks, None
        return masks, torch.where(iou_w > 0, iou_sum / iou_w.clamp(min=1e-12),
                                  torch.ones_like(iou_sum))
