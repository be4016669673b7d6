"""Peak memory and time of pasting 100 soft masks on a 2456x2054 image and RLE-encoding them.

- ``chunked``: vipseg's ``paste_masks_to_rles`` (box-local resize, ``--chunk`` uint8 masks
  at a time, encoded chunk by chunk).
- ``full``: the same paste done densely, as detectron2's ``_do_paste_mask`` without its
  box-local crop: every pixel of the image samples all 100 masks at once (a [100, H, W, 2]
  sampling grid and 100 full-size float masks), thresholded and encoded in one go.

Each variant runs in a fresh subprocess; its peak is the rise of the process's maximum
resident set size (``ru_maxrss``) over the level after imports and inputs. Both must give the
same RLEs (checked by hash). Usage: ``python benchmarks/paste_memory.py [--chunk 16]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

WIDTH, HEIGHT, DETECTIONS, MASK = 2456, 2054, 100, 28


def make_inputs(seed: int = 0):
    """100 detections: people-sized and ball-sized boxes spread over the image."""
    import torch

    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(DETECTIONS, 1, MASK, MASK, generator=g)
    big = torch.rand(DETECTIONS, 1, generator=g) < 0.7
    wh = torch.where(big, torch.tensor([[120.0, 320.0]]), torch.tensor([[30.0, 30.0]]))
    wh = wh * (0.5 + torch.rand(DETECTIONS, 2, generator=g))
    xy = torch.rand(DETECTIONS, 2, generator=g) * torch.tensor([WIDTH, HEIGHT]) - wh / 2
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, WIDTH)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, HEIGHT)
    return masks, boxes


def run_variant(variant: str, chunk: int) -> dict:
    import torch
    import torch.nn.functional as F

    from vipseg.data.masks import encode_many
    from vipseg.engine.inference import paste_masks_to_rles

    torch.set_num_threads(1)
    masks, boxes = make_inputs()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if variant == "chunked":
        rles = paste_masks_to_rles(masks, boxes, (HEIGHT, WIDTH), mask_thresh=0.5, chunk=chunk)
    else:
        x0, y0, x1, y1 = boxes[:, :, None].unbind(1)
        xs = (torch.arange(WIDTH, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        ys = (torch.arange(HEIGHT, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack([xs[:, None, :].expand(-1, HEIGHT, -1),
                            ys[:, :, None].expand(-1, -1, WIDTH)], dim=3)
        full = F.grid_sample(masks, grid, align_corners=False)[:, 0] > 0.5
        rles = encode_many(full.numpy())
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    digest = hashlib.sha1(json.dumps(rles, sort_keys=True).encode()).hexdigest()
    return {"peak_mib": peak_kib / 1024, "seconds": seconds, "rles": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=16, help="masks per chunk (vipseg)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant (best kept)")
    parser.add_argument("--child", choices=("chunked", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.chunk)))
        return
    res = {}
    for variant in ("chunked", "full"):
        runs = [json.loads(subprocess.run(
            [sys.executable, __file__, "--child", variant, "--chunk", str(args.chunk)],
            check=True, capture_output=True, text=True).stdout) for _ in range(args.repeats)]
        res[variant] = {"peak_mib": min(r["peak_mib"] for r in runs),
                        "seconds": min(r["seconds"] for r in runs), "rles": runs[0]["rles"]}
    c, f = res["chunked"], res["full"]
    print(f"{DETECTIONS} masks on {WIDTH}x{HEIGHT}, chunk {args.chunk}, best of {args.repeats}")
    print(f"chunked (vipseg):        peak +{c['peak_mib']:8.1f} MiB  {c['seconds']:6.2f} s")
    print(f"full (dense, all 100):   peak +{f['peak_mib']:8.1f} MiB  {f['seconds']:6.2f} s")
    print(f"memory ratio full/chunked: {f['peak_mib'] / max(c['peak_mib'], 1e-9):.1f}x; "
          f"time ratio full/chunked: {f['seconds'] / c['seconds']:.2f}x; "
          f"identical RLEs: {c['rles'] == f['rles']}")


if __name__ == "__main__":
    main()
