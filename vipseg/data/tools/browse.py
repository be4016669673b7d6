"""``vipseg data browse``: render training samples exactly as the loader yields them.

Each sample of the training dataset (its transform included) is drawn as a PNG: instance masks
as translucent colours, their boxes, and the class name above each box.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from vipseg.data.transforms.basic import packed_target
from vipseg.errors import ConfigError
from vipseg.utils.io import atomic_dir, atomic_write_bytes, ensure_new_output
from vipseg.utils.packed_masks import unpack_crops

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128),
                    (170, 110, 40), (128, 0, 0)], np.uint8)


def draw_sample(image: torch.Tensor, target: dict, classes: Sequence[str],
                alpha: float = 0.45) -> np.ndarray:
    """Sample ``(image [3, H, W] uint8, target)`` → RGB uint8 [H, W, 3] with masks (packed
    ``mask_boxes`` / ``mask_data`` or full ``masks``, drawn crop by crop), boxes and class
    names drawn."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).numpy()).copy()
    packed = packed_target(target)
    crops = unpack_crops(packed["mask_data"], packed["mask_boxes"])
    for k, (crop, (x0, y0, x1, y1)) in enumerate(zip(crops, packed["mask_boxes"].tolist())):
        colour = PALETTE[k % len(PALETTE)]
        region, m = canvas[y0:y1, x0:x1], crop.numpy().astype(bool)
        region[m] = (region[m] * (1 - alpha) + colour * alpha).astype(np.uint8)
    thickness = max(1, round(max(canvas.shape[:2]) / 800))
    scale = max(0.4, max(canvas.shape[:2]) / 1600)
    for k, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
        colour = tuple(int(c) for c in PALETTE[k % len(PALETTE)])
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
        name = classes[label] if 0 <= label < len(classes) else str(label)
        cv2.putText(canvas, name, (x0, max(12, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, thickness, cv2.LINE_AA)
    return canvas


COMMAND = "data browse"


def browse(dataset: Any, classes: Sequence[str], out_dir: str | Path, num: int, seed: int = 0,
           force: bool = False, show: bool = False,
           inputs: Sequence[str | Path] = ()) -> list[Path]:
    """Write ``num`` samples of ``dataset`` (visited in a seeded random order, cycling) as
    ``out_dir/NNNN_<image_id>.png``; ``show`` also opens each in a window (needs
    :func:`has_gui`). Returns the paths.

    The folder appears complete or not at all (written to a temporary folder, then renamed);
    an existing one is replaced only with ``force`` and only if an earlier browse wrote it.
    ``inputs`` (config, dataset root) may not be or hold the output. Seeds torch with ``seed``
    first, so the same seed draws the same augmentations.
    """
    if len(dataset) == 0:
        raise ConfigError("the dataset has no images to browse")
    out = Path(out_dir)
    ensure_new_output(out, force, folder=True, inputs=inputs, command=COMMAND)
    torch.manual_seed(seed)
    order = torch.randperm(len(dataset)).tolist()
    names = []
    with atomic_dir(out, force, command=COMMAND, inputs=inputs) as tmp:
        for k in range(num):
            image, target = dataset[order[k % len(order)]]
            rgb = draw_sample(image, target, classes)
            ident = re.sub(r"[^A-Za-z0-9._-]+", "_", str(target["image_id"]))
            name = f"{k:04d}_{ident}.png"
            png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
            atomic_write_bytes(tmp / name, png.tobytes())
            names.append(name)
            if show:
                cv2.imshow("vipseg data browse (any key: next, q: quit)",
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(0) & 0xFF == ord("q"):
                    break
    if show:
        cv2.destroyAllWindows()
    return [out / name for name in names]


def has_gui() -> bool:
    """Whether this OpenCV build can open windows (the headless wheel cannot)."""
    info = cv2.getBuildInformation()
    gui = re.search(r"GUI:\s*(\S+)", info)
    return gui is not None and gui.group(1).upper() not in ("NONE", "NO")
