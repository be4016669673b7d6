"""``vipseg predict``: run a model on image files and draw its predictions.

For each input image an overlay PNG (masks blended in a per-class colour, or one colour per
instance, boxes, ``class score`` labels) is written to the output folder, plus ``predictions.json``: the COCO result
list with ``image_id`` = the image's path relative to the input folder (or its file name) and
an extra ``category`` name per prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vipseg.config.schema import Config
from vipseg.data.dataset import read_image
from vipseg.data.masks import decode
from vipseg.data.transforms.basic import TestTransform
from vipseg.engine.predict import PredictOptions, predict_dataset, predict_options
from vipseg.errors import DataError
from vipseg.utils.io import atomic_write_bytes, atomic_write_json, ensure_new_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PREDICTIONS_JSON = "predictions.json"
# BGR colours per label (cycled); a label's colour is the same in every image.
PALETTE = [(60, 60, 230), (40, 200, 250), (80, 200, 60), (230, 120, 40), (200, 60, 200),
           (180, 180, 40), (40, 140, 250), (150, 90, 250)]


class ImageFiles(Dataset):
    """Plain image files as evaluation samples: ``(image [3, H, W] uint8, target)`` with
    ``image_id`` = ``names[i]``, ``orig_size`` and ``scale_factor`` (from ``TestTransform``)."""

    def __init__(self, paths: Sequence[Path], names: Sequence[str], classes: Sequence[str],
                 category_ids: Sequence[Any], scale: Sequence[int]) -> None:
        self.paths, self.names = list(paths), list(names)
        self.classes, self.category_ids = list(classes), list(category_ids)
        self.transform = TestTransform(scale)

    def __len__(self) -> int:
        return len(self.paths)

    def label_to_category_id(self, label: int) -> Any:
        """Contiguous label → category id."""
        return self.category_ids[label]

    def __getitem__(self, index: int) -> Any:
        image = read_image(self.paths[index])
        return self.transform({"image": image, "image_id": self.names[index],
                               "orig_size": image.shape[:2]})


def list_images(path: str | Path) -> tuple[list[Path], list[str]]:
    """Image files of ``path`` (one file, or a folder searched recursively) and their names
    relative to it; ``DataError`` if there are none."""
    p = Path(path)
    if p.is_file():
        return [p], [p.name]
    if not p.is_dir():
        raise DataError(f"{p}: no such image file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files, [f.relative_to(p).as_posix() for f in files]


def instance_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct saturated BGR colours (hues spaced by the golden angle); ``[]`` for 0."""
    if n == 0:
        return []
    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 230, np.uint8), np.full(n, 255, np.uint8)], 1)[None]
    return [tuple(int(v) for v in c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]]


def draw_predictions(image: np.ndarray, predictions: Sequence[dict], labels: Sequence[int],
                     classes: Sequence[str], alpha: float = 0.5,
                     show_scores: bool = True, per_instance: bool = False) -> np.ndarray:
    """Overlay of COCO ``predictions`` (RLE masks, xywh boxes, scores; ``labels`` their class
    indices) on an RGB uint8 [H, W, 3] image; returns a BGR uint8 image for ``cv2``.
    ``show_scores=False`` labels boxes with the class alone (ground truth).

    Colours: one per class (:data:`PALETTE`), or with ``per_instance`` one per prediction
    (:func:`instance_colours`, in the order of ``predictions``)."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    own = instance_colours(len(predictions)) if per_instance else []
    order = np.argsort([p["score"] for p in predictions], kind="stable")  # best drawn last
    for i in order:
        pred = predictions[i]
        colour = np.array(own[i] if per_instance else PALETTE[labels[i] % len(PALETTE)], np.float32)
        m = decode(pred["segmentation"]).astype(bool)
        out[m] = (out[m] * (1 - alpha) + colour * alpha).astype(np.uint8)
        x, y, w, h = (int(round(v)) for v in pred["bbox"])
        c = tuple(int(v) for v in colour)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), c, 2)
        text = f"{classes[labels[i]]} {pred['score']:.2f}" if show_scores else classes[labels[i]]
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y, th + base)
        cv2.rectangle(out, (x, ty - th - base), (x + tw, ty), c, -1)
        cv2.putText(out, text, (x, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def overlay_name(name: str) -> str:
    """Output PNG path (relative) of an input image name: same folders, ``.png`` suffix."""
    return str(Path(name).with_suffix(".png"))


def predict_images(model: torch.nn.Module, cfg: Config, inputs: str | Path, out_dir: str | Path,
                   *, device: str | torch.device, category_ids: Sequence[Any],
                   score_thr: float = 0.5, options: PredictOptions | None = None,
                   force: bool = False, progress: bool = True,
                   per_instance: bool = False) -> dict[str, Any]:
    """Predict every image of ``inputs`` (``options`` default to ``predict_options(cfg,
    device)``); write overlays (detections scoring ≥ ``score_thr``; a colour per class, or per
    instance with ``per_instance``) and ``predictions.json`` (all of them, at least
    ``cfg.test.score_thresh``) into ``out_dir``. Returns ``images`` and ``predictions`` counts
    and ``overlays``, the written PNG paths."""
    paths, names = list_images(inputs)
    out = Path(out_dir)
    for name in [PREDICTIONS_JSON, *(overlay_name(n) for n in names)]:
        ensure_new_output(out / name, force, inputs=[inputs])
    dataset = ImageFiles(paths, names, cfg.dataset.classes, category_ids, cfg.dataset.test_scale)
    results = predict_dataset(model, dataset, device=device,
                              options=options or predict_options(cfg, device),
                              progress=progress)
    label_of = {cid: i for i, cid in enumerate(category_ids)}
    for r in results:
        r["category"] = cfg.dataset.classes[label_of[r["category_id"]]]
    by_image: dict[str, list[dict]] = {n: [] for n in names}
    for r in results:
        if r["score"] >= score_thr:
            by_image[r["image_id"]].append(r)
    for path, name in zip(paths, names):
        shown = by_image[name]
        canvas = draw_predictions(read_image(path), shown,
                                  [label_of[r["category_id"]] for r in shown], cfg.dataset.classes,
                                  per_instance=per_instance)
        ok, png = cv2.imencode(".png", canvas)
        if not ok:
            raise DataError(f"{out / overlay_name(name)}: cannot encode the overlay PNG")
        atomic_write_bytes(out / overlay_name(name), png.tobytes())
    atomic_write_json(out / PREDICTIONS_JSON, results)
    return {"images": len(paths), "predictions": len(results),
            "overlays": [str(out / overlay_name(n)) for n in names]}
