"""Peak memory and time of one training step: Swin-B and CBSwin-B Mask R-CNN, with and without
activation checkpointing (``model.backbone.checkpointing``), side by side, ratios printed.

Each configuration runs in its own subprocess, so that CPU peak RSS (``ru_maxrss``) is that
configuration's alone. The input is one synthetic image of ``--size`` (default 1760x1280, the
challenge's crop) with a few objects.

- CUDA: AMP bf16 (as ``train.amp: bf16``); one warm-up step (forward, backward, AdamW update),
  then one measured step; ``torch.cuda.max_memory_allocated`` over that step, so it includes
  the weights, gradients and AdamW state: what a GPU must hold.
- CPU: fp32; one forward + backward (no optimizer update: AdamW's state, 2x the weights, is
  allocated at the update and would hide the activations in the RSS peak); peak RSS includes
  the weights and gradients (the RSS before the step is reported beside it).

    PYTHONPATH=. python benchmarks/backbone_memory.py                  # 1760x1280, CUDA if any
    PYTHONPATH=. python benchmarks/backbone_memory.py --size 704 512   # reduced size, CPU

Configs: configs/exp/mask_rcnn/{swin_b,cbswin_b}_fpn_gn_vipriors_recipe.yaml (the default pair)
and, with ``--models HTC-CBSwin-B``, configs/exp/htc_iou/vipriors_best.yaml. A configuration
whose child fails (for instance killed for memory: ``--max-rss-gib`` caps its address space)
is reported as such and the others still run. ``--checkpointing on`` (or ``off``) runs one
setting only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"Swin-B": "configs/exp/mask_rcnn/swin_b_fpn_gn_vipriors_recipe.yaml",
           "CBSwin-B": "configs/exp/mask_rcnn/cbswin_b_fpn_gn_vipriors_recipe.yaml",
           # the issue's goal model: HTC + mask-IoU on CBSwin-B (the GPU starting config)
           "HTC-CBSwin-B": "configs/exp/htc_iou/vipriors_best.yaml"}
DEFAULT_MODELS = ["Swin-B", "CBSwin-B"]


def synthetic_sample(width: int, height: int, objects: int = 8):
    """One image [3, H, W] uint8 and its target (``objects`` boxes with full masks)."""
    import torch
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    boxes, masks = [], torch.zeros(objects, height, width, dtype=torch.bool)
    for k in range(objects):
        w, h = width // 20 + 8 * k, height // 6 + 8 * k
        x0, y0 = (width - w) * k // objects, (height - h) * (objects - k) // objects
        boxes.append([x0, y0, x0 + w, y0 + h])
        masks[k, y0:y0 + h, x0 + w // 4:x0 + 3 * w // 4] = True
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32),
              "labels": torch.zeros(objects, dtype=torch.int64), "masks": masks}
    return image, target


def child(name: str, checkpointing: bool, width: int, height: int, threads: int) -> dict:
    """Build the model, run one measured step; returns the measurements."""
    import torch
    from vipseg.config.loader import load_config
    from vipseg.models.build import build_model
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(REPO / CONFIGS[name],
                      [f"model.backbone.checkpointing={str(checkpointing).lower()}"])
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = build_model(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image, target = synthetic_sample(width, height)
    images, targets = [image.to(device)], [{k: v.to(device) for k, v in target.items()}]

    def step(update: bool) -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            opt.step()
        return float(loss)

    if cuda:
        step(update=True)  # warm-up: cuDNN/cuBLAS workspaces and optimizer state
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
    start = time.perf_counter()
    loss = step(update=cuda)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"name": name, "checkpointing": checkpointing, "seconds": seconds, "loss": loss,
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
           "device": "cuda" if cuda else "cpu"}
    if cuda:
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        out["before_step_gib"] = before
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1760, 1280],
                        metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(CONFIGS))
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default="both")
    parser.add_argument("--max-rss-gib", type=float, default=None,
                        help="address-space limit of each child (RLIMIT_AS), GiB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "CHECKPOINTING"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = args.size
    if args.child:
        name, ckpt = args.child
        if args.max_rss_gib:
            limit = int(args.max_rss_gib * 2 ** 30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(child(name, ckpt == "1", width, height, args.threads)))
        return
    rows = []
    settings = {"both": (False, True), "on": (True,), "off": (False,)}[args.checkpointing]
    for name in args.models:
        for ckpt in settings:
            cmd = [sys.executable, __file__, "--child", name, "1" if ckpt else "0",
                   "--size", str(width), str(height), "--threads", str(args.threads)]
            if args.max_rss_gib:
                cmd += ["--max-rss-gib", str(args.max_rss_gib)]
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            if run.returncode != 0:
                last = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{name:9s} ckpt={'on ' if ckpt else 'off'} FAILED (exit "
                      f"{run.returncode}): {last[:200]}", flush=True)
                continue
            rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{name:9s} ckpt={'on ' if ckpt else 'off'} peak {r['peak_gib']:6.2f} GiB"
                  + (f" (before step {r['before_step_gib']:.2f})" if "before_step_gib" in r else "")
                  + f"  step {r['seconds']:7.1f} s  loss {r['loss']:.3f}  "
                  f"params {r['params_m']:.1f} M  [{r['device']}]", flush=True)
    if not rows:
        sys.exit("no configuration completed")
    kind = "CUDA max_memory_allocated, AMP bf16" if rows[0]["device"] == "cuda" else \
        "CPU peak RSS of one forward + backward, fp32"
    print(f"\n{width}x{height} batch 1, {kind}")
    by = {(r["name"], r["checkpointing"]): r for r in rows}
    for name in args.models:
        if (name, False) not in by or (name, True) not in by:
            continue
        off, on = by[(name, False)], by[(name, True)]
        print(f"{name}: checkpointing memory x{on['peak_gib'] / off['peak_gib']:.2f}, "
              f"time x{on['seconds'] / off['seconds']:.2f}")
    a = args.models[0]
    for b in args.models[1:]:
        for ckpt in (False, True):
            if (a, ckpt) not in by or (b, ckpt) not in by:
                continue
            print(f"{b} / {a} (checkpointing {'on' if ckpt else 'off'}): memory "
                  f"x{by[(b, ckpt)]['peak_gib'] / by[(a, ckpt)]['peak_gib']:.2f}, time "
                  f"x{by[(b, ckpt)]['seconds'] / by[(a, ckpt)]['seconds']:.2f}")


if __name__ == "__main__":
    main()
