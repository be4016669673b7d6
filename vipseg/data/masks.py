"""Mask codecs: COCO RLE ↔ binary arrays ↔ polygons, kept compact until needed.

RLE dicts use string ``counts`` and ``size`` = [height, width]. Binary masks are uint8 [H, W]
arrays with values 0/1.
"""

from __future__ import annotations

from typing import Any

import cv2
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


# --- run-length helpers that avoid decoding whole images -----------------------------------------

#: a run length takes at most this many characters of a counts string (35 bits).
_MAX_RUN_CHARS = 7


def rle_counts(rle: dict) -> np.ndarray:
    """Uncompressed run lengths (int64, column-major, first run = zeros) of any RLE.

    Raises ``ValueError`` for a counts string that is not pycocotools' encoding (characters
    outside '0'..'o', a number cut off at the end or longer than 7 characters).
    """
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    s = counts.encode("utf-8") if isinstance(counts, str) else bytes(counts)
    b = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if len(b) == 0:
        return np.zeros(0, np.int64)
    if b.min() < 0 or b.max() > 63:
        raise ValueError("characters outside '0'..'o' in the counts string")
    # pycocotools' LEB128-like string: 5 bits per char, 0x20 = "more", 0x10 on the last = sign.
    last = np.nonzero((b & 0x20) == 0)[0]
    if len(last) == 0 or last[-1] != len(b) - 1:
        raise ValueError("the counts string ends in the middle of a number")
    first = np.concatenate([[0], last[:-1] + 1])
    if (last - first).max() >= _MAX_RUN_CHARS:
        raise ValueError(f"a number longer than {_MAX_RUN_CHARS} characters in the counts string")
    pos = np.arange(len(b)) - np.repeat(first, last - first + 1)
    x = np.add.reduceat((b & 0x1F) << (5 * pos), first)
    neg = (b[last] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * (last - first + 1)[neg])
    # from the 4th value on, each is a delta to the value two places before.
    out = x.copy()
    out[3::2] = np.cumsum(x[1::2])[1:]
    out[4::2] = np.cumsum(x[2::2])[1:]
    return out


def rle_box(rle: dict) -> tuple[int, int, int, int]:
    """Integer pixel box (x0, y0, x1, y1), exclusive ends, of an RLE; (0, 0, 0, 0) if empty."""
    x, y, w, h = mask_utils.toBbox(_compressed(rle))
    if w <= 0 or h <= 0:
        return (0, 0, 0, 0)
    return (int(x), int(y), int(x + w), int(y + h))


def decode_crop(rle: dict, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The ``box`` = (x0, y0, x1, y1) window (default: the tight box) of an RLE as uint8 0/1,
    without decoding the whole image (cost ~ box width × image height)."""
    h, w = (int(v) for v in rle["size"])
    if box is None:
        box = rle_box(rle)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.uint8)
    counts = rle_counts(rle)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo, hi = x0 * h, x1 * h
    keep = (ends > lo) & (starts < hi)
    lengths = np.clip(ends[keep], lo, hi) - np.clip(starts[keep], lo, hi)
    values = (np.nonzero(keep)[0] % 2).astype(np.uint8)  # runs alternate 0, 1, 0, ...
    cols = np.repeat(values, lengths).reshape(x1 - x0, h).T
    return np.ascontiguousarray(cols[y0:y1])


def count_components(rle: dict, connectivity: int = 8) -> int:
    """Number of connected parts of an RLE mask (0 for an empty mask)."""
    crop = decode_crop(rle)
    if crop.size == 0 or not crop.any():
        return 0
    n, _ = cv2.connectedComponents(crop, connectivity=connectivity)
    return int(n) - 1


def rle_iou(a: dict, b: dict) -> float:
    """Mask IoU of two RLEs of the same size (1.0 when both are empty)."""
    ca, cb = _compressed(a), _compressed(b)
    if mask_utils.area(ca) == 0 and mask_utils.area(cb) == 0:
        return 1.0
    return float(mask_utils.iou([ca], [cb], [0])[0, 0])


# --- polygons -------------------------------------------------------------------------------------

def _ring(contour: np.ndarray, shift: np.ndarray, tolerance: float) -> np.ndarray:
    """A contour of the 2x-upsampled mask → the exact pixel-corner ring in source coordinates."""
    p = (contour.reshape(-1, 2).astype(np.int64) + 1) // 2 + shift
    if tolerance > 0 and len(p) > 3:
        p = cv2.approxPolyDP(p.reshape(-1, 1, 2).astype(np.int32), tolerance, True).reshape(-1, 2)
        p = p.astype(np.int64)
    keep = np.any(p != np.roll(p, 1, axis=0), axis=1)  # drop repeated points
    p = p[keep] if keep.any() else p[:1]
    if len(p) >= 3:  # drop middle points of straight runs (same direction only)
        a, b = p - np.roll(p, 1, axis=0), np.roll(p, -1, axis=0) - p
        cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        dot = (a * b).sum(axis=1)
        p = p[~((cross == 0) & (dot > 0))]
    return p


def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join a hole to its outer ring with a zero-width cut (even-odd fill keeps the hole)."""
    o = outer if len(outer) * len(hole) <= 4_000_000 else outer[:: max(1, len(outer) // 2000)]
    d = ((o[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, k = np.unravel_index(int(np.argmin(d)), d.shape)
    i = int(np.nonzero((outer == o[i]).all(axis=1))[0][0])
    hole_loop = np.concatenate([hole[k:], hole[: k + 1]])
    return np.concatenate([outer[: i + 1], hole_loop, outer[i:]])


def mask_to_polygons(mask: np.ndarray, offset: tuple[int, int] = (0, 0),
                     tolerance: float = 0.0) -> list[list[float]]:
    """Binary mask → COCO polygons, one per connected part (8-connectivity), holes kept.

    With ``tolerance`` 0 the polygons follow the pixel edges exactly, so rasterising them again
    (``segmentation_to_rle``) gives back the same mask. Holes are joined to their outer ring by
    a zero-width cut. ``offset`` (x, y) is added to every point (for crops). An empty mask gives
    ``[]``.
    """
    m = np.pad((np.asarray(mask) > 0).astype(np.uint8), 1)
    if not m.any():
        return []
    up = np.repeat(np.repeat(m, 2, axis=0), 2, axis=1)
    contours, hier = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hier is None:
        return []
    hier = hier[0]
    shift = np.array([offset[0] - 1, offset[1] - 1], np.int64)
    rings = [_ring(c, shift, tolerance) for c in contours]
    polygons = []
    for idx in range(len(contours)):
        if hier[idx][3] >= 0:
            continue  # a hole: joined to its parent below
        poly = rings[idx]
        child = hier[idx][2]
        while child >= 0:
            if len(rings[child]) >= 3:
                poly = _bridge(poly, rings[child])
            child = hier[child][0]
        if len(poly) >= 3:
            polygons.append([float(v) for v in poly.reshape(-1)])
    return polygons


def rle_to_polygons(rle: dict, tolerance: float = 0.0) -> list[list[float]]:
    """RLE → COCO polygons of every connected part (see :func:`mask_to_polygons`); only the
    mask's bounding box is decoded. ``[]`` for an empty mask."""
    x0, y0, x1, y1 = rle_box(rle)
    if x1 <= x0:
        return []
    return mask_to_polygons(decode_crop(rle, (x0, y0, x1, y1)), (x0, y0), tolerance)
