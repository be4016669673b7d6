"""Write rendered scenes in the VIPriors layout: ``train/ val/ test/`` PNGs and COCO files.

``write_demo_dataset`` renders every split with one random generator per image (seeded by the
seed, the split and the image index), so the same seed gives the same bytes and images could be
rendered in any order. ``train.json`` and ``val.json`` hold categories ``human`` (1) and ``ball``
(2) with RLE masks; ``test.json`` lists the images only and ``test_gt.json`` holds their answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vipseg.data.masks import rle_area, rle_to_bbox
from vipseg.data.tools.demo.scene import BALL, HUMAN, render_scene
from vipseg.utils.io import atomic_dir, atomic_write_bytes, atomic_write_json

CATEGORIES = [{"id": HUMAN, "name": "human"}, {"id": BALL, "name": "ball"}]
SPLITS = ("train", "val", "test")
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def encode_png(image: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] -> PNG bytes (fixed compression, so the bytes are reproducible)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def owner_to_rles(owner: np.ndarray, n: int) -> list[dict | None]:
    """Owner map int32 [H, W] (k = instance k, 1..n) -> n RLEs with str counts (None if empty).

    Runs are found once over the column-major map, so the cost is one pass over the image
    plus the runs of each instance, not one full-image mask per instance.
    """
    h, w = owner.shape
    flat = np.ascontiguousarray(owner.T).ravel()
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    ends = np.concatenate([starts[1:], [flat.size]])
    values = flat[starts]
    rles: list[dict | None] = []
    for k in range(1, n + 1):
        sel = values == k
        s, e = starts[sel], ends[sel]
        if len(s) == 0:
            rles.append(None)
            continue
        counts = np.empty(2 * len(s) + 1, np.int64)
        counts[0::2] = np.concatenate([s, [flat.size]]) - np.concatenate([[0], e])
        counts[1::2] = e - s
        rle = mask_utils.frPyObjects({"counts": counts.tolist(), "size": [h, w]}, h, w)
        rles.append({"size": [h, w], "counts": rle["counts"].decode("ascii")})
    return rles


def scene_annotations(owner: np.ndarray, categories: list[int], image_id: int,
                      first_id: int) -> list[dict]:
    """COCO annotations of a scene's visible instances (empty ones are skipped).

    Ids count up from ``first_id``; ``bbox`` is [x, y, w, h] in pixels, ``area`` in pixels.
    """
    anns = []
    for k, rle in enumerate(owner_to_rles(owner, len(categories))):
        if rle is None:
            continue
        anns.append({"id": first_id + len(anns), "image_id": image_id,
                     "category_id": categories[k], "segmentation": rle,
                     "area": rle_area(rle), "bbox": rle_to_bbox(rle), "iscrowd": 0})
    return anns


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of every other image."""
    return np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else 99, index])


def render_split(out: Path, split: str, count: int, sizes: list[tuple[int, int]], seed: int,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Render ``count`` scenes into ``out/split/`` and return their COCO dict.

    Image ``i`` gets size ``sizes[i % len(sizes)]`` (width, height).
    """
    images, anns = [], []
    for i in range(count):
        size = sizes[i % len(sizes)]
        scene = render_scene(image_rng(seed, split, i), size)
        name = f"{split}_{i:05d}.png"
        atomic_write_bytes(out / split / name, encode_png(scene.image))
        images.append({"id": i + 1, "file_name": name, "width": size[0], "height": size[1]})
        anns += scene_annotations(scene.owner, scene.categories, i + 1, len(anns) + 1)
        if progress:
            progress(f"{split}: {i + 1}/{count}")
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def write_demo_dataset(out: str | Path, counts: dict[str, int], sizes: list[tuple[int, int]],
                       seed: int = 0, force: bool = False,
                       progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Render the demo dataset into ``out`` (refused if it exists, unless ``force``).

    ``counts`` maps split -> number of images. Returns split -> number of instances.
    """
    summary = {}
    with atomic_dir(out, force, command="data demo") as tmp:
        for split in SPLITS:
            coco = render_split(tmp, split, counts.get(split, 0), sizes, seed, progress)
            summary[split] = len(coco["annotations"])
            if split == "test":
                atomic_write_json(tmp / "test_gt.json", coco)
                coco = {"images": coco["images"], "categories": CATEGORIES}
            atomic_write_json(tmp / f"{split}.json", coco)
    return summary
