"""The DeepSportradar / ACM MMSports 2023 occlusion metric (OM = OIR x DPR).

Follows the challenge's ``tools/occlusion_metric.py`` (github.com/DeepSportradar/
instance-segmentation-challenge), class-agnostic like it: every ground-truth annotation and
every prediction of an image take part, whatever their category. Per image:

- predictions are sorted by score (best first, ties in file order) and each ground-truth
  instance is matched greedily to a prediction: repeatedly the pair with the highest mask IoU
  above 0.5 is matched and both are removed;
- an instance is *occluded* when its mask has >= 2 connected parts (8-connectivity, OpenCV);
- OIR (occluded instance recall) = matched occluded instances / occluded instances;
- DPR (disconnected pixel recall): for each matched occluded instance, every part but the
  largest (ties: the part whose last pixel in raster order comes first counts as largest)
  adds its area to the total, and each of its pixels inside the matched prediction adds
  ``s_match / sum of the scores of all predictions covering the pixel``;
- OM = (sum recalled instances x sum recalled pixels) / (sum instances x sum pixels), the four
  totals summed over all images before dividing (0 where a total is 0).

Ground-truth masks are taken as given (the reference sums overlapping ground-truth masks into
one id map; the challenge's annotations do not overlap). Memory: one image's predictions are
decoded one at a time, and only inside the box of each scored instance (``decode_crop``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vipseg.data.masks import decode_crop, rle_box, segmentation_to_rle

MATCH_IOU = 0.5


@dataclass
class OcclusionTotals:
    """The four totals the metric divides (summed over images)."""

    recalled_instances: int = 0
    occluded_instances: int = 0
    recalled_pixels: float = 0.0
    part_pixels: int = 0

    def add(self, other: "OcclusionTotals") -> None:
        self.recalled_instances += other.recalled_instances
        self.occluded_instances += other.occluded_instances
        self.recalled_pixels += other.recalled_pixels
        self.part_pixels += other.part_pixels

    def metrics(self) -> dict[str, float]:
        """``{"OM", "OIR", "DPR"}`` in 0..1."""
        def frac(a: float, b: float) -> float:
            return a / b if b else 0.0
        return {"OM": frac(self.recalled_instances * self.recalled_pixels,
                           self.occluded_instances * self.part_pixels),
                "OIR": frac(self.recalled_instances, self.occluded_instances),
                "DPR": frac(self.recalled_pixels, self.part_pixels)}


def greedy_match(iou: np.ndarray, thresh: float = MATCH_IOU) -> dict[int, int]:
    """Ground-truth row -> prediction column, taking the highest IoU > ``thresh`` first
    (first in row-major order on ties), each row and column at most once."""
    iou = np.array(iou, dtype=np.float64, copy=True)
    pairs: dict[int, int] = {}
    while iou.size:
        i, j = divmod(int(iou.argmax()), iou.shape[1])
        if iou[i, j] <= thresh:
            break
        pairs[i] = j
        iou[i, :] = 0
        iou[:, j] = 0
    return pairs


def secondary_parts(mask: np.ndarray) -> list[np.ndarray]:
    """The connected parts (8-connectivity) of a binary mask [h, w] but the largest, as bool
    masks; empty when the mask has fewer than 2 parts. The largest is the biggest area, ties
    going to the part whose last pixel in raster order comes first (as the reference)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n < 3:  # background + fewer than 2 parts
        return []
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=n)[1:]
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, flat, np.arange(flat.size))
    order = sorted(range(1, n), key=lambda p: (-areas[p - 1], last[p]))
    return [labels == p for p in order[1:]]


def image_totals(gt_segms: Sequence[dict], preds: Sequence[dict]) -> OcclusionTotals:
    """Totals of one image: ``gt_segms`` the ground-truth RLEs, ``preds`` COCO results
    (``segmentation`` RLE, ``score``) of the same image."""
    out = OcclusionTotals()
    if not gt_segms:
        return out
    gts = list(gt_segms)
    order = sorted(range(len(preds)), key=lambda k: -float(preds[k]["score"]))
    prle = [preds[k]["segmentation"] for k in order]
    scores = np.array([float(preds[k]["score"]) for k in order], dtype=np.float64)
    iou = (np.asarray(mask_utils.iou(gts, prle, [0] * len(prle))).reshape(len(gts), len(prle))
           if prle else np.zeros((len(gts), 0)))
    match = greedy_match(iou)
    scored: list[tuple[int, tuple[int, int], list[np.ndarray]]] = []  # (pred, origin, parts)
    for g, rle in enumerate(gts):
        x0, y0, x1, y1 = rle_box(rle)
        parts = secondary_parts(decode_crop(rle, (x0, y0, x1, y1))) if x1 > x0 else []
        if not parts:
            continue
        out.occluded_instances += 1
        if g in match:
            out.recalled_instances += 1
            out.part_pixels += int(sum(int(p.sum()) for p in parts))
            scored.append((match[g], (y0, x0), parts))
    if scored:
        out.recalled_pixels = _part_rewards(scored, prle, scores)
    return out


def _part_rewards(scored: list, prle: list[dict], scores: np.ndarray) -> float:
    """Sum over scored part pixels inside the matched prediction of s_match / S(pixel), S the
    sum of the scores of all predictions covering the pixel; each instance is handled inside
    its own box, decoding only the predictions whose boxes reach into it."""
    boxes = mask_utils.toBbox(prle)
    reward = 0.0
    for k, (y0, x0), parts in scored:
        h, w = parts[0].shape
        window = (x0, y0, x0 + w, y0 + h)
        region = np.logical_or.reduce(parts)
        total = np.zeros((h, w), dtype=np.float64)  # S over the window
        matched = None
        for j, (bx, by, bw, bh) in enumerate(boxes):
            if bx >= x0 + w or by >= y0 + h or bx + bw <= x0 or by + bh <= y0:
                continue
            m = decode_crop(prle[j], window).astype(bool) & region
            total[m] += scores[j]
            if j == k:
                matched = m
        if matched is None:
            continue
        for p in parts:
            denom = total[p & matched]
            reward += float(np.sum(np.divide(scores[k], denom, out=np.zeros_like(denom),
                                             where=denom > 0)))
    return reward


def occlusion_metric(gt: dict, results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """OM, OIR and DPR of COCO ``results`` on every image of the ground truth ``gt`` (a
    loaded COCO dict with RLE or polygon segmentations), values in 0..1."""
    by_image_gt: dict[Any, list[dict]] = defaultdict(list)
    sizes = {im["id"]: (int(im["height"]), int(im["width"])) for im in gt["images"]}
    for a in gt.get("annotations", []):
        h, w = sizes[a["image_id"]]
        by_image_gt[a["image_id"]].append(segmentation_to_rle(a["segmentation"], h, w))
    by_image_pred: dict[Any, list[dict]] = defaultdict(list)
    for r in results:
        by_image_pred[r["image_id"]].append(r)
    totals = OcclusionTotals()
    for image_id in sizes:
        totals.add(image_totals(by_image_gt.get(image_id, []), by_image_pred.get(image_id, [])))
    return totals.metrics()


def format_occlusion(metrics: dict[str, float]) -> str:
    """The one-line summary ``OM <v> OIR <v> DPR <v>`` (4 decimals)."""
    return f"OM {metrics['OM']:.4f} OIR {metrics['OIR']:.4f} DPR {metrics['DPR']:.4f}"
