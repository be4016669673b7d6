"""The ceiling a mask pipeline puts on mask AP: a perfect mask head, cropped and pasted back.

For every ground-truth instance of a COCO file, its M x M mask target on its own box is what a
perfect mask head would predict; pasting that back into the image and scoring it (score 1 per
instance, COCO mask AP) measures what the crop (training targets) and paste (inference)
conventions alone cost, with nothing learnt. Side by side:

- vipseg: aligned targets (``mask_targets(..., aligned=True)``, pixel ``i`` spans
  ``[i, i + 1)``) pasted by ``paste_masks_to_rles`` (continuous boxes, detectron2's paste);
- torchvision: ``project_masks_on_boxes`` targets (``aligned=False``) pasted by
  ``paste_masks_in_image`` (integer boxes after a 1-pixel expansion), the stock Mask R-CNN.

Prints mean mask IoU of the round trip, the oracle mask AP / AP75 of both, and vipseg's AP over
torchvision's. Small objects are where it matters: the demo's people are ~10 x 30 pixels.

    python benchmarks/mask_roundtrip.py                       # the demo's val split (rendered)
    python benchmarks/mask_roundtrip.py --annotations ../shared/data/deepsport/val.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipseg.data.masks import encode_many  # noqa: E402
from vipseg.engine.inference import paste_masks_to_rles  # noqa: E402
from vipseg.models.mask_targets import mask_targets, pack_masks  # noqa: E402


def round_trip(coco: COCO, size: int) -> dict[str, list]:
    """Per pipeline: (COCO results, IoUs with the ground truth) of the pasted oracle masks."""
    out = {"vipseg": ([], []), "torchvision": ([], [])}
    for img_id in coco.getImgIds():
        info = coco.imgs[img_id]
        h, w = info["height"], info["width"]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id)) if not a.get("iscrowd")]
        if not anns:
            continue
        full = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32)
        index = torch.arange(len(anns))
        data, crop_boxes = pack_masks(full.bool())
        ours = mask_targets({"mask_data": data, "mask_boxes": crop_boxes}, index, boxes, size,
                            aligned=True)
        theirs = project_masks_on_boxes(full, boxes, index, size)
        pasted = {
            "vipseg": paste_masks_to_rles((ours >= 0.5).float()[:, None], boxes, (h, w)),
            "torchvision": encode_many((paste_masks_in_image(
                (theirs >= 0.5).float()[:, None], boxes, (h, w))[:, 0] > 0.5).numpy()),
        }
        gts = [mask_utils.encode(np.asfortranarray(m.numpy())) for m in full]
        for name, rles in pasted.items():
            results, ious = out[name]
            for a, rle, gt in zip(anns, rles, gts):
                ious.append(float(mask_utils.iou([rle], [gt], [0])[0, 0]))
                results.append({"image_id": img_id, "category_id": a["category_id"],
                                "segmentation": rle, "score": 1.0})
    return out


def mask_ap(coco: COCO, results: list[dict]) -> tuple[float, float]:
    """(mask AP, AP75) of ``results`` against ``coco``."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=None,
                    help="COCO file (default: the demo's val split, rendered to a temp folder)")
    ap.add_argument("--mask-size", type=int, default=28, help="mask head output side M")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.annotations
        if path is None:
            subprocess.run([sys.executable, "-m", "vipseg", "data", "demo", "--out",
                            f"{tmp}/demo", "--val", "40", "--quiet"], cwd=REPO, check=True)
            path = Path(tmp) / "demo" / "val.json"
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
        out = round_trip(coco, args.mask_size)
    print(f"{path.name}: {len(out['vipseg'][1])} instances, mask side {args.mask_size}")
    print("| pipeline | mean round-trip IoU | oracle mask AP | AP75 |")
    print("|---|---|---|---|")
    aps = {}
    for name, (results, ious) in out.items():
        aps[name] = mask_ap(coco, results)
        print(f"| {name} | {np.mean(ious):.3f} | {aps[name][0]:.3f} | {aps[name][1]:.3f} |")
    print(f"ratio (vipseg / torchvision oracle mask AP): "
          f"{aps['vipseg'][0] / max(aps['torchvision'][0], 1e-9):.2f}")


if __name__ == "__main__":
    main()
