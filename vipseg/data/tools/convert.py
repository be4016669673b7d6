"""``vipseg data rle2poly`` / ``poly2rle``: convert mask formats, measuring the round trip.

Polygons follow the pixel edges exactly (:func:`vipseg.data.masks.mask_to_polygons`): every
connected part of a split mask becomes its own polygon and holes are kept (joined to their
outer ring by a zero-width cut), so RLE → polygons → RLE gives back the same mask (IoU 1.0)
unless a ``tolerance`` simplifies the outlines.

Nothing is dropped: an annotation whose mask cannot be written as polygons (an empty mask) or
that is a crowd region (``iscrowd: 1``, RLE by COCO convention) keeps its RLE and is listed in
the report (``kept_rle``). The other fields (``bbox``, ``area``, ...) are copied unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from vipseg.data.coco import load_coco
from vipseg.data.masks import rle_iou, rle_to_polygons, segmentation_to_rle
from vipseg.utils.io import atomic_write_json, ensure_new_output

Target = Literal["polygon", "rle"]


def convert(in_file: str | Path, out_file: str | Path, to: Target, *, force: bool = False,
            tolerance: float = 0.0) -> dict[str, Any]:
    """Convert every mask of ``in_file`` to ``to`` ('polygon' or 'rle') and write ``out_file``.

    Returns a report: ``annotations``, ``converted``, ``unchanged`` (already in the target
    form), ``kept_rle`` (ids kept as RLE, with the reason), ``mean_iou`` / ``worst_iou`` /
    ``worst_id`` of the round trip (the written mask converted back to the other form,
    compared with the input mask).
    """
    if to not in ("polygon", "rle"):
        raise ValueError(f"unknown target format {to!r}")
    ensure_new_output(out_file, force, inputs=[in_file])
    coco = load_coco(in_file)
    ious: list[tuple[float, Any]] = []
    kept: list[dict[str, Any]] = []
    converted = unchanged = 0
    out_anns = []
    for ann in coco.annotations:
        img = coco.image_of(ann)
        h, w = int(img["height"]), int(img["width"])
        src = coco.rle(ann)
        segm = ann["segmentation"]
        new = dict(ann)
        if to == "polygon":
            if isinstance(segm, list):
                unchanged += 1
                polys = segm
            elif ann.get("iscrowd", 0):
                kept.append({"id": ann["id"], "reason": "crowd region (RLE by convention)"})
                polys = None
            else:
                polys = rle_to_polygons(src, tolerance)
                if not polys:
                    kept.append({"id": ann["id"], "reason": "empty mask (no polygon possible)"})
                    polys = None
                else:
                    converted += 1
            if polys is not None:
                new["segmentation"] = polys
                ious.append((rle_iou(src, segmentation_to_rle(polys, h, w)), ann["id"]))
            else:
                new["segmentation"] = src
        else:
            if isinstance(segm, dict) and isinstance(segm.get("counts"), str):
                unchanged += 1
            else:
                converted += 1
            new["segmentation"] = src
            back = rle_to_polygons(src, tolerance)
            if back:
                ious.append((rle_iou(src, segmentation_to_rle(back, h, w)), ann["id"]))
        out_anns.append(new)
    out = coco.to_dict()
    out["annotations"] = out_anns
    atomic_write_json(out_file, out)
    vals = np.array([v for v, _ in ious], dtype=float)
    worst = min(ious, key=lambda t: t[0]) if ious else (None, None)
    return {
        "in": str(in_file), "out": str(out_file), "to": to,
        "annotations": len(coco.annotations), "written": len(out_anns),
        "converted": converted, "unchanged": unchanged, "kept_rle": kept,
        "mean_iou": float(vals.mean()) if len(vals) else None,
        "worst_iou": worst[0], "worst_id": worst[1],
        "warnings": [f"{coco.path}: {w}" for w in coco.warnings],
    }


def format_report(r: dict[str, Any]) -> str:
    """The conversion report as text."""
    target = "polygons" if r["to"] == "polygon" else "RLE"
    lines = [f"{r['out']}: {r['written']} of {r['annotations']} annotations written "
             f"({r['converted']} converted to {target}, {r['unchanged']} already {target})"]
    if r["mean_iou"] is not None:
        lines.append(f"round-trip mask IoU: mean {r['mean_iou']:.4f}, worst {r['worst_iou']:.4f} "
                     f"(annotation {r['worst_id']!r})")
    if r["kept_rle"]:
        lines.append(f"kept as RLE: {len(r['kept_rle'])} annotation(s):")
        lines += [f"  annotation {k['id']!r}: {k['reason']}" for k in r["kept_rle"]]
    return "\n".join(lines)
