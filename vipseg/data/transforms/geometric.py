"""Geometric stages as one affine map: resize, shear, translate, flip and crop.

Coordinates are continuous pixel-edge coordinates (pixel ``i`` covers ``[i, i + 1)``); every
stage is a 3×3 matrix acting on ``(x, y, 1)``. The training pipeline samples a
:class:`GeometryParams` once per sample, composes the stages into one source → output matrix
and warps only the source window that the output crop needs (see :mod:`.window`). The
straightforward reference (``benchmarks/data_pipeline_reference.py``) applies the same matrices
one stage at a time on full-size arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from vipseg.data.transforms.basic import fit_scale


@dataclass(frozen=True)
class GeometryParams:
    """One draw of the geometric stages for a source image of ``src_size`` (H, W).

    ``size``: resized canvas (H, W); ``shear``: (x, y) in degrees about the canvas centre;
    ``translate``: (x, y) integer pixels on the canvas; ``flip``: horizontal flip of the canvas;
    ``crop``: (x0, y0, w, h) window of the flipped canvas (w, h no larger than the canvas);
    ``pad_to``: output (H, W) after padding (the crop size) or None.
    """

    src_size: tuple[int, int]
    size: tuple[int, int]
    shear: tuple[float, float] = (0.0, 0.0)
    translate: tuple[int, int] = (0, 0)
    flip: bool = False
    crop: tuple[int, int, int, int] | None = None
    pad_to: tuple[int, int] | None = None

    @property
    def out_size(self) -> tuple[int, int]:
        """(H, W) of the output before padding."""
        if self.crop is None:
            return self.size
        return self.crop[3], self.crop[2]


def scale_matrix(src_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W) → (H', W'): x' = x · W'/W, y' = y · H'/H."""
    return np.diag([size[1] / src_size[1], size[0] / src_size[0], 1.0])


def shear_matrix(shear_deg: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Shear X then Y (degrees) about the centre of a canvas of ``size`` (H, W)."""
    tx, ty = math.tan(math.radians(shear_deg[0])), math.tan(math.radians(shear_deg[1]))
    cx, cy = size[1] / 2.0, size[0] / 2.0
    sx = np.array([[1.0, tx, -tx * cy], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sy = np.array([[1.0, 0.0, 0.0], [ty, 1.0, -ty * cx], [0.0, 0.0, 1.0]])
    return sy @ sx


def shift_matrix(dx: float, dy: float) -> np.ndarray:
    """Translation by (dx, dy) pixels."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def flip_matrix(width: int) -> np.ndarray:
    """Horizontal flip of a canvas ``width`` pixels wide: x → width − x."""
    return np.array([[-1.0, 0.0, float(width)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def compose(params: GeometryParams) -> np.ndarray:
    """The 3×3 source → output matrix of all geometric stages (pixel-edge coordinates)."""
    m = scale_matrix(params.src_size, params.size)
    if params.shear != (0.0, 0.0):
        m = shear_matrix(params.shear, params.size) @ m
    if params.translate != (0, 0):
        m = shift_matrix(*params.translate) @ m
    if params.flip:
        m = flip_matrix(params.size[1]) @ m
    if params.crop is not None:
        m = shift_matrix(-params.crop[0], -params.crop[1]) @ m
    return m


def valid_box(params: GeometryParams) -> tuple[int, int, int, int]:
    """Output pixels (x0, y0, x1, y1) whose content stayed on the canvas through the translation.

    Stages act on a canvas of fixed size: what the shear or the translation moves off the
    canvas is lost and the uncovered part is filled. The single composed warp reproduces that
    by filling the output outside this box (the shear needs no box: the resized image covers
    the whole canvas, so "outside the canvas" before the shear is "outside the source").
    """
    (nh, nw), (tx, ty) = params.size, params.translate
    rect = (float(max(0, tx)), float(max(0, ty)), float(min(nw, nw + tx)), float(min(nh, nh + ty)))
    m = np.eye(3)
    if params.flip:
        m = flip_matrix(nw) @ m
    if params.crop is not None:
        m = shift_matrix(-params.crop[0], -params.crop[1]) @ m
    x0, y0, x1, y1 = (int(round(v)) for v in map_box(m, rect))
    oh, ow = params.out_size
    return max(0, x0), max(0, y0), max(0, min(ow, x1)), max(0, min(oh, y1))


def to_cv2(m: np.ndarray, src_offset: tuple[float, float] = (0, 0),
           dst_offset: tuple[float, float] = (0, 0)) -> np.ndarray:
    """2×3 matrix for ``cv2.warpAffine`` (pixel-centre index coordinates).

    ``src_offset`` (x, y): the warped array starts at that source pixel; ``dst_offset``: the
    destination array starts at that output pixel.
    """
    centre = shift_matrix(-0.5, -0.5) @ shift_matrix(-dst_offset[0], -dst_offset[1]) @ m
    centre = centre @ shift_matrix(src_offset[0], src_offset[1]) @ shift_matrix(0.5, 0.5)
    return centre[:2]


def map_box(m: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of ``box``'s four corners mapped by ``m``."""
    x0, y0, x1, y1 = box
    pts = m @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1, 1, 1, 1]], dtype=np.float64)
    return float(pts[0].min()), float(pts[1].min()), float(pts[0].max()), float(pts[1].max())


def warp(array: np.ndarray, m: np.ndarray, out_size: tuple[int, int], *, nearest: bool,
         fill: tuple[int, ...] | int = 0, src_offset: tuple[float, float] = (0, 0),
         dst_offset: tuple[float, float] = (0, 0)) -> np.ndarray:
    """Warp ``array`` (image [h, w, 3] or mask [h, w] uint8) by ``m`` into ``out_size`` (H, W).

    Bilinear for images, nearest for masks; pixels from outside ``array`` get ``fill``.
    """
    if array.shape[0] == 0 or array.shape[1] == 0:  # nothing to read (e.g. a crop wholly off
        # the canvas): every output pixel comes from outside; cv2 refuses empty sources
        return np.full((out_size[0], out_size[1], *array.shape[2:]), fill, array.dtype)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if isinstance(fill, int):
        border = fill
    else:
        border = tuple(float(v) for v in fill)
    return cv2.warpAffine(array, to_cv2(m, src_offset, dst_offset), (out_size[1], out_size[0]),
                          flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


class GeometrySampler:
    """Draws :class:`GeometryParams` (the scale, shear, translate, flip and crop stages).

    Args:
        scales: [long, short] targets; one is chosen uniformly, the image is fit inside it
            keeping its aspect ratio.
        hflip_prob: probability of a horizontal flip.
        shear_max_degrees / shear_prob: X and Y shear are each applied with ``shear_prob``,
            angle uniform in ±max.
        translate_max_fraction / translate_prob: X and Y shifts each applied with
            ``translate_prob``, uniform in ±fraction of the canvas side (whole pixels).
        crop_size: (width, height) of the random crop, or None for the whole canvas; the
            output is padded to it when the canvas is smaller.
    """

    def __init__(self, scales: list[list[int]], hflip_prob: float = 0.5,
                 shear_max_degrees: float = 0.0, shear_prob: float = 0.0,
                 translate_max_fraction: float = 0.0, translate_prob: float = 0.0,
                 crop_size: tuple[int, int] | None = None) -> None:
        self.scales = [(max(s), min(s)) for s in scales]
        self.hflip_prob = hflip_prob
        self.shear = (shear_max_degrees, shear_prob)
        self.translate = (translate_max_fraction, translate_prob)
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))

    def sample(self, src_size: tuple[int, int], rng: np.random.Generator) -> GeometryParams:
        """Draw all stages for an image of ``src_size`` (H, W)."""
        h, w = src_size
        long_side, short_side = self.scales[int(rng.integers(len(self.scales)))]
        s = fit_scale(h, w, long_side, short_side)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        max_deg, p = self.shear
        shear = tuple(float(rng.uniform(-max_deg, max_deg)) if rng.random() < p else 0.0
                      for _ in range(2))
        frac, p = self.translate
        translate = tuple(int(round(rng.uniform(-frac, frac) * side)) if rng.random() < p else 0
                          for side in (size[1], size[0]))
        flip = bool(rng.random() < self.hflip_prob)
        params = GeometryParams(src_size, size, shear, translate, flip)  # type: ignore[arg-type]
        return self.recrop(params, rng)

    def recrop(self, params: GeometryParams, rng: np.random.Generator) -> GeometryParams:
        """``params`` with a new crop window drawn uniformly over the canvas."""
        if self.crop_size is None:
            return params
        size = params.size
        cw, ch = min(self.crop_size[0], size[1]), min(self.crop_size[1], size[0])
        x0 = int(rng.integers(size[1] - cw + 1))
        y0 = int(rng.integers(size[0] - ch + 1))
        return replace(params, crop=(x0, y0, cw, ch), pad_to=(self.crop_size[1], self.crop_size[0]))
