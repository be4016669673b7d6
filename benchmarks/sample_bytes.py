"""What a training sample costs with full-image masks (before) and packed box-local masks (after).

A 1760×1280 sample (the VIPriors recipe's crop) with 60 instances (52 people of 40–140 ×
120–380 px, 8 balls of 14–40 px; random ellipses on a noise image) goes through the training
pipeline (scale 1, crop 1760×1280, flip) and one training step of the tiny CPU model
(``configs/exp/mask_rcnn/tiny_cpu.yaml``: ResNet-18, 64-channel FPN and heads). Three runs
side by side, each in its own process:

- ``before``: the code at ``--before-rev`` (default 270a443, before compact masks; extracted
  with ``git archive``): the pipeline emits ``masks`` bool [60, 1280, 1760] and torchvision's
  RoI heads crop them with ``project_masks_on_boxes``;
- ``after``: this checkout: the pipeline emits ``mask_boxes`` / ``mask_data``;
- ``after-full``: this checkout's model given the full masks of the same sample (the detector
  packs them on entry), to separate the mask format from the other head changes.

Reported per run: the pickle size of ``(image, target)`` (what a DataLoader worker hands to
the main process; with torch's shared-memory reduction the same bytes are copied into shared
memory), the time to pickle + unpickle it, and the median time of ``--iters`` training steps
(forward, backward, SGD) after ``--warmup``, one thread. The ``after`` run also times the
mask targets alone for 128 positive RoIs: torchvision's ``project_masks_on_boxes`` on the full
masks vs :func:`vipseg.models.mask_targets.mask_targets` on the crops (and their max difference).

    .venv/bin/python benchmarks/sample_bytes.py [--iters 3] [--warmup 1] [--before-rev 270a443]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = (1280, 1760)  # H, W of the recipe's crop
N_PEOPLE, N_BALLS = 52, 8


def make_raw(seed: int = 0) -> dict:
    """A raw sample (docs/architecture.md) of SIZE with N_PEOPLE + N_BALLS ellipse instances."""
    import numpy as np

    from vipseg.data.masks import encode, rle_to_bbox

    rng = np.random.default_rng(seed)
    h, w = SIZE
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    rles, boxes, labels = [], [], []
    for k in range(N_PEOPLE + N_BALLS):
        ball = k >= N_PEOPLE
        bw = rng.integers(14, 41) if ball else rng.integers(40, 141)
        bh = bw if ball else rng.integers(120, 381)
        cx, cy = rng.integers(bw // 2, w - bw // 2), rng.integers(bh // 2, h - bh // 2)
        mask = (((xx - cx) / (bw / 2)) ** 2 + ((yy - cy) / (bh / 2)) ** 2 <= 1).astype(np.uint8)
        rle = encode(mask)
        x, y, bbw, bbh = rle_to_bbox(rle)
        rles.append(rle)
        boxes.append([x, y, x + bbw, y + bbh])
        labels.append(int(ball))
    return {"image": image, "boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels),
            "rles": rles, "image_id": 1, "file_name": "synthetic.png", "orig_size": SIZE}


def measure(root: str, mode: str, iters: int, warmup: int) -> dict:
    """One run (module doc) with the ``vipseg`` package found under ``root``."""
    sys.path.insert(0, root)
    import torch

    from vipseg.config.loader import load_config
    from vipseg.config.schema import AugmentConfig
    from vipseg.data.transforms.pipeline import build_train_transform
    from vipseg.models.build import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    raw = make_raw()
    transform = build_train_transform(AugmentConfig(scales=[[SIZE[1], SIZE[0]]],
                                                    crop_size=[SIZE[1], SIZE[0]], min_box_size=2))
    image, target = transform(raw)
    if mode == "after-full":
        from vipseg.data.transforms.basic import full_masks_target
        target = full_masks_target(target, SIZE)
    out: dict = {"mode": mode, "instances": len(target["labels"]),
                 "mask_keys": sorted(k for k in target if "mask" in k)}
    start = time.perf_counter()
    blob = pickle.dumps((image, target), protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)
    out["pickle_bytes"] = len(blob)
    out["pickle_roundtrip_s"] = time.perf_counter() - start

    cfg = load_config(Path(root) / "configs/exp/mask_rcnn/tiny_cpu.yaml")
    model = build_model(cfg)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        losses = model([image], [target])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    out["step_s"] = times
    out["step_median_s"] = statistics.median(times)
    if mode == "after":
        out.update(mask_target_times(target))
    return out


def mask_target_times(target: dict, positives: int = 128, size: int = 28) -> dict:
    """Seconds for the mask targets of ``positives`` jittered gt boxes: full masks with
    torchvision vs the packed crops, and the largest difference between the two."""
    import torch
    from torchvision.models.detection.roi_heads import project_masks_on_boxes

    from vipseg.data.transforms.basic import full_masks_target
    from vipseg.models.mask_targets import mask_targets

    g = torch.Generator().manual_seed(0)
    n = len(target["labels"])
    gt_index = torch.randint(0, n, (positives,), generator=g)
    boxes = target["boxes"].as_subclass(torch.Tensor)[gt_index]
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    proposals = boxes + (torch.rand(positives, 4, generator=g) - 0.5) * 0.3 * wh
    proposals = torch.stack([proposals[:, 0].clamp(0, SIZE[1]), proposals[:, 1].clamp(0, SIZE[0]),
                             proposals[:, 2].clamp(0, SIZE[1]), proposals[:, 3].clamp(0, SIZE[0])], 1)
    full = full_masks_target(target, SIZE)["masks"].as_subclass(torch.Tensor).to(torch.uint8)
    start = time.perf_counter()
    reference = project_masks_on_boxes(full, proposals, gt_index, size)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    packed = mask_targets(target, gt_index, proposals, size)
    packed_s = time.perf_counter() - start
    return {"mask_targets_full_s": full_s, "mask_targets_packed_s": packed_s,
            "mask_targets_max_diff": float((packed - reference).abs().max())}


def run_child(root: Path, mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--root", str(root),
           "--iters", str(args.iters), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                     "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--before-rev", default="270a443")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.root, args.child, args.iters, args.warmup)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before_rev, "vipseg",
                                  "configs"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        results = [run_child(old, "before", args), run_child(REPO, "after", args),
                   run_child(REPO, "after-full", args)]
    before, after, full = results
    print(f"sample {SIZE[1]}x{SIZE[0]}, {before['instances']} instances (before) / "
          f"{after['instances']} (after); tiny_cpu model, 1 thread, median of {args.iters} steps")
    print(f"{'run':<11} {'mask keys':<26} {'pickle MB':>10} {'pickle+unpickle s':>18} {'step s':>8}")
    for r in results:
        print(f"{r['mode']:<11} {','.join(r['mask_keys']):<26} {r['pickle_bytes'] / 1e6:>10.2f} "
              f"{r['pickle_roundtrip_s']:>18.3f} {r['step_median_s']:>8.2f}")
    print(f"bytes before / after: {before['pickle_bytes'] / after['pickle_bytes']:.1f}x")
    print(f"step before / after: {before['step_median_s'] / after['step_median_s']:.2f}x; "
          f"after-full / after: {full['step_median_s'] / after['step_median_s']:.2f}x")
    print(f"mask targets of 128 RoIs: full masks (torchvision) {after['mask_targets_full_s']:.3f} s, "
          f"packed {after['mask_targets_packed_s']:.3f} s "
          f"({after['mask_targets_full_s'] / after['mask_targets_packed_s']:.1f}x), "
          f"max difference {after['mask_targets_max_diff']:.2e}")
    print("raw: " + json.dumps(results))


if __name__ == "__main__":
    main()
