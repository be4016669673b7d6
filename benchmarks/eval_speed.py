"""Time of ``vipseg eval --metric om`` (and ``coco``) on challenge-sized images.

Generates ``--images`` (64) images cycling through 1624x1234, 2336x1752 and 2456x2054, each
with 12 people-sized ground-truth instances of which some are cut in two or three parts by an
occluder, and ``--preds`` (100) predictions per image: every instance's mask shifted by a few
pixels, half of them twice (overlapping predictions), the rest false positives.

Side by side on the first ``--ref-images`` (4) images: vipseg's ``occlusion_metric`` (RLE IoUs,
crops only) and a straightforward dense reference following the challenge's
``tools/occlusion_metric.py`` (full-image id map, every prediction decoded at full size, full
score-sum map); the totals must agree. Prints the times and the ratio, then the time of the
whole set (OM, and pycocotools COCOeval segm for scale). Usage:
``python benchmarks/eval_speed.py [--images 64] [--preds 100] [--ref-images 4]``.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from vipseg.data.masks import decode, encode, rle_to_bbox
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.occlusion import OcclusionTotals, image_totals, occlusion_metric

SIZES = [(1624, 1234), (2336, 1752), (2456, 2054)]  # (width, height)


def make_image(rng, image_id: int, size: tuple[int, int], n_gt: int, n_pred: int):
    w, h = size
    owner = np.zeros((h, w), np.int32)
    for k in range(1, n_gt + 1):
        cx, cy = int(rng.integers(100, w - 100)), int(rng.integers(200, h - 200))
        cv2.ellipse(owner, (cx, cy), (int(rng.integers(30, 60)), int(rng.integers(90, 170))),
                    0, 0, 360, k, -1)
        if k % 3 == 0:  # an occluder (a later, thin instance) cuts it into parts
            cv2.rectangle(owner, (cx - 80, cy - 10), (cx + 80, cy + 10 + 30 * (k % 2)), 0, -1)
    anns, preds = [], []
    for k in range(1, n_gt + 1):
        m = (owner == k).astype(np.uint8)
        if not m.any():
            continue
        rle = encode(m)
        anns.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "iscrowd": 0,
                     "area": int(m.sum()), "bbox": rle_to_bbox(rle)})
    for i in range(n_pred):
        if i < 1.5 * len(anns):
            m = decode(anns[i % len(anns)]["segmentation"])
            dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
            m = np.roll(m, (dy, dx), axis=(0, 1))
        else:
            m = np.zeros((h, w), np.uint8)
            cx, cy = int(rng.integers(50, w - 50)), int(rng.integers(80, h - 80))
            cv2.ellipse(m, (cx, cy), (int(rng.integers(15, 50)), int(rng.integers(30, 120))),
                        0, 0, 360, 1, -1)
        rle = encode(m)
        preds.append({"image_id": image_id, "category_id": 1, "segmentation": rle,
                      "bbox": rle_to_bbox(rle), "score": float(rng.uniform(0.05, 1.0))})
    return {"id": image_id, "width": w, "height": h}, anns, preds


def dense_reference(anns: list[dict], preds: list[dict]) -> OcclusionTotals:
    """The challenge's algorithm on full-size arrays (one prediction decoded at a time)."""
    h, w = anns[0]["segmentation"]["size"]
    ids = np.zeros((h, w), np.int32)
    for i, a in enumerate(anns, 1):
        ids += decode(a["segmentation"]).astype(np.int32) * i
    preds = sorted(preds, key=lambda p: -p["score"])
    gt_area = np.bincount(ids.ravel(), minlength=len(anns) + 1)
    iou = np.zeros((len(anns) + 1, len(preds)))
    total = np.zeros((h, w))
    for j, p in enumerate(preds):
        m = decode(p["segmentation"]).astype(bool)
        inter = np.bincount(ids[m], minlength=len(anns) + 1)
        iou[:, j] = inter / (gt_area + m.sum() - inter)
        total[m] += p["score"]
    iou[0] = 0
    match = {}
    while iou.size:
        i, j = divmod(int(iou.argmax()), iou.shape[1])
        if iou[i, j] <= 0.5:
            break
        match[i] = j
        iou[i, :] = 0
        iou[:, j] = 0
    out = OcclusionTotals()
    for i in range(1, len(anns) + 1):
        n, lab = cv2.connectedComponents((ids == i).astype(np.uint8), connectivity=8)
        if n < 3:
            continue
        out.occluded_instances += 1
        if i not in match:
            continue
        out.recalled_instances += 1
        flat = lab.ravel()
        areas = np.bincount(flat, minlength=n)[1:]
        last = np.zeros(n, np.int64)
        np.maximum.at(last, flat, np.arange(flat.size))
        order = sorted(range(1, n), key=lambda q: (-areas[q - 1], last[q]))
        pm = decode(preds[match[i]]["segmentation"]).astype(bool)
        for q in order[1:]:
            part = lab == q
            out.part_pixels += int(part.sum())
            hit = part & pm
            out.recalled_pixels += float((preds[match[i]]["score"] / total[hit]).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--preds", type=int, default=100)
    ap.add_argument("--ref-images", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    images, anns, preds = [], [], []
    per_image = []
    for i in range(args.images):
        im, a, p = make_image(rng, i + 1, SIZES[i % len(SIZES)], 12, args.preds)
        images.append(im)
        anns += a
        preds += p
        per_image.append((a, p))
    for k, a in enumerate(anns):
        a["id"] = k + 1
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "human"}]}
    print(f"generated {args.images} images, {len(anns)} instances, {len(preds)} predictions "
          f"in {time.perf_counter() - t0:.1f} s")

    fast, ref = OcclusionTotals(), OcclusionTotals()
    t0 = time.perf_counter()
    for a, p in per_image[:args.ref_images]:
        fast.add(image_totals([x["segmentation"] for x in a], p))
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a, p in per_image[:args.ref_images]:
        ref.add(dense_reference(a, p))
    t_ref = time.perf_counter() - t0
    assert (fast.recalled_instances, fast.occluded_instances, fast.part_pixels) == \
        (ref.recalled_instances, ref.occluded_instances, ref.part_pixels), (fast, ref)
    assert abs(fast.recalled_pixels - ref.recalled_pixels) < 1e-6 * max(1, ref.part_pixels)
    print(f"first {args.ref_images} images: vipseg {t_fast:.2f} s, dense reference "
          f"{t_ref:.2f} s, ratio {t_ref / t_fast:.1f}x (same totals: {fast.metrics()})")

    t0 = time.perf_counter()
    om = occlusion_metric(gt, preds)
    t_om = time.perf_counter() - t0
    t0 = time.perf_counter()
    coco = coco_metrics(gt, preds, iou_types=("segm",))
    t_coco = time.perf_counter() - t0
    print(f"all {args.images} images: OM {t_om:.1f} s ({t_om / args.images * 1000:.0f} ms/image;"
          f" OM {om['OM']:.4f} OIR {om['OIR']:.4f} DPR {om['DPR']:.4f}); "
          f"COCOeval segm {t_coco:.1f} s (AP {coco['segm/AP']:.3f})")


if __name__ == "__main__":
    main()
