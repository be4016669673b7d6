"""Val mask AP without TTA, with TTA (select), with TTA (average) and of a 2-model ensemble.

Runs each variant through vipseg's one prediction path (``predict_dataset`` with
``predict_options``) on the val split of the given config and prints mask AP / AP50 (COCO
protocol) and the time of each. The TTA views are ``--scales`` x flip (default 1.0, 0.8, 1.2:
the reference's fixed 1920x1440-style sizes would upscale the 384x288 demo images 5x).
Train the two checkpoints as scripts/demo.sh does, e.g.
``vipseg train configs/exp/mask_rcnn/demo_cpu.yaml demo_s0 --data-root data/demo train.seed=0``.

Usage: ``python benchmarks/tta_gain.py CONFIG CKPT1 CKPT2 --data-root data/demo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from vipseg.config.loader import load_config
from vipseg.data.build import build_dataset
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.inference import load_model
from vipseg.engine.predict import predict_dataset, predict_options
from vipseg.engine.tta import Member, View


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("ckpt1")
    ap.add_argument("ckpt2")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--scales", default="1.0,0.8,1.2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scales = [float(s) for s in args.scales.split(",")]
    cfg = load_config(args.config, [f"tta.scales={scales}", "tta.flip=true"])
    dataset = build_dataset(cfg, "val", train=False, root=args.data_root)
    models = [load_model(cfg, c, "cpu") for c in (args.ckpt1, args.ckpt2)]
    plain = predict_options(cfg, "cpu")
    tta = predict_options(cfg, "cpu", tta=True)
    select = dataclasses.replace(tta, merge=dataclasses.replace(tta.merge, mask_merge="select"))
    test_view = (View(tuple(cfg.dataset.test_scale)),)
    runs = [
        ("model 1, no TTA", models[0], plain),
        ("model 2, no TTA", models[1], plain),
        (f"model 1, TTA select ({len(tta.views)} views)", models[0], select),
        (f"model 1, TTA average ({len(tta.views)} views)", models[0], tta),
        ("ensemble of 2, no TTA", [Member(m, test_view) for m in models], plain),
        (f"ensemble of 2, TTA average", [Member(m, tta.views) for m in models], tta),
    ]
    print(f"val split: {len(dataset)} images; views {[(v.scale, v.flip) for v in tta.views]}")
    for name, model, options in runs:
        t0 = time.perf_counter()
        results = predict_dataset(model, dataset, device="cpu", options=options, progress=False)
        seconds = time.perf_counter() - t0
        m = coco_metrics(dataset.ann_file, results, class_names=cfg.dataset.classes)
        print(f"{name:36s} mask AP {m['segm/AP']:.4f}  AP50 {m['segm/AP50']:.4f}  "
              f"box AP {m['bbox/AP']:.4f}  ({len(results)} predictions, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
