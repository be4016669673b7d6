"""Accuracy at equal cost: vipseg's small-data recipe vs torchvision's stock Mask R-CNN recipe.

Both train from scratch on the same images for the same wall-clock budget and are scored on the
same val split (COCO mask AP); the script prints both and their ratio (goal: >= 2 at 10 CPU
minutes).

Data: the DeepSport train and val annotations (``--annotations``, default the shared copy)
are shrunk to fit ``--scale`` (long x short, default 640x480: masks resized with nearest) and
painted with ``vipseg data render`` (synthetic courts and people behind the real shapes, one
ball per image), then the train split's object bank is written with ``vipseg data
extract-objects`` for the recipe's copy-paste.

(a) vipseg: ``configs/exp/mask_rcnn/smalldata_cpu.yaml`` (the model, augmentation, optimiser
and schedule of that config; its test scale is the reduced scale), or ``--config FILE``.
(b) torchvision: ``maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)`` (BatchNorm,
all layers trained) with its own internal resize set to the same scale (``min_size`` short,
``max_size`` long), trained with the torchvision detection reference's settings: SGD, lr
0.02 x batch / 16, momentum 0.9, weight decay 1e-4, horizontal flip only, linear warm-up
(factor 1e-3, min(1000, iterations per epoch - 1) steps), lr x 0.1 at 16/26 and 22/26 of the run.

Budget: each side first runs ``--probe`` steps to measure its step time, fits its schedule into
the budget (total iterations = budget / step time, as ultralytics' ``time=`` does), and stops
at the budget or the last iteration, whichever comes first. Data loading runs in the training
process (no workers) for both; ``--threads`` torch threads each; the two run one after the
other, so each has the machine alone (on a shared machine the wall budget buys fewer steps:
say so with the numbers).

    python benchmarks/accuracy.py --budget 10m --work-dir /tmp/acc      # the full comparison
    python benchmarks/accuracy.py --budget 1m --work-dir /tmp/acc_smoke  # end-to-end smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipseg.config import load_config  # noqa: E402
from vipseg.config.schema import SplitConfig  # noqa: E402
from vipseg.data.build import build_dataset  # noqa: E402
from vipseg.data.coco import load_coco  # noqa: E402
from vipseg.data.dataset import CocoInstanceDataset, collate  # noqa: E402
from vipseg.data.masks import decode, encode, encode_many, rle_area, rle_to_bbox  # noqa: E402
from vipseg.data.transforms.basic import fit_scale, image_tensor, to_sample  # noqa: E402
from vipseg.engine.evaluation import coco_metrics, evaluate_model  # noqa: E402
from vipseg.engine.optim import build_optimizer, lr_factor_fn  # noqa: E402
from vipseg.engine.predict import predict_options  # noqa: E402
from vipseg.models.build import build_model  # noqa: E402

CONFIG = REPO / "configs/exp/mask_rcnn/smalldata_cpu.yaml"
CLASSES = ["human", "ball"]


def parse_budget(text: str) -> float:
    """'10m', '90s', '1.5h' or plain seconds → seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"budget {text!r}: use e.g. 10m, 90s or 600")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ------------------------------------------------------------------------------------- data
def shrink_annotations(src: Path, out: Path, long_side: int, short_side: int) -> None:
    """``src`` with every image fit inside long x short (masks resized with nearest)."""
    coco = load_coco(src)
    images, anns = [], []
    for im in coco.images:
        h, w = int(im["height"]), int(im["width"])
        s = fit_scale(h, w, long_side, short_side)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        images.append({**im, "width": nw, "height": nh})
        for a in coco.anns_by_image.get(im["id"], []):
            mask = cv2.resize(decode(coco.rle(a)), (nw, nh), interpolation=cv2.INTER_NEAREST)
            if not mask.any():
                continue
            rle = encode(mask)
            anns.append({**a, "segmentation": rle, "area": rle_area(rle), "bbox": rle_to_bbox(rle)})
    out.write_text(json.dumps({"images": images, "annotations": anns,
                               "categories": coco.categories}))


def vipseg_cli(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "vipseg", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def prepare(work: Path, annotations: Path, long_side: int, short_side: int) -> Path:
    """Render train/ and val/ under ``work/data`` (reused when present); returns that root."""
    root = work / "data"
    if (root / "objects" / "index.json").exists():
        return root
    (work / "src").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        small = work / "src" / f"{split}.json"
        shrink_annotations(annotations / f"{split}.json", small, long_side, short_side)
        vipseg_cli("data", "render", "--annotations", str(small), "--out", str(root / split),
                   "--quiet", "--force")
    vipseg_cli("data", "extract-objects", str(root / "train" / "train.json"), "--images",
               str(root / "train" / "train"), "--out", str(root / "objects"), "--no-progress")
    return root


def limit_val(root: Path, n: int) -> Path:
    """A view of ``root`` whose val split holds only its first ``n`` images (same files)."""
    view = root.parent / f"data_val{n}"
    if not view.exists():
        view.mkdir()
        for name in ("train", "objects"):
            (view / name).symlink_to(root / name)
        (view / "val").mkdir()
        (view / "val" / "val").symlink_to(root / "val" / "val")
        data = json.loads((root / "val" / "val.json").read_text())
        keep = {im["id"] for im in data["images"][:n]}
        data["images"] = data["images"][:n]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
        (view / "val" / "val.json").write_text(json.dumps(data))
    return view


def batches(dataset, batch_size: int, seed: int) -> Iterator[tuple[list, list]]:
    """Endless shuffled batches (a new permutation every epoch)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(dataset), generator=g).tolist()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield collate([dataset[j] for j in order[i:i + batch_size]])


# ---------------------------------------------------------------------------------- training
def budgeted_fit(step: Callable[[list, list], torch.Tensor], optimizer: torch.optim.Optimizer,
                 data: Iterator, budget: float, probe: int,
                 factor_for: Callable[[int], Callable[[int], float]]) -> dict:
    """Train until ``budget`` seconds or the schedule's last iteration.

    ``factor_for(total)`` is the lr multiplier per iteration of a ``total``-iteration schedule;
    the first ``probe`` steps run on the schedule of a budget-long guess (100 s per step),
    then ``total`` is set from their measured time.
    """
    base = [g["lr"] for g in optimizer.param_groups]
    start = time.perf_counter()
    total, factor, it = None, factor_for(max(probe + 1, int(budget / 100))), 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= budget or (total is not None and it >= total):
            break
        if it == probe:
            total = max(probe + 1, int(budget / (elapsed / probe)))
            factor = factor_for(total)
        for g, lr in zip(optimizer.param_groups, base):
            g["lr"] = lr * factor(it)
        images, targets = next(data)
        loss = step(images, targets)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"non-finite loss at iteration {it}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        it += 1
    return {"iterations": it, "planned": total, "seconds": time.perf_counter() - start}


def run_vipseg(root: Path, budget: float, probe: int, seed: int, config: Path) -> dict:
    cfg = load_config(config)
    cfg = replace(cfg, dataset=replace(
        cfg.dataset, root=str(root), train=SplitConfig("train/train.json", "train/train"),
        val=SplitConfig("val/val.json", "val/val")))
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.train()
    train_set = build_dataset(cfg, "train", train=True)
    optimizer = build_optimizer(model, cfg.optimizer)
    s, bs = cfg.schedule, cfg.train.batch_size
    ipe = max(1, len(train_set) // bs)

    def factor_for(total: int) -> Callable[[int], float]:
        return lr_factor_fn(policy=s.policy, total_iters=total, iters_per_epoch=ipe,
                            warmup_iters=min(s.warmup_iters, total // 4),
                            warmup_ratio=s.warmup_ratio,
                            steps=tuple(round(k * total / (ipe * cfg.train.epochs))
                                        for k in s.steps),
                            gamma=s.gamma, min_lr_ratio=s.min_lr_ratio)

    def step(images, targets):
        images = [im.as_subclass(torch.Tensor) for im in images]
        targets = [{k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v
                    for k, v in t.items()} for t in targets]
        return sum(model(images, targets).values())

    fit = budgeted_fit(step, optimizer, batches(train_set, bs, seed), budget, probe, factor_for)
    tic = time.perf_counter()
    metrics = evaluate_model(model, build_dataset(cfg, "val", train=False), device="cpu",
                             options=predict_options(cfg, "cpu"))
    return {**fit, "eval_seconds": time.perf_counter() - tic, "metrics": metrics}


class FlipOnly:
    """torchvision reference training transform: to tensors, horizontal flip with p 0.5;
    labels shifted to 1..C (0 is torchvision's background)."""

    def __call__(self, raw: dict):
        image, target = to_sample(raw)
        if torch.rand(()) < 0.5:
            w = image.shape[-1]
            image = image.flip(-1)
            boxes = target["boxes"].as_subclass(torch.Tensor).clone()
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            target["boxes"], target["masks"] = boxes, target["masks"].flip(-1)
        return image, {"boxes": target["boxes"].as_subclass(torch.Tensor),
                       "labels": target["labels"] + 1,
                       "masks": target["masks"].as_subclass(torch.Tensor).to(torch.uint8)}


def run_torchvision(root: Path, budget: float, probe: int, seed: int, long_side: int,
                    short_side: int, batch_size: int) -> dict:
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    torch.manual_seed(seed)
    model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                     num_classes=len(CLASSES) + 1, min_size=short_side,
                                     max_size=long_side)
    model.train()
    train_set = CocoInstanceDataset(root / "train/train.json", root / "train/train", CLASSES,
                                    transform=FlipOnly())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02 * batch_size / 16, momentum=0.9,
                                weight_decay=1e-4)
    ipe = max(1, len(train_set) // batch_size)

    def factor_for(total: int) -> Callable[[int], float]:
        warm = max(1, min(1000, ipe - 1))
        milestones = (round(total * 16 / 26), round(total * 22 / 26))

        def f(it: int) -> float:
            g = 0.1 ** sum(it >= m for m in milestones)
            if it < warm:
                a = it / warm
                g *= 1e-3 * (1 - a) + a
            return g
        return f

    def step(images, targets):
        return sum(model([im.float() / 255 for im in images], targets).values())

    fit = budgeted_fit(step, optimizer, batches(train_set, batch_size, seed), budget, probe,
                       factor_for)
    tic = time.perf_counter()
    val = CocoInstanceDataset(root / "val/val.json", root / "val/val", CLASSES)
    model.eval()
    results = []
    with torch.inference_mode():
        for i in range(len(val)):
            raw = val.load_raw(i)
            out = model([image_tensor(raw["image"]).float() / 255])[0]
            masks = (out["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
            for rle, box, label, score in zip(encode_many(masks), out["boxes"].tolist(),
                                              out["labels"].tolist(), out["scores"].tolist()):
                results.append({"image_id": raw["image_id"], "segmentation": rle,
                                "category_id": val.label_to_category_id(label - 1),
                                "score": float(score),
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    metrics = coco_metrics(val.ann_file, results, class_names=CLASSES)
    return {**fit, "eval_seconds": time.perf_counter() - tic, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=parse_budget, default=600.0,
                    help="training wall-clock budget per side, e.g. 10m, 90s (default 10m)")
    ap.add_argument("--work-dir", type=Path, required=True, help="rendered data and results")
    ap.add_argument("--annotations", type=Path,
                    default=REPO.parent / "shared" / "data" / "deepsport",
                    help="folder with the DeepSport train.json and val.json")
    ap.add_argument("--scale", default="640x480", help="reduced size, LONGxSHORT pixels")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for each side")
    ap.add_argument("--probe", type=int, default=5, help="steps timed to fit the schedule")
    ap.add_argument("--tv-batch", type=int, default=2, help="torchvision batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=CONFIG,
                    help="vipseg's side: this config instead of smalldata_cpu.yaml")
    ap.add_argument("--only", choices=["vipseg", "torchvision"], default=None,
                    help="run one side only (no ratio)")
    ap.add_argument("--val-images", type=int, default=None,
                    help="score only the first N val images (smoke runs; default: all)")
    args = ap.parse_args(argv)
    long_side, short_side = sorted((int(v) for v in args.scale.lower().split("x")), reverse=True)
    torch.set_num_threads(args.threads)
    root = prepare(args.work_dir, args.annotations, long_side, short_side)
    if args.val_images is not None:
        root = limit_val(root, args.val_images)
    print(f"data: {root} ({args.scale}); budget {args.budget:.0f} s per side, "
          f"{args.threads} thread(s)", flush=True)
    rows = {}
    sides = (("vipseg", lambda: run_vipseg(root, args.budget, args.probe, args.seed,
                                             args.config)),
             ("torchvision", lambda: run_torchvision(
                 root, args.budget, args.probe, args.seed, long_side, short_side, args.tv_batch)))
    for name, run in sides:
        if args.only not in (None, name):
            continue
        cpu0 = time.process_time()
        r = run()
        r["cpu_seconds"] = time.process_time() - cpu0
        rows[name] = r
        m = r["metrics"]
        print(f"{name:<12} {r['iterations']:>5} iters in {r['seconds']:.0f} s "
              f"(cpu {r['cpu_seconds']:.0f} s incl. eval) | val mask AP {m['segm/AP']:.3f} AP50 {m['segm/AP50']:.3f} "
              f"(human {m['segm/AP/human']:.3f}, ball {m['segm/AP/ball']:.3f}) | box AP "
              f"{m['bbox/AP']:.3f}", flush=True)
    ratio = None
    if len(rows) == 2:
        a, b = rows["vipseg"]["metrics"]["segm/AP"], rows["torchvision"]["metrics"]["segm/AP"]
        ratio = a / b if b > 0 else float("inf")
        print(f"ratio vipseg / torchvision mask AP: {ratio:.2f} (goal >= 2)")
    (args.work_dir / "accuracy.json").write_text(json.dumps(
        {"budget_s": args.budget, "scale": args.scale, "threads": args.threads,
         "ratio": ratio, **rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
