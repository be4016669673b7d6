"""``vipseg data extract-objects``: the object bank for copy-paste augmentation.

Writes, under ``OUT/``, every ground-truth instance as a cropped RGB PNG of its mask's tight
box and a 0/255 mask PNG of the same size, in one folder per category, plus ``index.json``::

    {"categories": [{"id", "name"}],
     "objects": [{"id", "image_id", "source_image", "category_id", "category",
                  "bbox": [x, y, w, h],            # integer crop box in the source image
                  "crop": "<name>/<id>.png", "mask_file": "<name>/<id>_mask.png",
                  "mask": RLE of the crop (size [h, w], str counts), "area"}]}

``id`` is the annotation id, ``source_image`` the image's ``file_name``, ``<name>`` the category
name (made file-system safe). Crowd regions and empty masks are skipped and reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vipseg.data.coco import load_coco
from vipseg.data.dataset import read_image
from vipseg.data.masks import decode_crop, encode, rle_box
from vipseg.utils.io import atomic_dir, atomic_write_json, ensure_new_output
from vipseg.errors import DataError

INDEX = "index.json"
COMMAND = "data extract-objects"


def _safe(name: Any) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return s or "x"


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise DataError(f"{path}: cannot write PNG")


def extract_objects(ann_file: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                    force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Write the object bank of ``ann_file`` (images under ``images_dir``) to ``out_dir``."""
    ensure_new_output(out_dir, force, folder=True, inputs=[ann_file, images_dir], command=COMMAND)
    coco = load_coco(ann_file, images_dir=images_dir)
    folder = {c["id"]: _safe(c["name"]) for c in coco.categories}
    if len(set(folder.values())) != len(folder):
        raise DataError(f"{coco.path}: category names {coco.category_names} give clashing "
                        "folder names")
    objects: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    stems: set[tuple[str, str]] = set()
    images = coco.images
    if progress:
        from tqdm import tqdm
        images = tqdm(images, desc="extract-objects", unit="img")
    with atomic_dir(out_dir, force, command=COMMAND, inputs=[ann_file, images_dir]) as tmp:
        for name in folder.values():
            (tmp / name).mkdir()
        for img in images:
            anns = [a for a in coco.anns_by_image[img["id"]]]
            if not anns:
                continue
            pixels = read_image(Path(images_dir) / img["file_name"])
            for ann in anns:
                if ann.get("iscrowd", 0):
                    skipped.append({"id": ann["id"], "reason": "crowd region"})
                    continue
                rle = coco.rle(ann)
                x0, y0, x1, y1 = rle_box(rle)
                if x1 <= x0 or y1 <= y0:
                    skipped.append({"id": ann["id"], "reason": "empty mask"})
                    continue
                mask = decode_crop(rle, (x0, y0, x1, y1))
                crop = pixels[y0:y1, x0:x1]
                cat = folder[ann["category_id"]]
                stem = _safe(ann["id"])
                k = 2
                while (cat, stem) in stems:  # ids that only differ in unsafe characters
                    stem, k = f"{_safe(ann['id'])}_{k}", k + 1
                stems.add((cat, stem))
                _write_png(tmp / cat / f"{stem}.png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                _write_png(tmp / cat / f"{stem}_mask.png", mask * 255)
                objects.append({
                    "id": ann["id"], "image_id": img["id"], "source_image": img["file_name"],
                    "category_id": ann["category_id"],
                    "category": coco.cats_by_id[ann["category_id"]]["name"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "crop": f"{cat}/{stem}.png", "mask_file": f"{cat}/{stem}_mask.png",
                    "mask": encode(mask), "area": int(mask.sum()),
                })
        index = {"categories": [{"id": c["id"], "name": c["name"]} for c in coco.categories],
                 "objects": objects}
        atomic_write_json(tmp / INDEX, index)
    per_cat: dict[str, int] = {}
    for o in objects:
        per_cat[o["category"]] = per_cat.get(o["category"], 0) + 1
    return {"out": str(out_dir), "objects": len(objects), "per_category": per_cat,
            "skipped": skipped, "warnings": [f"{coco.path}: {w}" for w in coco.warnings]}


def load_object_bank(bank_dir: str | Path) -> dict[str, Any]:
    """Read ``bank_dir/index.json`` (``DataError`` if it is missing or malformed)."""
    from vipseg.data.coco import read_json

    path = Path(bank_dir) / INDEX
    index = read_json(path)
    if not isinstance(index, dict) or not isinstance(index.get("objects"), list) \
            or not isinstance(index.get("categories"), list):
        raise DataError(f"{path}: not an object bank index (needs 'categories' and 'objects' lists)")
    return index


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['out']}: {r['objects']} objects ("
             + ", ".join(f"{k} {v}" for k, v in r["per_category"].items()) + ")"]
    if r["skipped"]:
        lines.append(f"skipped {len(r['skipped'])}: "
                     + ", ".join(f"{s['id']!r} ({s['reason']})" for s in r["skipped"][:10])
                     + (", ..." if len(r["skipped"]) > 10 else ""))
    return "\n".join(lines)
