"""Peak memory of 10-view TTA against plain testing at 2456x2054 with 100 detections.

One image of 2456x2054 pixels, the tiny Mask R-CNN (configs/exp/mask_rcnn/tiny_cpu.yaml,
untrained, box score threshold 0 and 100 detections per image so that every view and the
merge yield 100 boxes), through vipseg's prediction path including the full-resolution paste
and RLE encoding. Variants, each in a fresh subprocess:

- ``plain``: plain testing at ``dataset.test_scale`` [1333, 800];
- ``plain_large``: plain testing at the largest TTA view (x1.5, [3684, 3081]): the backbone
  activations TTA cannot avoid, so the fair baseline for what merging adds;
- ``tta``: the default 10 views (x1.0, x0.8, x1.5, 1920x1440, 1760x1280, each +-flip), NMS
  merge, masks re-predicted in every view and averaged.

Peak = rise of ``ru_maxrss`` over the level after imports, model and image (CPU), or
``torch.cuda.max_memory_allocated`` (CUDA). Prints both ratios.
Usage: ``python benchmarks/tta_memory.py [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

WIDTH, HEIGHT = 2456, 2054
REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["model.roi_heads.score_thresh=0.0", "model.roi_heads.detections_per_img=100",
             "model.rpn.pre_nms_top_n_test=1000", "model.rpn.post_nms_top_n_test=1000",
             "train.num_workers=0"]


def run_variant(variant: str, device: str) -> dict:
    import numpy as np
    import torch

    from vipseg.config.loader import load_config
    from vipseg.data.transforms.basic import TestTransform
    from vipseg.engine.predict import predict_dataset, predict_options
    from vipseg.models.build import build_model

    torch.set_num_threads(1)
    scale = {"plain": "[1333,800]", "plain_large": f"[{round(WIDTH * 1.5)},{round(HEIGHT * 1.5)}]",
             "tta": "[1333,800]"}[variant]
    cfg = load_config(REPO / "configs/exp/mask_rcnn/tiny_cpu.yaml",
                      [*OVERRIDES, f"dataset.test_scale={scale}"])
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)

    class One(torch.utils.data.Dataset):
        classes = cfg.dataset.classes
        transform = TestTransform(cfg.dataset.test_scale)

        def __len__(self):
            return 1

        def label_to_category_id(self, label):
            return label + 1

        def __getitem__(self, i):
            return self.transform({"image": image, "image_id": 1, "orig_size": (HEIGHT, WIDTH)})

    options = predict_options(cfg, device, tta=variant == "tta")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    results = predict_dataset(model, One(), device=device, options=options, progress=False)
    seconds = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    views = len(options.views) if options.views else 1
    return {"variant": variant, "views": views, "detections": len(results),
            "peak_mib": peak / 2**20, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.device)))
        return
    rows = {}
    for variant in ("plain", "plain_large", "tta"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--device",
                              args.device], capture_output=True, text=True, check=True)
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[variant]
        print(f"{variant:12s} {r['views']:2d} views  {r['detections']:3d} detections  "
              f"peak +{r['peak_mib']:7.1f} MiB  {r['seconds']:6.1f} s")
    tta = rows["tta"]["peak_mib"]
    print(f"TTA / plain_large peak: {tta / rows['plain_large']['peak_mib']:.2f}x; "
          f"TTA / plain (test_scale) peak: {tta / rows['plain']['peak_mib']:.2f}x "
          f"({args.device}, {WIDTH}x{HEIGHT})")


if __name__ == "__main__":
    main()
