"""Training augmentation pipeline built from ``cfg.augment``, fast at full resolution.

Stages, in order: copy-paste from the object bank (source pixels) → resize to a random scale
→ shear X/Y → translate X/Y (borders filled with ``fill``) → horizontal flip → random crop →
photometric distortion (on the crop; or on the source pixels before the resize with
``photometric_first``, mmdetection's order) → drop empty and too small instances → pad to the
crop size. Boxes are the tight pixel-edge boxes of the final masks; the masks leave the
pipeline packed box-local (``mask_boxes`` / ``mask_data``, :mod:`vipseg.utils.packed_masks`),
never as a full-image [N, H, W] stack.

Execution is "plan, then execute": :meth:`TrainTransform.sample` draws every parameter of a
sample (:class:`AugmentParams`); :meth:`TrainTransform.apply` executes them touching only kept
pixels. All geometric stages are one affine matrix, so only the source window that the crop
reads is copied, pasted into and warped once; instance masks are decoded from RLE box by box
and warped box by box into the output. The result has the distribution of "resize the whole
image, then crop" (``benchmarks/data_pipeline_reference.py`` is that straightforward version,
used by the tests and the benchmark).

Randomness: each call draws one 62-bit seed from torch's global generator and uses a
``numpy.random.Generator`` seeded with it for everything else. The trainer seeds torch, and a
``DataLoader`` seeds torch differently in each worker, so samples are reproducible for a seed
and differ between workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision import tv_tensors

from vipseg.config.schema import AugmentConfig, DatasetConfig
from vipseg.data.dataset import RawSample
from vipseg.data.transforms.copy_paste import (CopyPaste, ObjectBank, Paste, image_side, occlude,
                                               paste_pixels)
from vipseg.data.transforms.geometric import (GeometryParams, GeometrySampler, compose, map_box,
                                              valid_box, warp)
from vipseg.data.transforms.photometric import (PhotometricParams, PhotometricSampler,
                                                apply_photometric)
from vipseg.data.masks import rle_box
from vipseg.data.transforms.basic import full_masks_target, image_tensor, packed_target
from vipseg.data.transforms.window import Piece, boxes_intersect, piece_from_rle, source_window
from vipseg.errors import ConfigError
from vipseg.utils.packed_masks import crop_region, margin_box, pack_crops


@dataclass
class AugmentParams:
    """Everything drawn for one sample (see :class:`TrainTransform`)."""

    geometry: GeometryParams
    photometric: PhotometricParams | None = None
    pastes: list[Paste] = field(default_factory=list)


def make_sample(image: np.ndarray, labels: list[int], regions: list[tuple[int, int, np.ndarray]],
                out_size: tuple[int, int], image_id: object, orig_size: tuple[int, int],
                min_box_size: float) -> tuple[tv_tensors.Image, dict]:
    """Assemble the sample contract from an RGB image [H, W, 3] (already padded to
    ``out_size`` (H, W)) and per-instance ``regions`` (x0, y0, bool mask) in its pixels.

    Empty masks and boxes with a side below ``min_box_size`` are dropped. Each kept mask is
    packed as its tight box widened by one pixel (clipped to the image): ``mask_boxes`` int64
    [N, 4] and ``mask_data`` uint8 [sum of crop areas] (:mod:`vipseg.utils.packed_masks`).
    """
    keep_labels, boxes, crop_boxes, crops = [], [], [], []
    for label, (x0, y0, m) in zip(labels, regions):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows) == 0:
            continue
        box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
        if box[2] - box[0] < min_box_size or box[3] - box[1] < min_box_size:
            continue
        keep_labels.append(label)
        boxes.append(box)
        crop_boxes.append(margin_box(box, out_size))
        crops.append(crop_region(x0, y0, m, crop_boxes[-1]))
    mask_data, mask_boxes = pack_crops(crop_boxes, crops)
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format="XYXY", canvas_size=tuple(out_size)),
        "labels": torch.tensor(keep_labels, dtype=torch.int64),
        "mask_boxes": mask_boxes,
        "mask_data": mask_data,
        "image_id": image_id,
        "orig_size": tuple(orig_size),
    }
    return image_tensor(image), target


def pad_image(image: np.ndarray, size: tuple[int, int] | None, fill: Sequence[int]) -> np.ndarray:
    """Pad an RGB image [h, w, 3] at the bottom and right to ``size`` (H, W) with ``fill``."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    out = np.empty((size[0], size[1], 3), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    out[:image.shape[0], :image.shape[1]] = image
    return out


class TrainTransform:
    """``RawSample -> (image, target)`` with the stages of the module docstring.

    Args:
        geometry: draws resize/shear/translate/flip/crop. photometric: draws the colour
            distortion (None: off). copy_paste: plans pastes (None: off).
        min_box_size: drop instances whose box width or height is below this (pixels).
        allow_empty_crop: if False, redraw the crop (up to ``crop_attempts`` times) until it
            overlaps an instance box.
        fill: RGB colour of shear/translate borders and padding.
        photometric_first: distort the source pixels (after copy-paste) before the geometric
            stages, as mmdetection's pipeline does, instead of the final crop.
        extra: callables ``(image, target) -> (image, target)`` applied in order to the final
            sample by :meth:`__call__`, e.g. any ``torchvision.transforms.v2`` transform. They
            see full ``masks`` (``tv_tensors.Mask`` [N, H, W]), packed again after the last
            one (so only samples of pipelines with ``extra`` ever hold full masks).
    """

    def __init__(self, geometry: GeometrySampler, photometric: PhotometricSampler | None = None,
                 copy_paste: CopyPaste | None = None, min_box_size: float = 2.0,
                 allow_empty_crop: bool = True, fill: Sequence[int] = (124, 116, 104),
                 crop_attempts: int = 10, extra: Sequence[Callable] = (),
                 photometric_first: bool = False) -> None:
        self.geometry = geometry
        self.photometric = photometric
        self.copy_paste = copy_paste
        self.min_box_size = min_box_size
        self.allow_empty_crop = allow_empty_crop
        self.fill = tuple(int(round(v)) for v in fill)
        self.crop_attempts = crop_attempts
        self.extra = list(extra)
        self.photometric_first = photometric_first

    def sample(self, raw: RawSample, rng: np.random.Generator) -> AugmentParams:
        """Draw all parameters for ``raw`` (reads only a subsampled copy of its image)."""
        image = raw["image"]
        geometry = self.geometry.sample(image.shape[:2], rng)
        pastes = []
        if self.copy_paste is not None:
            side = image_side(raw["image_id"], raw.get("file_name", ""), self.copy_paste.side_rule)
            pastes = self.copy_paste.plan(image, rng, side)
        boxes = [tuple(b) for b in np.asarray(raw["boxes"]).reshape(-1, 4)] + [p.box for p in pastes]
        if not self.allow_empty_crop and boxes and geometry.crop is not None:
            for _ in range(self.crop_attempts):
                m = compose(geometry)
                out = (0.0, 0.0, float(geometry.out_size[1]), float(geometry.out_size[0]))
                if any(boxes_intersect(map_box(m, b), out) for b in boxes):
                    break
                geometry = self.geometry.recrop(geometry, rng)
        photometric = self.photometric.sample(rng) if self.photometric is not None else None
        return AugmentParams(geometry, photometric, pastes)

    def apply(self, raw: RawSample, params: AugmentParams) -> tuple[tv_tensors.Image, dict]:
        """Execute ``params`` on ``raw`` reading only the source window the output needs."""
        image = raw["image"]
        src_size = image.shape[:2]
        g = params.geometry
        m = compose(g)
        out_size = g.out_size
        win = source_window(m, out_size, src_size)
        window = image[win[1]:win[3], win[0]:win[2]]
        pieces: list[Piece] = []
        for rle, label in zip(raw["rles"], raw["labels"]):
            if boxes_intersect(rle_box(rle), win):
                piece = piece_from_rle(rle, int(label))
                if piece is not None:
                    pieces.append(piece)
        n_orig = len(pieces)
        if params.pastes:
            rendered = self.copy_paste.pieces(params.pastes, src_size)  # type: ignore[union-attr]
            window = window.copy()
            for piece, rgb in rendered:
                paste_pixels(window, win[:2], piece.x, piece.y, rgb, piece.mask)
            cp = self.copy_paste
            pieces = occlude(pieces + [p for p, _ in rendered], n_orig,
                             cp.min_visible_fraction, cp.min_visible_area)  # type: ignore[union-attr]
        if params.photometric is not None and self.photometric_first:
            window = apply_photometric(np.ascontiguousarray(window), params.photometric)
        out = warp(np.ascontiguousarray(window), m, out_size, nearest=False, fill=self.fill,
                   src_offset=win[:2])
        vx0, vy0, vx1, vy1 = valid_box(g)
        if (vx0, vy0, vx1, vy1) != (0, 0, out_size[1], out_size[0]):
            kept = out[vy0:vy1, vx0:vx1].copy()
            out[:] = self.fill
            out[vy0:vy1, vx0:vx1] = kept
        labels, regions = [], []
        for piece in pieces:
            bx0, by0, bx1, by1 = map_box(m, piece.box)
            x0, y0 = max(vx0, math.floor(bx0)), max(vy0, math.floor(by0))
            x1, y1 = min(vx1, math.ceil(bx1)), min(vy1, math.ceil(by1))
            if x1 <= x0 or y1 <= y0:
                continue
            region = warp(piece.mask.view(np.uint8), m, (y1 - y0, x1 - x0), nearest=True,
                          src_offset=(piece.x, piece.y), dst_offset=(x0, y0))
            labels.append(piece.label)
            regions.append((x0, y0, region.view(bool)))
        if params.photometric is not None and not self.photometric_first:
            out = apply_photometric(out, params.photometric)
        final = g.pad_to or out_size
        return make_sample(pad_image(out, g.pad_to, self.fill), labels, regions, final,
                           raw["image_id"], raw["orig_size"], self.min_box_size)

    def __call__(self, raw: RawSample) -> tuple[tv_tensors.Image, dict]:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        image, target = self.apply(raw, self.sample(raw, np.random.default_rng(seed)))
        if self.extra:
            target = full_masks_target(target, tuple(image.shape[-2:]))
            for transform in self.extra:
                image, target = transform(image, target)
            target = packed_target(target)
        return image, target


def build_copy_paste(augment: AugmentConfig, root: str, classes: Sequence[str] | None) -> CopyPaste | None:
    """``augment.copy_paste`` → :class:`CopyPaste` (None when disabled); bank under ``root``."""
    cfg = augment.copy_paste
    if not cfg.enabled:
        return None
    if not cfg.bank:
        raise ConfigError("augment.copy_paste.bank must name the object bank folder when enabled")
    bank = ObjectBank(Path(root) / cfg.bank, classes)
    unknown = [name for name in cfg.max_per_class if name not in bank.classes]
    if unknown:
        raise ConfigError(f"augment.copy_paste.max_per_class: unknown classes {unknown} "
                          f"(classes are {bank.classes})")
    ball = bank.classes.index(cfg.ball_class) if cfg.ball_class in bank.classes else None
    return CopyPaste(bank, {bank.classes.index(k): v for k, v in cfg.max_per_class.items()},
                     scale_jitter=tuple(cfg.scale_jitter), brightness_delta=cfg.brightness_delta,
                     contrast_range=tuple(cfg.contrast_range), court_aware=cfg.court_aware,
                     occlusion_prob=cfg.occlusion_prob, ball_at_hand_prob=cfg.ball_at_hand_prob,
                     ball_label=ball, min_visible_fraction=cfg.min_visible_fraction,
                     min_visible_area=cfg.min_visible_area, prob=cfg.prob,
                     ball_in_next_human=cfg.ball_in_next_human, side_rule=cfg.side_rule,
                     side_boxes=cfg.side_boxes)


def build_train_transform(augment: AugmentConfig, root: str = "",
                          classes: Sequence[str] | None = None,
                          mean: Sequence[float] = tuple(DatasetConfig().mean),
                          extra: Sequence[Callable] = ()) -> TrainTransform:
    """Map ``cfg.augment`` onto the training transform (``augment`` is validated first).

    ``root``: dataset root (the object bank path is relative to it); ``classes``: label order
    (``cfg.dataset.classes``) used to label pasted objects; ``mean``: ``cfg.dataset.mean``, the
    fill colour when ``augment.fill`` is null; ``extra``: transforms applied to the final sample
    (see :class:`TrainTransform`).
    """
    augment.validate()
    geo = augment.geometric
    geometry = GeometrySampler(augment.scales, augment.hflip_prob, geo.shear_max_degrees,
                               geo.shear_prob, geo.translate_max_fraction, geo.translate_prob,
                               augment.crop_size)
    photometric, first = None, False
    if augment.photometric is not None:
        p = augment.photometric
        photometric = PhotometricSampler(p.prob, p.brightness_delta, tuple(p.contrast_range),
                                         tuple(p.saturation_range), p.hue_delta, p.channel_swap_prob)
        first = p.before_geometric
    return TrainTransform(geometry, photometric, build_copy_paste(augment, root, classes),
                          augment.min_box_size, augment.allow_empty_crop,
                          mean if augment.fill is None else augment.fill, extra=extra,
                          photometric_first=first)
