"""Copy-paste from the object bank written by ``vipseg data extract-objects``.

A bank folder holds ``index.json`` (see docs/architecture.md, "Object bank") and the RGB / mask
PNG crops it names. :class:`CopyPaste` plans the pastes of one sample in source pixels: for each
class a count uniform in 0..max, objects drawn with replacement, each with its own scale jitter
and light brightness/contrast change; players stand (bottom centre of the crop) on a point of
the estimated court floor (:mod:`.court`), or anywhere when no floor is found. With
``occlusion_prob`` an object is placed overlapping the previous one, slightly lower (nearer the
camera, hence in front); with ``ball_at_hand_prob`` a ball is added at a pasted player's hand.
With ``ball_in_next_human`` (the reference's pairing) a drawn ball is centred inside the box of
the human drawn after it. An image that names its court side (:func:`image_side`) gets its
anchors on that side only; ``prob`` is the chance that an image gets pastes at all. The
reference's "hard paste" is ``scale_jitter`` (1, 1), no brightness/contrast change, no
occlusion or ball-at-hand pastes.

Occlusion is exact: pieces are stacked in order (original instances, then pastes); each paste
removes its pixels from every piece below it (:func:`occlude`), and a piece that lost pixels is
dropped when less than ``min_visible_fraction`` of it or fewer than ``min_visible_area`` pixels
remain.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vipseg.data.coco import read_json
from vipseg.data.masks import decode
from vipseg.data.transforms.court import estimate_court, whole_image, within_box
from vipseg.data.transforms.photometric import adjust_brightness_contrast
from vipseg.data.transforms.window import Piece, boxes_intersect
from vipseg.errors import DataError


@dataclass(frozen=True)
class Paste:
    """One planned paste: bank object ``obj`` scaled to ``size`` (h, w) with its top-left at
    (x, y) source pixels, then ``brightness`` added and ``contrast`` applied."""

    obj: int
    label: int
    x: int
    y: int
    size: tuple[int, int]
    brightness: float = 0.0
    contrast: float = 1.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.size[1], self.y + self.size[0]


class ObjectBank:
    """The objects of an ``extract-objects`` folder, labelled by ``classes`` (category names).

    Objects whose category is not in ``classes`` are ignored; with ``classes`` None the bank's
    own category order gives the labels. Crops are read lazily and cached (``cache_size``).
    """

    def __init__(self, folder: str | Path, classes: Sequence[str] | None = None,
                 cache_size: int = 512) -> None:
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.is_file():
            raise DataError(f"{index}: object bank index not found "
                            "(write it with `vipseg data extract-objects`)")
        data = read_json(index)  # the one JSON loader (duplicate keys refused)
        if not isinstance(data, dict):
            raise DataError(f"{index}: not an object bank index (expected a JSON object)")
        names = [c["name"] for c in data.get("categories", [])]
        self.classes = list(classes) if classes is not None else names
        self.objects: list[dict] = []
        for obj in data.get("objects", []):
            name = obj.get("category")
            if name not in self.classes:
                continue
            if "crop" not in obj or "mask" not in obj or "bbox" not in obj:
                raise DataError(f"{index}: object {obj.get('id')} lacks 'crop', 'mask' or 'bbox'")
            self.objects.append(obj)
        self.labels = np.array([self.classes.index(o["category"]) for o in self.objects], np.int64)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.objects)

    def of_label(self, label: int) -> np.ndarray:
        """Indices of the objects of ``label``."""
        return np.flatnonzero(self.labels == label)

    def crop_size(self, i: int) -> tuple[int, int]:
        """(h, w) of object ``i``'s crop."""
        _, _, w, h = self.objects[i]["bbox"]
        return int(h), int(w)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Object ``i`` as (RGB uint8 [h, w, 3], mask bool [h, w])."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        obj = self.objects[i]
        path = self.folder / obj["crop"]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{path}: object crop missing or unreadable")
        mask = decode(obj["mask"]).astype(bool)
        if mask.shape != bgr.shape[:2]:
            raise DataError(f"{path}: crop is {bgr.shape[1]}x{bgr.shape[0]}, its mask "
                            f"{mask.shape[1]}x{mask.shape[0]}")
        item = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), mask)
        self._cache[i] = item
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return item

    def render(self, paste: Paste) -> tuple[np.ndarray, np.ndarray]:
        """The pixels and mask of ``paste``: (RGB uint8 [h, w, 3], bool [h, w]), h, w = size."""
        rgb, mask = self.load(paste.obj)
        h, w = paste.size
        if (h, w) != mask.shape:
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return adjust_brightness_contrast(rgb, paste.brightness, paste.contrast), mask


def paste_pixels(image: np.ndarray, origin: tuple[int, int], x: int, y: int,
                 rgb: np.ndarray, mask: np.ndarray) -> None:
    """Write ``rgb`` where ``mask`` into ``image`` (in place); ``image`` starts at source pixel
    ``origin`` (x, y) and the paste at (x, y). Parts outside ``image`` are skipped."""
    h, w = image.shape[:2]
    x0, y0 = x - origin[0], y - origin[1]
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(w, x0 + mask.shape[1]), min(h, y0 + mask.shape[0])
    if ix1 <= ix0 or iy1 <= iy0:
        return
    sub_m = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    region = image[iy0:iy1, ix0:ix1]
    region[sub_m] = rgb[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0][sub_m]


def occlude(pieces: list[Piece], first_paste: int, min_visible_fraction: float,
            min_visible_area: int) -> list[Piece]:
    """Stack ``pieces`` in order (pastes from index ``first_paste`` on) and remove from each
    piece the pixels of every later paste; returns the survivors (masks changed in place)."""
    out = []
    for i, piece in enumerate(pieces):
        lost = False
        for top in pieces[max(i + 1, first_paste):]:
            if not boxes_intersect(piece.box, top.box):
                continue
            x0, y0 = max(piece.x, top.x), max(piece.y, top.y)
            x1 = min(piece.box[2], top.box[2])
            y1 = min(piece.box[3], top.box[3])
            cover = top.mask[y0 - top.y:y1 - top.y, x0 - top.x:x1 - top.x]
            if cover.any():
                if not lost:
                    piece.mask = piece.mask.copy()
                    lost = True
                piece.mask[y0 - piece.y:y1 - piece.y, x0 - piece.x:x1 - piece.x] &= ~cover
        if lost:
            area = int(piece.mask.sum())
            if area == 0 or area < min_visible_area or area < min_visible_fraction * piece.area0:
                continue
        out.append(piece)
    return out


SIDE_PATTERNS = {"id_suffix": (re.compile(r"_([01])$"), 0),
                 "camcourt": (re.compile(r"camcourt([12])"), 1)}


def image_side(image_id: object, file_name: str, rule: str) -> int | None:
    """Court side (0 or 1) an image shows under ``rule`` (see ``augment.copy_paste.side_rule``):
    "id_suffix": the image id ends in ``_0`` / ``_1``; "camcourt": the file name holds
    ``camcourt1`` / ``camcourt2``; "none" or no match: None."""
    if rule == "none":
        return None
    pattern, first = SIDE_PATTERNS[rule]
    found = pattern.search(str(image_id) if rule == "id_suffix" else str(file_name))
    return None if found is None else int(found.group(1)) - first


class CopyPaste:
    """Plans pastes for one image (see the module docstring).

    Args:
        bank: the objects. max_per_class: label → maximum count. scale_jitter: (low, high)
            factor on the bank size. brightness_delta / contrast_range: per-object light
            photometric change. court_aware: stand objects on the estimated floor.
        occlusion_prob: chance that an object overlaps the previous paste.
        ball_at_hand_prob, ball_label: chance of a ball at each pasted non-ball object's hand.
        prob: chance that an image gets pastes at all.
        ball_in_next_human: a drawn ball followed (in paste order) by a non-ball object is
            centred at a uniform point of that object's box and pasted just after it.
        side_rule: how an image names its court side (:func:`image_side`).
        side_boxes: per court side, (x0, y0, x1, y1) fractions of the image that anchors are
            drawn in when :meth:`plan` is given that side.
    """

    def __init__(self, bank: ObjectBank, max_per_class: dict[int, int],
                 scale_jitter: tuple[float, float] = (0.8, 1.2), brightness_delta: float = 16.0,
                 contrast_range: tuple[float, float] = (0.9, 1.1), court_aware: bool = True,
                 occlusion_prob: float = 0.0, ball_at_hand_prob: float = 0.0,
                 ball_label: int | None = None, min_visible_fraction: float = 0.1,
                 min_visible_area: int = 16, prob: float = 1.0, ball_in_next_human: bool = False,
                 side_rule: str = "none",
                 side_boxes: Sequence[Sequence[float]] = ((0.0, 0.0, 0.5, 1.0),
                                                         (0.5, 0.0, 1.0, 1.0))) -> None:
        self.bank = bank
        self.max_per_class = {k: v for k, v in max_per_class.items() if v > 0 and len(bank.of_label(k))}
        self.scale_jitter = tuple(scale_jitter)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.court_aware = court_aware
        self.occlusion_prob = occlusion_prob
        self.ball_label = ball_label if ball_label is not None and len(bank.of_label(ball_label)) else None
        self.ball_at_hand_prob = ball_at_hand_prob
        self.min_visible_fraction = min_visible_fraction
        self.min_visible_area = min_visible_area
        self.prob = prob
        self.ball_in_next_human = ball_in_next_human
        if side_rule != "none" and side_rule not in SIDE_PATTERNS:
            raise ValueError(f"side_rule must be 'none' or one of {sorted(SIDE_PATTERNS)}")
        self.side_rule = side_rule
        self.side_boxes = [tuple(float(v) for v in b) for b in side_boxes]

    def _paste(self, obj: int, anchor: np.ndarray, scale: float, rng: np.random.Generator,
               foot: bool) -> Paste:
        h, w = self.bank.crop_size(obj)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = int(round(anchor[0] - size[1] / 2))
        y = int(round(anchor[1] - (size[0] if foot else size[0] / 2)))
        return Paste(int(obj), int(self.bank.labels[obj]), x, y, size,
                     float(rng.uniform(-self.brightness_delta, self.brightness_delta)),
                     float(rng.uniform(*self.contrast_range)))

    def _hand(self, paste: Paste, rng: np.random.Generator) -> np.ndarray:
        """A point at the left or right edge of the object's mask, 45 % down its height."""
        mask = self.bank.load(paste.obj)[1]
        row = mask[int(0.45 * (mask.shape[0] - 1))]
        cols = np.flatnonzero(row) if row.any() else np.array([0, mask.shape[1] - 1])
        col = cols[0] if rng.random() < 0.5 else cols[-1]
        sx = paste.size[1] / mask.shape[1]
        return np.array([paste.x + (col + 0.5) * sx, paste.y + 0.45 * paste.size[0]])

    def plan(self, image: np.ndarray, rng: np.random.Generator,
             side: int | None = None) -> list[Paste]:
        """Pastes for ``image`` (RGB [H, W, 3]) in paste order (later ones are in front);
        ``side``: the court side the image shows (anchors inside ``side_boxes[side]``)."""
        h, w = image.shape[:2]
        if self.prob < 1.0 and rng.random() >= self.prob:
            return []
        order = []
        for label, most in self.max_per_class.items():
            choices = self.bank.of_label(label)
            order += list(rng.choice(choices, size=int(rng.integers(most + 1)), replace=True))
        if not order:
            return []
        rng.shuffle(order)
        region = estimate_court(image) if self.court_aware else whole_image((h, w))
        if side is not None:
            region = within_box(region, self.side_boxes[side])
        anchors = region.sample(rng, len(order))
        pastes: list[Paste] = []
        held = None  # a ball waiting for the next human's box (ball_in_next_human)
        for k, (obj, anchor) in enumerate(zip(order, anchors)):
            foot = self.bank.labels[obj] != self.ball_label
            scale = float(rng.uniform(*self.scale_jitter))
            if (not foot and self.ball_in_next_human and k + 1 < len(order)
                    and self.bank.labels[order[k + 1]] != self.ball_label):
                held = (obj, scale)
                continue
            if pastes and rng.random() < self.occlusion_prob:
                prev = pastes[-1]
                anchor = np.array([prev.x + prev.size[1] * rng.uniform(0.2, 0.8),
                                   prev.y + prev.size[0] * (rng.uniform(1.0, 1.25) if foot
                                                            else rng.uniform(0.3, 0.7))])
            paste = self._paste(obj, anchor, scale, rng, foot)
            pastes.append(paste)
            if held is not None:
                inside = np.array([paste.x + rng.uniform(0, paste.size[1]),
                                   paste.y + rng.uniform(0, paste.size[0])])
                pastes.append(self._paste(held[0], inside, held[1], rng, foot=False))
                held = None
            if foot and self.ball_label is not None and rng.random() < self.ball_at_hand_prob:
                ball = rng.choice(self.bank.of_label(self.ball_label))
                pastes.append(self._paste(ball, self._hand(paste, rng), scale, rng, foot=False))
        return pastes

    def pieces(self, pastes: list[Paste], src_size: tuple[int, int]) -> list[tuple[Piece, np.ndarray]]:
        """Render ``pastes`` clipped to an image of ``src_size`` (H, W): (piece with the exact
        mask, RGB [h, w, 3]) for each paste with pixels inside the image."""
        out = []
        for p in pastes:
            rgb, mask = self.bank.render(p)
            x0, y0 = max(0, p.x), max(0, p.y)
            x1, y1 = min(src_size[1], p.box[2]), min(src_size[0], p.box[3])
            if x1 <= x0 or y1 <= y0:
                continue
            sub = (slice(y0 - p.y, y1 - p.y), slice(x0 - p.x, x1 - p.x))
            mask = np.ascontiguousarray(mask[sub])
            area = int(mask.sum())
            if area:
                out.append((Piece(p.label, x0, y0, mask, area), rgb[sub]))
        return out
