"""The straightforward training pipeline: decode every mask, paste, resize everything, then crop.

Executes the same :class:`vipseg.data.transforms.pipeline.AugmentParams` as
``TrainTransform.apply`` one stage at a time on full-size arrays: full-image masks, copy-paste
with full-image occlusion, ``cv2.resize`` of the image and of every mask, one full-canvas warp
for the shear, one for the translation, flip, crop, photometric (or photometric first, before
the resize, with ``photometric_first``), filter, pad. It is the yardstick
of ``benchmarks/data_pipeline.py`` and the tests' check that the fast path gives the same
geometry (it is not used in training).
"""

from __future__ import annotations

import cv2
import numpy as np
from torchvision import tv_tensors

from vipseg.data.masks import decode
from vipseg.data.transforms.copy_paste import paste_pixels
from vipseg.data.transforms.geometric import shear_matrix, shift_matrix, warp
from vipseg.data.transforms.photometric import apply_photometric
from vipseg.data.transforms.pipeline import AugmentParams, TrainTransform, make_sample, pad_image


def reference_apply(transform: TrainTransform, raw: dict,
                    params: AugmentParams) -> tuple[tv_tensors.Image, dict]:
    """Execute ``params`` on ``raw`` stage by stage at full size; same output contract."""
    image = raw["image"].copy()
    h, w = image.shape[:2]
    masks = [decode(r).astype(bool) for r in raw["rles"]]
    labels = [int(v) for v in raw["labels"]]
    if params.pastes:
        cp = transform.copy_paste
        area0 = [int(m.sum()) for m in masks]
        lost = [False] * len(masks)
        for piece, rgb in cp.pieces(params.pastes, (h, w)):  # type: ignore[union-attr]
            paste_pixels(image, (0, 0), piece.x, piece.y, rgb, piece.mask)
            top = np.zeros((h, w), bool)
            paste_pixels(top[..., None], (0, 0), piece.x, piece.y, piece.mask[..., None], piece.mask)
            x0, y0 = max(0, piece.x), max(0, piece.y)
            x1, y1 = piece.x + piece.mask.shape[1], piece.y + piece.mask.shape[0]
            for k, m in enumerate(masks):  # only the paste's box can change
                cover = m[y0:y1, x0:x1] & top[y0:y1, x0:x1]
                if cover.any():
                    m[y0:y1, x0:x1] &= ~cover
                    lost[k] = True
            masks.append(top)
            labels.append(piece.label)
            area0.append(int(top.sum()))
            lost.append(False)
        area = [int(m.sum()) for m in masks]
        keep = [k for k in range(len(masks)) if not lost[k] or (
            area[k] > 0 and area[k] >= cp.min_visible_area  # type: ignore[union-attr]
            and area[k] >= cp.min_visible_fraction * area0[k])]  # type: ignore[union-attr]
        masks, labels = [masks[k] for k in keep], [labels[k] for k in keep]
    first = transform.photometric_first and params.photometric is not None
    if first:  # mmdetection's order: colour on the whole (pasted) image, then geometry
        image = apply_photometric(image, params.photometric)  # type: ignore[arg-type]
    g = params.geometry
    nh, nw = g.size
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    masks = [cv2.resize(m.view(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT) for m in masks]
    if g.shear != (0.0, 0.0):
        sm = shear_matrix(g.shear, g.size)
        image = warp(image, sm, g.size, nearest=False, fill=transform.fill)
        masks = [warp(m, sm, g.size, nearest=True) for m in masks]
    if g.translate != (0, 0):
        tm = shift_matrix(*g.translate)
        image = warp(image, tm, g.size, nearest=False, fill=transform.fill)
        masks = [warp(m, tm, g.size, nearest=True) for m in masks]
    if g.flip:
        image = image[:, ::-1]
        masks = [m[:, ::-1] for m in masks]
    if g.crop is not None:
        x0, y0, cw, ch = g.crop
        image = image[y0:y0 + ch, x0:x0 + cw]
        masks = [m[y0:y0 + ch, x0:x0 + cw] for m in masks]
    image = np.ascontiguousarray(image)
    if params.photometric is not None and not first:
        image = apply_photometric(image, params.photometric)
    regions = [(0, 0, np.ascontiguousarray(m).view(bool)) for m in masks]
    return make_sample(pad_image(image, g.pad_to, transform.fill), labels, regions,
                       g.pad_to or g.out_size, raw["image_id"], raw["orig_size"],
                       transform.min_box_size)
