"""Packed box-local instance masks: the compact mask format of training targets.

A sample's N instance masks travel as two plain tensors instead of a full [N, H, W] stack:

- ``mask_boxes`` int64 [N, 4]: each instance's crop box (x0, y0, x1, y1) in the sample's
  pixels, x1 / y1 exclusive. It is the instance's tight pixel box widened by
  :data:`MARGIN` pixel on every side, clipped to the image, so every crop edge is either a row
  / column of zeros or the image border (this makes RoIAlign on a crop equal RoIAlign on the
  full mask, see :func:`vipseg.models.mask_targets.mask_targets`). An empty mask has the box
  (0, 0, 0, 0) and no pixels.
- ``mask_data`` uint8 [sum_i h_i * w_i]: the crops' pixels (0 / 1), each row-major
  (h_i = y1 - y0, w_i = x1 - x0), concatenated in instance order.

Shared by ``data`` (which writes the format) and ``models`` (which reads it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

MARGIN = 1  # zero pixels kept around each instance's tight box (clipped to the image)


def margin_box(box: Sequence[int], size: tuple[int, int], margin: int = MARGIN) -> tuple[int, int, int, int]:
    """Tight pixel box (x0, y0, x1, y1) widened by ``margin`` and clipped to ``size`` (H, W)."""
    h, w = size
    return (max(0, int(box[0]) - margin), max(0, int(box[1]) - margin),
            min(w, int(box[2]) + margin), min(h, int(box[3]) + margin))


def crop_region(x0: int, y0: int, region: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """The pixels of ``box`` (x0, y0, x1, y1) from a bool ``region`` [h, w] whose top-left is
    at (x0, y0), as uint8 [y1 - y0', x1 - x0']; pixels of the box outside the region are 0."""
    bx0, by0, bx1, by1 = (int(v) for v in box)
    out = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    sx0, sy0 = max(bx0, x0), max(by0, y0)
    sx1, sy1 = min(bx1, x0 + region.shape[1]), min(by1, y0 + region.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - by0:sy1 - by0, sx0 - bx0:sx1 - bx0] = region[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
    return out


def pack_crops(boxes: Sequence[Sequence[int]],
               crops: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask_data, mask_boxes)`` from crop boxes and their uint8 / bool crops [h_i, w_i]."""
    data = (np.concatenate([np.asarray(c, np.uint8).reshape(-1) for c in crops]) if crops
            else np.zeros(0, np.uint8))
    return (torch.from_numpy(data),
            torch.tensor([list(b) for b in boxes], dtype=torch.int64).reshape(-1, 4))


def pack_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full masks [N, H, W] (bool or 0/1) -> ``(mask_data, mask_boxes)`` on their device."""
    masks = masks.bool()  # uint8 0/1 too: any() keeps uint8, whose ~ is no mask
    n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros(0, dtype=torch.uint8), torch.zeros(0, 4, dtype=torch.int64,
                                                                   device=masks.device)
    rows, cols = masks.any(2), masks.any(1)
    top, left = rows.int().argmax(1), cols.int().argmax(1)
    bottom, right = h - rows.flip(1).int().argmax(1), w - cols.flip(1).int().argmax(1)
    tight = torch.stack([left, top, right, bottom], 1)
    boxes = torch.stack([(tight[:, 0] - MARGIN).clamp(min=0), (tight[:, 1] - MARGIN).clamp(min=0),
                         (tight[:, 2] + MARGIN).clamp(max=w), (tight[:, 3] + MARGIN).clamp(max=h)], 1)
    boxes[~rows.any(1)] = 0
    boxes = boxes.long()
    crops = [m[y0:y1, x0:x1].reshape(-1) for m, (x0, y0, x1, y1) in zip(masks, boxes.tolist())]
    return torch.cat(crops).to(torch.uint8), boxes


def unpack_crops(mask_data: torch.Tensor, mask_boxes: torch.Tensor) -> list[torch.Tensor]:
    """Views [h_i, w_i] (uint8) of each instance's crop in ``mask_data``."""
    sides = (mask_boxes[:, 2:] - mask_boxes[:, :2]).tolist()
    sizes = [hw[0] * hw[1] for hw in sides]
    if sum(sizes) != mask_data.numel():
        raise ValueError(f"mask_data has {mask_data.numel()} pixels but mask_boxes cover {sum(sizes)}")
    return [part.view(hw[1], hw[0]) for part, hw in zip(mask_data.split(sizes), sides)]


def unpack_masks(mask_data: torch.Tensor, mask_boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Full bool masks [N, H, W] of ``size`` (H, W): for drawing and tests on small images
    only (this is the memory the packed format avoids)."""
    out = torch.zeros((len(mask_boxes), *size), dtype=torch.bool, device=mask_data.device)
    for k, (crop, (x0, y0, x1, y1)) in enumerate(zip(unpack_crops(mask_data, mask_boxes),
                                                     mask_boxes.tolist())):
        out[k, y0:y1, x0:x1] = crop.bool()
    return out
