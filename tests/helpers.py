"""Test data: small generated COCO datasets of simple shapes (no real images needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vipseg.data.masks import encode, rle_area, rle_to_bbox


def make_shapes_dataset(root: Path, split: str = "train", n_images: int = 4,
                        size: tuple[int, int] = (160, 128), seed: int = 0,
                        max_objects: int = 4) -> Path:
    """Write ``root/<split>/*.png`` and ``root/<split>.json`` (classes human=1 ellipses,
    ball=2 discs) on a textured background; later shapes occlude earlier ones exactly.

    ``size`` is (width, height). Returns the JSON path.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    (root / split).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
        owner = np.full((h, w), -1, np.int32)
        objs = []
        for k in range(int(rng.integers(1, max_objects + 1))):
            cls = 1 if k % 3 != 2 else 2
            m = np.zeros((h, w), np.uint8)
            cx, cy = int(rng.integers(15, w - 15)), int(rng.integers(15, h - 15))
            if cls == 1:
                ax, ay = int(rng.integers(6, 14)), int(rng.integers(14, 30))
                cv2.ellipse(m, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
                color = (200, 40, 40)
            else:
                cv2.circle(m, (cx, cy), int(rng.integers(4, 8)), 1, -1)
                color = (240, 150, 20)
            img[m > 0] = color
            owner[m > 0] = len(objs)
            objs.append(cls)
        name = f"{split}_{i:04d}.png"
        cv2.imwrite(str(root / split / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for j, cls in enumerate(objs):
            rle = encode(owner == j)
            area = rle_area(rle)
            if area == 0:
                continue
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls,
                         "segmentation": rle, "area": area, "bbox": rle_to_bbox(rle), "iscrowd": 0})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "human"}, {"id": 2, "name": "ball"}]}
    path = root / f"{split}.json"
    path.write_text(json.dumps(coco))
    return path
