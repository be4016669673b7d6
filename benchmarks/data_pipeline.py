"""Samples/s per CPU core of the training pipeline with copy-paste, fast vs. resize-everything.

Inputs: a few 2336×1752 images of the DeepSport train annotations painted by
``vipseg data render`` (real masks, rendered pixels), their object bank from
``vipseg data extract-objects``, and the reference recipe ``configs/_base_/augment/vipriors_recipe.yaml``
(11 scales 1333×800 … 3680×3080, 1760×1280 crop, shear, translate, photometric, copy-paste).
Both implementations execute the *same* drawn parameters on raw samples already in memory
(image decoding is the same for both and is reported separately), with torch and OpenCV
limited to one thread; rates are per second of this process's CPU time (robust on a shared
machine).

    .venv/bin/python benchmarks/data_pipeline.py [--images 4] [--samples 24] [--seed 0]

Prints both rates and the ratio; the goal is ≥ 3× and ≥ 2 samples/s per core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.data_pipeline_reference import reference_apply  # noqa: E402
from vipseg.config.loader import load_config  # noqa: E402
from vipseg.data.dataset import CocoInstanceDataset  # noqa: E402
from vipseg.data.tools.demo.render_annotations import render_annotations  # noqa: E402
from vipseg.data.tools.extract_objects import extract_objects  # noqa: E402
from vipseg.data.transforms.pipeline import build_train_transform  # noqa: E402

DEEPSPORT = REPO.parent / "shared" / "data" / "deepsport" / "train.json"
RECIPE = REPO / "configs" / "_base_" / "augment" / "vipriors_recipe.yaml"


def prepare(tmp: Path, n_images: int) -> tuple[Path, Path]:
    """Render ``n_images`` 2336×1752 DeepSport images and extract their object bank."""
    coco = json.loads(DEEPSPORT.read_text())
    images = [im for im in coco["images"] if (im["width"], im["height"]) == (2336, 1752)][:n_images]
    ids = {im["id"] for im in images}
    subset = {"images": images, "categories": coco["categories"],
              "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    (tmp / "subset.json").write_text(json.dumps(subset))
    render_annotations(tmp / "subset.json", tmp / "data")
    ann, image_dir = tmp / "data" / "subset.json", tmp / "data" / "subset"
    extract_objects(ann, image_dir, tmp / "data" / "objects")
    return ann, image_dir


def rate(fn, raws: list[dict], params: list) -> float:
    """Samples per second of ``fn(raw, params)`` over the prepared list."""
    start = time.process_time()
    for i, p in enumerate(params):
        fn(raws[i % len(raws)], p)
    return len(params) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="rendered 2336x1752 inputs")
    parser.add_argument("--samples", type=int, default=24, help="samples timed per implementation")
    parser.add_argument("--seed", type=int, default=0, help="parameter draws")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = load_config(RECIPE)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ann, image_dir = prepare(tmp, args.images)
        ds = CocoInstanceDataset(ann, image_dir, cfg.dataset.classes, transform=lambda r: r)
        t0 = time.process_time()
        raws = [ds.load_raw(i) for i in range(len(ds))]
        load_s = (time.process_time() - t0) / len(raws)
        transform = build_train_transform(cfg.augment, str(tmp / "data"), cfg.dataset.classes)
        rng = np.random.default_rng(args.seed)
        t0 = time.process_time()
        params = [transform.sample(raws[i % len(raws)], rng) for i in range(args.samples)]
        sample_s = (time.process_time() - t0) / args.samples
        n_paste = np.mean([len(p.pastes) for p in params])
        n_inst = np.mean([len(r["rles"]) for r in raws])
        transform.apply(raws[0], params[0])  # warm caches (bank crops) for both
        fast = rate(lambda r, p: transform.apply(r, p), raws, params)
        ref = rate(lambda r, p: reference_apply(transform, r, p), raws, params)
    fast_total = 1.0 / (1.0 / fast + sample_s)
    ref_total = 1.0 / (1.0 / ref + sample_s)
    print(f"inputs: {len(raws)} images 2336x1752, {n_inst:.1f} instances each, "
          f"{n_paste:.1f} pastes per sample; {args.samples} samples; 1 thread")
    print(f"parameter drawing (court estimate, paste plan): {sample_s * 1e3:.1f} ms/sample; "
          f"PNG decode (same for both, not counted): {load_s * 1e3:.0f} ms/image")
    print(f"fast pipeline:      {fast_total:.2f} samples/s/core")
    print(f"resize-everything:  {ref_total:.2f} samples/s/core")
    print(f"ratio: {fast_total / ref_total:.1f}x")
    with_load = [1.0 / (1.0 / r + load_s) for r in (fast_total, ref_total)]
    print(f"with PNG decode: fast {with_load[0]:.2f}, resize-everything {with_load[1]:.2f} "
          f"samples/s/core, ratio {with_load[0] / with_load[1]:.1f}x")


if __name__ == "__main__":
    main()
