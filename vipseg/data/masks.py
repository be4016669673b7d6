"""Mask codecs: COCO RLE ↔ binary arrays ↔ polygons, kept compact until needed.

RLE dicts use string ``counts`` and ``size`` = [height, width]. Binary masks are uint8 [H, W]
arrays with values 0/1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """Binary mask [H, W] (any dtype, nonzero = inside) → RLE with str counts."""
    m = np.asfortranarray(mask, dtype=np.uint8) if mask.dtype != np.uint8 else np.asfortranarray(mask)
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def encode_many(masks: np.ndarray) -> list[dict]:
    """Binary masks [N, H, W] → N RLEs; one Fortran-ordered copy for the whole stack."""
    if len(masks) == 0:
        return []
    stack = np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8)
    rles = mask_utils.encode(stack)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def decode(rle: dict) -> np.ndarray:
    """RLE (str or bytes counts) → uint8 [H, W] mask."""
    return mask_utils.decode(_compressed(rle))


def _compressed(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        h, w = rle["size"]
        return mask_utils.frPyObjects(rle, h, w)
    if isinstance(counts, str):
        return {"size": rle["size"], "counts": counts.encode("ascii")}
    return rle


def segmentation_to_rle(segm: Any, height: int, width: int) -> dict:
    """A COCO ``segmentation`` (polygons, list-counts RLE or compressed RLE) → compressed RLE."""
    if isinstance(segm, list):  # polygons: list of flat [x0, y0, x1, y1, ...]
        rles = mask_utils.frPyObjects(segm, height, width)
        rle = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
    else:
        rle = _compressed(segm)
    if isinstance(rle["counts"], bytes):
        rle = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    return rle


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE."""
    return int(mask_utils.area(_compressed(rle)))


def rle_to_bbox(rle: dict) -> list[float]:
    """Tight [x, y, w, h] box of an RLE (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_compressed(rle))]
