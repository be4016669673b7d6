"""Training throughput: vipseg Mask R-CNN R50-FPN against torchvision's stock model.

Measures training images/s (forward, backward and an SGD step) at 1333x800 for
``configs/_base_/models/mask_rcnn_r50_fpn.yaml`` (merged with the VIPriors dataset base: GN in
backbone, FPN and heads, 4-conv box and mask heads) and for a variant of it with every norm
switched to BN, against ``torchvision.models.detection.maskrcnn_resnet50_fpn_v2(weights=None,
weights_backbone=None, num_classes=3)`` (BN, 4-conv heads), on the same device, batch and random
images with a few random box/mask targets. AMP bf16 for all on CUDA. The models are timed in
interleaved rounds (one step of each per round, the order rotating) so that load from other
processes on a shared machine hits them alike. Prints images/s of each and the ratio
vipseg / torchvision (goal >= 1), from the median step time of each.

    python benchmarks/train_throughput.py --device cuda --iters 20 --batch 2
    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py --device cpu --iters 3 --batch 1
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

from vipseg.config.loader import load_config
from vipseg.models.build import build_model

REPO = Path(__file__).resolve().parents[1]
BASES = ["configs/_base_/datasets/vipriors_instance.yaml",
         "configs/_base_/models/mask_rcnn_r50_fpn.yaml"]
BN_OVERRIDES = ["model.backbone.norm=BN", "model.neck.norm=BN", "model.roi_heads.norm=BN"]
WIDTH, HEIGHT = 1333, 800


def vipseg_r50(overrides: list[str]) -> torch.nn.Module:
    """vipseg's Mask R-CNN R50-FPN from the base configs, with ``key=value`` overrides."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file = Path(tmp) / "r50.yaml"
        cfg_file.write_text("_base_: [" + ", ".join(str(REPO / b) for b in BASES) + "]\n")
        return build_model(load_config(cfg_file, overrides))


def random_batch(batch: int, device: torch.device, seed: int = 0) -> tuple[list, list]:
    """``batch`` uint8 images [3, 800, 1333] with 3..8 objects each (rectangular masks);
    labels in 0..1 (vipseg's convention)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=g, dtype=torch.uint8))
        n = int(torch.randint(3, 9, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([WIDTH - 200, HEIGHT - 200])
        wh = 16 + torch.rand(n, 2, generator=g) * 180
        boxes = torch.cat([xy, xy + wh], 1).round()
        masks = torch.zeros(n, HEIGHT, WIDTH, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = True
        targets.append({"boxes": boxes, "labels": torch.randint(0, 2, (n,), generator=g),
                        "masks": masks})
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return images, targets


def for_torchvision(images: list, targets: list) -> tuple[list, list]:
    """Stock inputs: float images in 0..1, labels shifted past background 0."""
    return ([im.float() / 255 for im in images],
            [{**t, "labels": t["labels"] + 1} for t in targets])


class Runner:
    """One model, its optimiser and inputs; ``step()`` times one training iteration."""

    def __init__(self, name: str, model: torch.nn.Module, inputs: tuple[list, list],
                 device: torch.device) -> None:
        self.name, self.inputs, self.device = name, inputs, device
        self.model = model.to(device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.times: list[float] = []

    def step(self) -> float:
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
               else contextlib.nullcontext())
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        with amp:
            loss = sum(self.model(*self.inputs).values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        sync()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed iterations per model first (0 is fine on CPU)")
    parser.add_argument("--batch", type=int, default=2, help="images per iteration")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    images, targets = random_batch(args.batch, device)
    runners = [
        Runner("torchvision maskrcnn_resnet50_fpn_v2 (BN)",
               maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=3),
               for_torchvision(images, targets), device),
        Runner("vipseg mask_rcnn_r50_fpn (GN, config default)", vipseg_r50([]),
               (images, targets), device),
        Runner("vipseg mask_rcnn_r50_fpn, norms set to BN", vipseg_r50(BN_OVERRIDES),
               (images, targets), device),
    ]
    print(f"device {device}, batch {args.batch}, {WIDTH}x{HEIGHT}, warm-up {args.warmup}, "
          f"{args.iters} timed iterations each (interleaved), threads {torch.get_num_threads()}"
          + (", AMP bf16" if device.type == "cuda" else ""))
    for i in range(args.warmup + args.iters):
        first = i % len(runners)  # rotate who goes first each round
        for r in runners[first:] + runners[:first]:
            seconds = r.step()
            if i >= args.warmup:
                r.times.append(seconds)
    base = args.batch / statistics.median(runners[0].times)
    for r in runners:
        ips = args.batch / statistics.median(r.times)
        steps = " ".join(f"{t:.2f}" for t in r.times)
        print(f"{r.name:48s} {ips:8.3f} img/s  ratio to torchvision {ips / base:.3f}  "
              f"(step seconds: {steps})")


if __name__ == "__main__":
    main()
