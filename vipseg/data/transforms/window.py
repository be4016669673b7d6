"""Work in source coordinates: the crop window and compact (box-sized) instance masks.

The fast pipeline never decodes a full-image mask: each instance is a :class:`Piece`, a bool
mask of its own bounding box at its place in the source image, decoded straight from the COCO
RLE (:func:`vipseg.data.masks.decode_crop`). Only the source pixels that the output crop reads
(:func:`source_window`) are copied, pasted into and warped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vipseg.data.masks import decode_crop, rle_box
from vipseg.data.transforms.geometric import map_box


@dataclass
class Piece:
    """One instance in source pixels: ``mask`` bool [h, w] with its top-left at (x, y).

    ``area0`` is the visible area before copy-paste occlusion (pixels).
    """

    label: int
    x: int
    y: int
    mask: np.ndarray
    area0: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixel-edge box of the mask array."""
        return self.x, self.y, self.x + self.mask.shape[1], self.y + self.mask.shape[0]


def piece_from_rle(rle: dict, label: int) -> Piece | None:
    """The instance of ``rle`` as a box-sized :class:`Piece` (None when the mask is empty)."""
    box = rle_box(rle)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    mask = decode_crop(rle, box).view(bool)
    return Piece(label, box[0], box[1], mask, int(mask.sum()))


def source_window(m: np.ndarray, out_size: tuple[int, int], src_size: tuple[int, int],
                  margin: int = 2) -> tuple[int, int, int, int]:
    """Source pixels (x0, y0, x1, y1) that a warp by ``m`` into ``out_size`` (H, W) reads.

    The inverse image of the output rectangle, widened by ``margin`` pixels for bilinear
    interpolation and clipped to the source image of ``src_size`` (H, W).
    """
    bx0, by0, bx1, by1 = map_box(np.linalg.inv(m), (0.0, 0.0, float(out_size[1]), float(out_size[0])))
    x0 = max(0, math.floor(bx0) - margin)
    y0 = max(0, math.floor(by0) - margin)
    x1 = min(src_size[1], math.ceil(bx1) + margin)
    y1 = min(src_size[0], math.ceil(by1) + margin)
    return x0, y0, max(x0, x1), max(y0, y1)


def boxes_intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two (x0, y0, x1, y1) boxes overlap with positive area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
