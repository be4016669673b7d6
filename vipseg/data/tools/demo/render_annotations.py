"""``vipseg data render``: paint an image behind every image entry of an existing COCO file.

Each annotated instance is painted as a person (textured jersey, shorts, skin, hair, shoes and
shading, laid out by height inside its box) over its mask, far instances first (by the bottom
of the box), on a rendered court; a ball is added where a hand-side spot is free. The ball only
covers background pixels, so it may be partly hidden behind a player.

Every output mask is the set of pixels painted for its instance and still visible (the owner
map), so masks are disjoint even when input masks overlap: a pixel in two input masks belongs
to the one painted last (nearer), the other is cut to what it still shows, and an instance
hidden entirely is dropped (its id is reported). ``bbox`` and ``area`` are recomputed from the
output masks, never copied from the input. Disjoint input masks come out unchanged.

Output (``out``): ``out/<stem>/<file_name>`` PNGs (sub-folders kept) and ``out/<stem>.json``
whose images are the input's, whose annotations are the input's (masks as above, category ids
mapped by name: ``human`` 1, ``ball`` 2, other names 3, 4, ...) plus one ``ball`` per image.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Callable

import cv2
import numpy as np

from vipseg.data.coco import CocoFile, load_coco
from vipseg.data.masks import decode, encode, rle_area, rle_to_bbox
from vipseg.utils.io import atomic_dir, atomic_write_bytes, atomic_write_json
from vipseg.data.tools.demo.court import random_camera, render_court
from vipseg.data.tools.demo.people import (HAIR, JERSEY, NUMBER, SHOES, SHORTS, SKIN, colour_parts,
                                           random_outfit, team_outfits)
from vipseg.data.tools.demo.scene import BALL, HUMAN, camera_effects, draw_ball, overlap, paste
from vipseg.data.tools.demo.writer import encode_png, image_rng, owner_to_rles
from vipseg.errors import DataError

# Body layout by relative height in the box (top = 0): (end of band, part label).
BANDS = ((0.04, HAIR), (0.13, SKIN), (0.45, JERSEY), (0.6, SHORTS), (0.93, SKIN), (1.01, SHOES))


def person_labels(mask: np.ndarray) -> np.ndarray:
    """Part labels uint8 [h, w] for a person mask crop [h, w] (nonzero = person).

    Bands by height give hair, face, jersey, shorts, legs and shoes; jersey-band pixels far
    from the body's centre column are arms (skin), and a small patch carries the number.
    """
    h, w = mask.shape
    t = (np.arange(h, dtype=np.float32) + 0.5) / h
    rows = np.select([t < end for end, _ in BANDS], [label for _, label in BANDS]).astype(np.uint8)
    lab = np.repeat(rows[:, None], w, axis=1)
    ys, xs = np.nonzero(mask)
    body = xs[(ys >= 0.15 * h) & (ys < 0.45 * h)]
    cx = float(np.median(body)) if len(body) else w / 2
    half = 0.11 * h
    cols = np.abs(np.arange(w) - cx) > half
    lab[:, cols] = np.where(lab[:, cols] == JERSEY, SKIN, lab[:, cols])
    y0, y1 = int(0.2 * h), int(0.3 * h)
    x0, x1 = int(cx - 0.03 * h), int(np.ceil(cx + 0.03 * h))
    if y1 > y0 and x1 > x0:
        patch = lab[y0:y1, max(0, x0):max(0, x1)]
        patch[patch == JERSEY] = NUMBER
    lab[mask == 0] = 0
    return lab


def _category_map(coco: CocoFile) -> tuple[dict[int, int], list[dict]]:
    """Input category id -> output id (human 1, ball 2, others 3...) and output categories."""
    out = [{"id": HUMAN, "name": "human"}, {"id": BALL, "name": "ball"}]
    mapping = {}
    for c in coco.categories:
        if c["name"] in ("human", "ball"):
            mapping[c["id"]] = HUMAN if c["name"] == "human" else BALL
        else:
            out.append({"id": len(out) + 1, "name": c["name"]})
            mapping[c["id"]] = len(out)
    return mapping, out


def _safe_relpath(coco: CocoFile, name: str) -> PurePosixPath:
    """``file_name`` as a relative path that stays inside the output folder."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataError(f"{coco.path}: image file_name {name!r} must be a relative path without '..'")
    return p


def _add_ball(rng: np.random.Generator, canvas: np.ndarray, owner: np.ndarray,
              boxes: list[list[float]], index: int) -> None:
    """Paint a ball as instance ``index`` beside a person's hand (or above them) on background
    pixels only; nothing when no spot of a few tries shows at least half of it."""
    h, w = owner.shape
    for _ in range(12):
        x, y, bw, bh = boxes[rng.integers(len(boxes))]
        d = max(3.0, 0.065 * bh * rng.uniform(0.9, 1.1))
        if rng.random() < 0.75:  # at a hand: beside the box at chest height
            cx = x - 0.3 * d if rng.random() < 0.5 else x + bw + 0.3 * d
            cy = y + bh * rng.uniform(0.3, 0.55)
        else:  # in the air above the person
            cx, cy = x + bw * rng.uniform(0.0, 1.0), y - bh * rng.uniform(0.1, 0.8)
        lab, rgb = draw_ball(rng, d)
        top_left = (int(round(cx - lab.shape[1] / 2)), int(round(cy - lab.shape[0] / 2)))
        sl = overlap(top_left, lab.shape, owner.shape)
        if sl is None:
            continue
        dst, src = sl
        visible = np.zeros_like(lab)
        visible[src] = lab[src] * (owner[dst] == 0)
        if visible.sum() >= 0.5 * lab.sum():
            paste(canvas, owner, rgb, visible, top_left, index)
            return


def render_image(rng: np.random.Generator, size: tuple[int, int], masks: list[np.ndarray],
                 is_ball: list[bool], add_ball: bool) -> tuple[np.ndarray, np.ndarray]:
    """Render one image of ``size`` (width, height) behind the given full-size masks.

    Returns (uint8 RGB [H, W, 3], owner map int32 [H, W]): the owner map holds ``k + 1`` where
    ``masks[k]`` was painted and is still visible, ``len(masks) + 1`` for the added ball and 0
    for the background. Masks are painted far first (by the bottom of their box, ties in input
    order), people as players of two teams or referees.
    """
    camera = random_camera(rng, size)
    canvas = render_court(rng, camera)
    owner = np.zeros((size[1], size[0]), np.int32)
    teams = team_outfits(rng)
    boxes = [rle_to_bbox(encode(m)) for m in masks]
    order = sorted(range(len(masks)), key=lambda k: boxes[k][1] + boxes[k][3])
    for k in order:
        x, y, bw, bh = (int(v) for v in boxes[k])
        if bw == 0 or bh == 0:
            continue
        crop = masks[k][y:y + bh, x:x + bw]
        if is_ball[k]:
            _, rgb = draw_ball(rng, max(bw, bh))
            rgb = cv2.resize(rgb, (bw, bh), interpolation=cv2.INTER_LINEAR)
            lab = (crop > 0).astype(np.uint8)
        else:
            referee = rng.random() < 0.1
            lab = person_labels(crop)
            rgb = colour_parts(rng, lab, random_outfit(rng, int(rng.integers(2)), teams, referee))
        paste(canvas, owner, rgb, lab, (x, y), k + 1)
    human_boxes = [boxes[k] for k in range(len(masks)) if not is_ball[k] and boxes[k][3] > 0]
    if add_ball and human_boxes:
        _add_ball(rng, canvas, owner, human_boxes, len(masks) + 1)
    return camera_effects(rng, canvas), owner


def render_annotations(ann_file: str | Path, out: str | Path, seed: int = 0, force: bool = False,
                       progress: Callable[[str], None] | None = None) -> dict:
    """Render every image of ``ann_file`` into ``out`` (layout in the module docstring).

    Returns ``images``, ``annotations`` (input instances written), ``cut`` (how many of those
    lost pixels to instances painted over them), ``dropped`` (ids of input instances with no
    visible pixel left, not written) and ``balls`` (added).
    """
    coco = load_coco(ann_file)
    rels = [_safe_relpath(coco, img["file_name"]) for img in coco.images]  # before any write
    mapping, categories = _category_map(coco)
    stem = Path(ann_file).stem
    anns_out: list[dict] = []
    ids = [a["id"] for a in coco.annotations]
    next_id = max([i for i in ids if isinstance(i, int)], default=0) + 1
    balls, cut, dropped = 0, 0, []
    with atomic_dir(out, force, command="data render", inputs=[ann_file]) as tmp:
        for i, (img, rel) in enumerate(zip(coco.images, rels)):
            anns = coco.anns_by_image.get(img["id"], [])
            rles_in = [coco.rle(a) for a in anns]
            is_ball = [mapping[a["category_id"]] == BALL for a in anns]
            image, owner = render_image(image_rng(seed, "render", i), (img["width"], img["height"]),
                                        [decode(r) for r in rles_in], is_ball,
                                        add_ball=not any(is_ball))
            atomic_write_bytes(tmp / stem / rel, encode_png(image))
            *visible, ball = owner_to_rles(owner, len(anns) + 1)
            for a, rle_in, rle in zip(anns, rles_in, visible):
                if rle is None:
                    dropped.append(a["id"])
                    continue
                cut += rle != rle_in
                anns_out.append({**a, "category_id": mapping[a["category_id"]],
                                 **_mask_fields(rle)})
            if ball is not None:
                anns_out.append({"id": next_id, "image_id": img["id"], "category_id": BALL,
                                 **_mask_fields(ball), "iscrowd": 0})
                next_id += 1
                balls += 1
            if progress:
                progress(f"{stem}: {i + 1}/{len(coco.images)}")
        atomic_write_json(tmp / f"{stem}.json", {"images": coco.images, "annotations": anns_out,
                                                 "categories": categories})
    return {"images": len(coco.images), "annotations": len(coco.annotations) - len(dropped),
            "cut": cut, "dropped": dropped, "balls": balls}


def _mask_fields(rle: dict) -> dict:
    """``segmentation``, ``area`` and ``bbox`` of an annotation, all from its RLE."""
    return {"segmentation": rle, "area": rle_area(rle), "bbox": rle_to_bbox(rle)}
