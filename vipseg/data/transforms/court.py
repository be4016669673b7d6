"""Court floor estimate: where pasted players may stand.

The floor of a sports hall is the largest region of one colour in the lower part of the frame.
:func:`estimate_court` works on a subsampled copy (long side ~``work_size`` pixels, strided, so
it reads a few thousand pixels): it finds the dominant chroma (Lab a, b) of the lower two
thirds, keeps the pixels close to it (lightness may vary more: lighting changes it most), takes
the largest connected component and fills it (convex hull, so the players standing on it are
inside). When that component is too small the whole image is used instead; sampling points
from the result never loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class CourtRegion:
    """Allowed anchor points: ``mask`` bool [h, w] on a grid of ``stride`` source pixels.

    ``found`` is False when no floor was detected and the mask covers the whole image.
    """

    mask: np.ndarray
    stride: int
    src_size: tuple[int, int]
    found: bool
    # (x0, y0, x1, y1) source pixels that sampled points are clipped to (None: the image).
    clip: tuple[float, float, float, float] | None = None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random (x, y) source-pixel points inside the region, float [n, 2]."""
        flat = np.flatnonzero(self.mask)
        cells = flat[rng.integers(len(flat), size=n)]
        ys, xs = np.divmod(cells, self.mask.shape[1])
        pts = (np.stack([xs, ys], 1) + rng.random((n, 2))) * self.stride
        pts = np.minimum(pts, [self.src_size[1] - 1, self.src_size[0] - 1])
        if self.clip is not None:
            x0, y0, x1, y1 = self.clip
            pts = np.clip(pts, [x0, y0], [np.nextafter(x1, x0), np.nextafter(y1, y0)])
        return pts


def within_box(region: CourtRegion, box: tuple[float, float, float, float],
               work_size: int = 160) -> CourtRegion:
    """``region`` limited to ``box`` (x0, y0, x1, y1 as fractions of the image width/height).

    Used for the court side named by an image: its points are the region's cells inside the
    box (the whole box when the two do not meet), clipped to the box exactly.
    """
    h, w = region.src_size
    clip = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
    stride = region.stride if region.found else max(1, max(h, w) // work_size)
    gh, gw = -(-h // stride), -(-w // stride)
    cx, cy = (np.arange(gw) + 0.5) * stride, (np.arange(gh) + 0.5) * stride
    inside = (((cy >= clip[1]) & (cy < clip[3]))[:, None]
              & ((cx >= clip[0]) & (cx < clip[2]))[None, :])
    if not inside.any():  # a box thinner than one cell: its nearest cell
        inside[min(gh - 1, int(clip[1] // stride)), min(gw - 1, int(clip[0] // stride))] = True
    mask = inside & region.mask if region.found else inside
    found = region.found and bool(mask.any())
    return CourtRegion(mask if found else inside, stride, (h, w), found, clip)


def whole_image(src_size: tuple[int, int]) -> CourtRegion:
    """A region covering the whole image (the fallback)."""
    return CourtRegion(np.ones((1, 1), bool), max(src_size), src_size, False)


def estimate_court(image: np.ndarray, work_size: int = 160, color_tol: float = 12.0,
                   min_fraction: float = 0.1) -> CourtRegion:
    """Estimate the floor region of an RGB uint8 image [H, W, 3].

    ``color_tol``: distance in Lab chroma (a, b) to the dominant colour still counted as floor
    (lightness may differ by 3× as much: lighting changes it most);
    ``min_fraction``: smallest component (fraction of the image) accepted as a court.
    """
    h, w = image.shape[:2]
    stride = max(1, max(h, w) // work_size)
    small = np.ascontiguousarray(image[::stride, ::stride])
    sh, sw = small.shape[:2]
    if sh < 4 or sw < 4:
        return whole_image((h, w))
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lower = lab[sh // 3:].reshape(-1, 3)
    bins = (lower[:, 1:] // 8).astype(np.int32)  # chroma (a, b) only: lighting changes L
    keys = bins[:, 0] * 32 + bins[:, 1]
    ref = lower[keys == np.bincount(keys).argmax()].mean(0)
    chroma = np.linalg.norm(lab[..., 1:] - ref[1:], axis=2)
    close = ((chroma < color_tol) & (np.abs(lab[..., 0] - ref[0]) < 3 * color_tol)).astype(np.uint8)
    close = cv2.morphologyEx(close, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(close, connectivity=4)
    if n <= 1:
        return whole_image((h, w))
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    if stats[best, cv2.CC_STAT_AREA] < min_fraction * sh * sw:
        return whole_image((h, w))
    contours, _ = cv2.findContours((labels == best).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    region = np.zeros((sh, sw), np.uint8)
    cv2.fillPoly(region, [cv2.convexHull(np.concatenate(contours))], 1)
    return CourtRegion(region.astype(bool), stride, (h, w), True)
