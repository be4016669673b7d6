"""``vipseg data norm``: per-channel RGB mean and std (0..255) of a dataset's images.

Streams one image at a time, accumulating exact per-channel histograms (256 bins, int64), so
memory does not grow with the dataset and the result does not depend on the order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vipseg.data.coco import load_coco
from vipseg.data.dataset import read_image


def channel_stats(ann_file: str | Path, images_dir: str | Path, *,
                  progress: bool = True) -> dict[str, Any]:
    """``{"mean": [r, g, b], "std": [r, g, b], "images": n, "pixels": n}`` over all images."""
    coco = load_coco(ann_file, images_dir=images_dir, require_annotations=False)
    hist = np.zeros((3, 256), np.int64)
    items = coco.images
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="norm", unit="img")
    for img in items:
        pixels = read_image(Path(images_dir) / img["file_name"]).reshape(-1, 3)
        for c in range(3):
            hist[c] += np.bincount(pixels[:, c], minlength=256)
    n = int(hist[0].sum())
    if n == 0:
        from vipseg.errors import DataError
        raise DataError(f"{ann_file}: no images to measure")
    v = np.arange(256, dtype=np.float64)
    mean = (hist * v).sum(1) / n
    var = (hist * (v - mean[:, None]) ** 2).sum(1) / n
    return {"mean": [round(float(m), 3) for m in mean],
            "std": [round(float(s), 3) for s in np.sqrt(var)],
            "images": len(coco.images), "pixels": n}


def yaml_snippet(stats: dict[str, Any]) -> str:
    """The ``dataset.mean/std`` lines to paste into a dataset config."""
    fmt = ", ".join
    return (f"dataset:\n  mean: [{fmt(str(m) for m in stats['mean'])}]\n"
            f"  std: [{fmt(str(s) for s in stats['std'])}]")
