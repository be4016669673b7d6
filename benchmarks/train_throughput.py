"""Training throughput and peak memory: every vipseg model family (R50-FPN) against
torchvision's stock Mask R-CNN v2.

Measures training images/s (forward, backward and an SGD step) at 1333x800 for
``configs/_base_/models/mask_rcnn_r50_fpn.yaml`` (merged with the VIPriors dataset base: GN in
backbone, FPN and heads, 4-conv box and mask heads), a variant of it with every norm switched
to BN, and each family's R50 config ``configs/exp/<family>/r50_fpn_gn_vipriors.yaml``
(``--families``: mask_rcnn_iou, cascade_mask_rcnn, htc, htc_iou by default), against
``torchvision.models.detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
num_classes=3)`` (BN, 4-conv heads), on the same device, batch and random images with a few
random box/mask targets. AMP bf16 for all on CUDA. The models are timed in interleaved rounds
(one step of each per round, the order rotating) so that load from other processes on a
shared machine hits them alike. Prints images/s of each, the ratio vipseg / torchvision from
the median step time of each, and the peak memory of a step: on CUDA
``torch.cuda.max_memory_allocated`` (reset before each step), on CPU the peak resident set
size during the step above the RSS before it (sampled every 5 ms from /proc/self/statm).

    python benchmarks/train_throughput.py --device cuda --iters 20 --batch 2
    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py --device cpu --iters 1 --warmup 0 \
        --batch 1 --skip-bn-variant
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
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
FAMILY_CONFIGS = ["mask_rcnn_iou", "cascade_mask_rcnn", "htc", "htc_iou"]
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def vipseg_r50(overrides: list[str]) -> torch.nn.Module:
    """vipseg's Mask R-CNN R50-FPN from the base configs, with ``key=value`` overrides."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file = Path(tmp) / "r50.yaml"
        cfg_file.write_text("_base_: [" + ", ".join(str(REPO / b) for b in BASES) + "]\n")
        return build_model(load_config(cfg_file, overrides))


def family_r50(name: str) -> torch.nn.Module:
    """The model of ``configs/exp/<name>/r50_fpn_gn_vipriors.yaml``."""
    return build_model(load_config(REPO / f"configs/exp/{name}/r50_fpn_gn_vipriors.yaml"))


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: ``peak`` is the largest RSS above the entry RSS while inside."""

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak_abs = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_abs = max(self.peak_abs, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_abs = max(self.peak_abs, rss_bytes())
        self.peak = self.peak_abs - self.start


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
        self.peaks: list[int] = []

    def step(self) -> tuple[float, int]:
        """Seconds and peak memory bytes of one training iteration (module doc)."""
        cuda = self.device.type == "cuda"
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext())
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        with (contextlib.nullcontext() if cuda else PeakRSS()) as rss:
            start = time.perf_counter()
            with amp:
                loss = sum(self.model(*self.inputs).values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            sync()
            seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(self.device) if cuda else rss.peak
        return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed iterations per model first (0 is fine on CPU)")
    parser.add_argument("--batch", type=int, default=2, help="images per iteration")
    parser.add_argument("--families", nargs="*", default=FAMILY_CONFIGS,
                        help="configs/exp/<name>/r50_fpn_gn_vipriors.yaml models to add")
    parser.add_argument("--skip-bn-variant", action="store_true",
                        help="leave out the mask_rcnn_r50_fpn variant with BN norms")
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
        *([] if args.skip_bn_variant else [
            Runner("vipseg mask_rcnn_r50_fpn, norms set to BN", vipseg_r50(BN_OVERRIDES),
                   (images, targets), device)]),
        *[Runner(f"vipseg {name} r50_fpn_gn_vipriors", family_r50(name), (images, targets),
                 device) for name in args.families],
    ]
    memory = ("CUDA max_memory_allocated" if device.type == "cuda"
              else "CPU peak RSS above step start")
    print(f"peak memory: {memory}; load average {os.getloadavg()[0]:.1f}")
    print(f"device {device}, batch {args.batch}, {WIDTH}x{HEIGHT}, warm-up {args.warmup}, "
          f"{args.iters} timed iterations each (interleaved), threads {torch.get_num_threads()}"
          + (", AMP bf16" if device.type == "cuda" else ""))
    for i in range(args.warmup + args.iters):
        first = i % len(runners)  # rotate who goes first each round
        for r in runners[first:] + runners[:first]:
            seconds, peak = r.step()
            print(f"  round {i}: {r.name} {seconds:.2f} s, peak {peak / 2**20:.0f} MiB", flush=True)
            if i >= args.warmup:
                r.times.append(seconds)
                r.peaks.append(peak)
    base = args.batch / statistics.median(runners[0].times)
    for r in runners:
        ips = args.batch / statistics.median(r.times)
        steps = " ".join(f"{t:.2f}" for t in r.times)
        print(f"{r.name:48s} {ips:8.3f} img/s  ratio to torchvision {ips / base:.3f}  "
              f"peak {max(r.peaks) / 2**20:7.0f} MiB  (step seconds: {steps})")


if __name__ == "__main__":
    main()
