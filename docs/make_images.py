"""Regenerate the pictures of docs/demo.md: rendered scenes with their masks overlaid.

    .venv/bin/python docs/make_images.py          # writes docs/images/*.png (640 px wide)

Renders one native-size demo scene (seed 0) and the first DeepSport val image through
``vipseg data render``, draws every instance mask, box and class with ``vipseg data browse``'s
``draw_sample``, and keeps a full view, a close-up of the busiest region and the render.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import io

import cv2
import numpy as np
from PIL import Image

from vipseg.cli.main import main
from vipseg.data.dataset import CocoInstanceDataset
from vipseg.data.tools.browse import draw_sample
from vipseg.utils.io import atomic_write_bytes

DOCS = Path(__file__).resolve().parent
DEEPSPORT_VAL = DOCS.parents[1] / "shared" / "data" / "deepsport" / "val.json"
WIDTH = 640


def overlay(ann: Path, images: Path, classes: list[str]) -> np.ndarray:
    """The first image of ``ann`` with its masks drawn, RGB uint8 [H, W, 3]."""
    image, target = CocoInstanceDataset(ann, images, classes)[0]
    return draw_sample(image, target, classes)


def busiest_crop(rgb: np.ndarray, ann: Path, size: tuple[int, int] = (640, 400)) -> np.ndarray:
    """The ``size`` (w, h) window holding the most box centres of the first image's instances."""
    coco = json.loads(ann.read_text())
    first = coco["images"][0]["id"]
    centres = np.array([[a["bbox"][0] + a["bbox"][2] / 2, a["bbox"][1] + a["bbox"][3] / 2]
                        for a in coco["annotations"] if a["image_id"] == first])
    w, h = size
    best = max(((x, y) for x in range(0, rgb.shape[1] - w + 1, 40)
                for y in range(0, rgb.shape[0] - h + 1, 40)),
               key=lambda xy: int(((centres >= xy) & (centres < (xy[0] + w, xy[1] + h))).all(1).sum()))
    return rgb[best[1]:best[1] + h, best[0]:best[0] + w]


def save(name: str, rgb: np.ndarray) -> None:
    """Write ``rgb`` as docs/images/<name>.png, WIDTH pixels wide, palette PNG."""
    h = round(rgb.shape[0] * WIDTH / rgb.shape[1])
    small = cv2.resize(rgb, (WIDTH, h), interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()  # a 128-colour palette keeps each picture under ~200 KB
    Image.fromarray(small).quantize(colors=128).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(DOCS / "images" / f"{name}.png", buf.getvalue())
    print(f"wrote docs/images/{name}.png ({buf.tell() // 1024} KiB)")


def run() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        main(["data", "demo", "--out", str(demo), "--native", "--train", "1", "--val", "0",
              "--test", "0", "--seed", "0", "--quiet"])
        scene = overlay(demo / "train.json", demo / "train", ["human", "ball"])
        save("demo_scene", scene)
        save("demo_closeup", busiest_crop(scene, demo / "train.json"))
        if not DEEPSPORT_VAL.exists():
            print(f"skipped render_deepsport.png: {DEEPSPORT_VAL} not found", file=sys.stderr)
            return 0
        one = Path(tmp) / "one.json"
        coco = json.loads(DEEPSPORT_VAL.read_text())
        first = coco["images"][0]
        coco["images"] = [first]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] == first["id"]]
        one.write_text(json.dumps(coco))
        out = Path(tmp) / "render"
        main(["data", "render", "--annotations", str(one), "--out", str(out), "--seed", "0"])
        save("render_deepsport", overlay(out / "one.json", out / "one", ["human", "ball"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
