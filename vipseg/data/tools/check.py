"""``vipseg data check``: validate a COCO file and summarise it.

The summary (also written by ``--json``) is a dict with these keys:

- ``file``, ``images``, ``annotations`` (all instances, crowd included), ``crowd``
- ``images_only``: true for a file without annotations (e.g. a test set's images-only file)
- ``categories``: ``[{"id", "name"}]``
- ``image_sizes``: ``{"WxH": count}``, most frequent first
- ``instances_per_class``: ``{name: count}`` in category order
- ``instances_per_image``: ``{"min", "mean", "max"}`` over all images (images without any
  annotation count as 0)
- ``mask_area``: pixel areas of the masks (decoded, not the ``area`` field):
  ``{"min", "p10", "median", "p90", "max"}`` (``null`` when there is no annotation)
- ``split_instances``: ``{"count", "percent"}``: masks with several connected parts
  (8-connectivity), e.g. a person split by an occluder
- ``split_instance_ids``: the annotation ids of those masks, in file order
- ``empty_masks``: annotations whose mask has no pixel
- ``warnings``: the loader's warnings
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vipseg.data.coco import load_coco
from vipseg.data.masks import count_components, rle_area
from vipseg.utils.io import atomic_write_json, ensure_new_output


def summarize(ann_file: str | Path, images_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate ``ann_file`` (and the image files under ``images_dir``, decoded in full) and
    summarise it. An images-only file (no ``annotations``) is accepted."""
    coco = load_coco(ann_file, images_dir=images_dir, require_annotations=False,
                     decode_images=True)
    sizes = Counter(f"{img['width']}x{img['height']}" for img in coco.images)
    per_class = Counter(ann["category_id"] for ann in coco.annotations)
    per_image = np.array([len(coco.anns_by_image[img["id"]]) for img in coco.images], dtype=float)
    areas, split_ids = [], []
    for ann in coco.annotations:
        rle = coco.rle(ann)
        areas.append(rle_area(rle))
        if count_components(rle) > 1:
            split_ids.append(ann["id"])
    areas_a = np.asarray(areas, dtype=float)
    n = len(coco.annotations)
    split = len(split_ids)

    def stat(v: float) -> float:
        return round(float(v), 3)

    return {
        "file": str(coco.path),
        "images": len(coco.images),
        "annotations": n,
        "images_only": n == 0,
        "crowd": int(sum(bool(a.get("iscrowd", 0)) for a in coco.annotations)),
        "categories": [{"id": c["id"], "name": c["name"]} for c in coco.categories],
        "image_sizes": dict(sizes.most_common()),
        "instances_per_class": {c["name"]: per_class.get(c["id"], 0) for c in coco.categories},
        "instances_per_image": (
            {"min": int(per_image.min()), "mean": stat(per_image.mean()), "max": int(per_image.max())}
            if len(per_image) else {"min": 0, "mean": 0.0, "max": 0}),
        "mask_area": (
            {"min": stat(areas_a.min()), "p10": stat(np.quantile(areas_a, 0.1)),
             "median": stat(np.median(areas_a)), "p90": stat(np.quantile(areas_a, 0.9)),
             "max": stat(areas_a.max())}
            if n else {"min": None, "p10": None, "median": None, "p90": None, "max": None}),
        "split_instances": {"count": split, "percent": stat(100.0 * split / n) if n else 0.0},
        "split_instance_ids": split_ids,
        "empty_masks": int(sum(a == 0 for a in areas)),
        "warnings": [f"{coco.path}: {w}" for w in coco.warnings],
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as readable text (one fact per line)."""
    lines = [f"{s['file']}: OK" + (" (images-only file: no annotations)" if s["images_only"] else ""),
             f"images: {s['images']}",
             "image sizes (WxH): " + (", ".join(f"{k} ({v})" for k, v in s["image_sizes"].items())
                                      or "-")]
    if s["images_only"]:
        return "\n".join(lines)
    lines += [f"instances: {s['annotations']}" + (f" ({s['crowd']} crowd)" if s["crowd"] else ""),
              "instances per class: " + (", ".join(f"{k} {v}" for k, v in
                                                  s["instances_per_class"].items()) or "-")]
    ipi = s["instances_per_image"]
    lines.append(f"instances per image: min {ipi['min']}, mean {ipi['mean']:.2f}, max {ipi['max']}")
    a = s["mask_area"]
    if a["min"] is not None:
        lines.append(f"mask area (px): min {a['min']:.0f}, 10% {a['p10']:.0f}, median "
                     f"{a['median']:.0f}, 90% {a['p90']:.0f}, max {a['max']:.0f}")
    sp = s["split_instances"]
    lines.append(f"split instances (several connected parts): {sp['count']} ({sp['percent']:.1f}%)")
    if s["empty_masks"]:
        lines.append(f"empty masks: {s['empty_masks']}")
    return "\n".join(lines)


def check(ann_file: str | Path, images_dir: str | Path | None = None,
          json_out: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """:func:`summarize`, optionally writing the summary as JSON (atomic, ``force`` to replace)."""
    if json_out is not None:
        ensure_new_output(json_out, force, inputs=[ann_file, images_dir])
    s = summarize(ann_file, images_dir)
    if json_out is not None:
        atomic_write_json(json_out, s, indent=2)
    return s
