"""Training targets from packed box-local instance masks (:mod:`vipseg.utils.packed_masks`).

``masks`` arguments are mappings (a target dict) with ``mask_data`` uint8 [S] and
``mask_boxes`` int64 [N, 4] (each instance's crop box with a 1-pixel zero margin, clipped to
the image). Nothing here builds a full-image mask:

- :func:`mask_targets`: the M x M mask target of each proposal, RoIAlign on its instance's
  crop with the proposal shifted by the crop origin: equal to torchvision's full-image
  ``project_masks_on_boxes`` because every crop edge is a zero row/column or the image border;
- :func:`area_ratios`: the fraction of each instance's pixels inside its proposal (mask-IoU);
- :func:`semantic_target`: an instance-derived label map at a stride (HTC's semantic branch);
- :func:`pack_masks`: full masks [N, H, W] -> the packed fields, for callers with full masks.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
from torchvision.ops import roi_align

from vipseg.utils.packed_masks import pack_masks, unpack_crops

__all__ = ["mask_targets", "area_ratios", "semantic_target", "pack_masks"]

AREA_EPS = 1e-7  # as mmdetection's area ratio


def _groups(gt_index: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(instance, positions in ``gt_index``) for every instance that ``gt_index`` names."""
    return [(int(g), (gt_index == g).nonzero().squeeze(1)) for g in torch.unique(gt_index)]


def mask_targets(masks: Mapping[str, torch.Tensor], gt_index: torch.Tensor,
                 proposals: torch.Tensor, size: int, *, aligned: bool = True) -> torch.Tensor:
    """Soft mask targets [P, size, size] in 0..1 for ``proposals`` [P, 4] (XYXY sample pixels)
    matched to instances ``gt_index`` [P] (int, 0..N-1).

    Per instance, ``roi_align`` (1 pixel scale, adaptive sampling) of its crop with the
    proposals moved by the crop's origin. ``aligned=True``: pixel ``i`` spans ``[i, i + 1)``
    (detectron2's ``BitMasks.crop_and_resize``; what vipseg's paste inverts); ``False``:
    torchvision's ``project_masks_on_boxes``, half a pixel off. Threshold at 0.5 for binary
    targets.
    """
    crops = unpack_crops(masks["mask_data"], masks["mask_boxes"])
    origins = masks["mask_boxes"][:, :2].to(proposals)
    out = proposals.new_zeros((len(proposals), size, size))
    for g, where in _groups(gt_index):
        crop = crops[g]
        if crop.numel() == 0:
            continue
        rois = proposals[where] - origins[g].repeat(2)
        out[where] = roi_align(crop[None, None].to(proposals), [rois], (size, size), 1.0,
                               aligned=aligned)[:, 0]
    return out


def area_ratios(masks: Mapping[str, torch.Tensor], gt_index: torch.Tensor,
                proposals: torch.Tensor) -> torch.Tensor:
    """Fraction [P] of each matched instance's pixels inside its proposal.

    As mmdetection's Mask Scoring head: the proposal is truncated to integers and at least
    1 pixel wide and high; ratio = pixels of the instance inside it / (all its pixels + 1e-7).
    """
    crops = unpack_crops(masks["mask_data"], masks["mask_boxes"])
    boxes = masks["mask_boxes"]
    out = proposals.new_zeros(len(proposals))
    for g, where in _groups(gt_index):
        crop = crops[g].to(torch.int64)
        integral = torch.nn.functional.pad(crop.cumsum(0).cumsum(1), (1, 0, 1, 0))
        h, w = crop.shape
        b = proposals[where].to(torch.int64)  # truncation; proposals are inside the image
        x0, y0 = b[:, 0], b[:, 1]
        x1 = torch.maximum(b[:, 2], x0 + 1)
        y1 = torch.maximum(b[:, 3], y0 + 1)
        cx0, cy0 = int(boxes[g, 0]), int(boxes[g, 1])
        lx0, lx1 = (x0 - cx0).clamp(0, w), (x1 - cx0).clamp(0, w)
        ly0, ly1 = (y0 - cy0).clamp(0, h), (y1 - cy0).clamp(0, h)
        inside = integral[ly1, lx1] - integral[ly0, lx1] - integral[ly1, lx0] + integral[ly0, lx0]
        out[where] = inside.to(out) / (integral[-1, -1].to(out) + AREA_EPS)
    return out


def semantic_target(masks: Mapping[str, torch.Tensor], image_size: tuple[int, int], stride: int,
                    labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Label map int64 [ceil(H / stride), ceil(W / stride)] of an image of ``image_size``
    (H, W): cell (j, i) holds the label of the instance covering pixel (j * stride,
    i * stride) (nearest-neighbour downsampling, as HTC resizes its label map), 0 where none;
    a later instance wins where they overlap.

    ``labels`` [N]: the value written per instance (the heads' 1..C); default
    ``masks["labels"]``.
    """
    if labels is None:
        labels = masks["labels"]
    h, w = math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)
    device = masks["mask_data"].device
    out = torch.zeros((h, w), dtype=torch.int64, device=device)
    crops = unpack_crops(masks["mask_data"], masks["mask_boxes"])
    for crop, (x0, y0, x1, y1), label in zip(crops, masks["mask_boxes"].tolist(), labels.tolist()):
        j0, j1 = -(-y0 // stride), min(h, -(-y1 // stride))
        i0, i1 = -(-x0 // stride), min(w, -(-x1 // stride))
        if j1 <= j0 or i1 <= i0:
            continue
        ys = torch.arange(j0, j1, device=device) * stride - y0
        xs = torch.arange(i0, i1, device=device) * stride - x0
        hit = crop[ys][:, xs].bool()
        out[j0:j1, i0:i1][hit] = label
    return out
