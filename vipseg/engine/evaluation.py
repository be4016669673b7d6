"""COCO-style scoring of instance predictions: the challenge metric, overall and per class.

Two protocols, both pycocotools ``COCOeval`` (all categories, maxDets 100):

- ``coco``: every image of the ground truth is scored; an image without predictions counts its
  objects as missed.
- ``vipriors``: the official VIPriors instance-segmentation script
  (github.com/VIPriors/vipriors-challenges-toolkit, ``instance-segmentation/evaluate.py`` and
  ``coco_eval.py``: ``CocoEvaluator.put_results`` sets ``params.imgIds`` to the unique image ids
  of the results) scores only the images that have at least one prediction. Both protocols give
  the same numbers whenever every ground-truth image has a prediction.

Metrics are in 0..1. ``-1`` is COCOeval's "nothing to score" value: a class without ground
truth, an area range without objects, or (``vipriors``) an empty result list, where the official
script scores no image at all. Under ``coco`` an empty result list scores 0 for every class that
has ground truth.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vipseg.data.coco import CocoFile, load_coco
from vipseg.engine.predict import PredictOptions, predict_dataset
from vipseg.errors import DataError

PROTOCOLS = ("coco", "vipriors")
IOU_TYPES = ("segm", "bbox")
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


# ------------------------------------------------------------------------------- loading inputs
def load_ground_truth(gt: str | Path | dict | CocoFile, source: str = "ground truth") -> CocoFile:
    """The ground truth, validated by :func:`vipseg.data.coco.load_coco` (the validator of
    ``data check``, ``train`` and ``test``) exactly once: an already loaded ``CocoFile`` is
    used as is, a path is read, a dict is validated under the name ``source``."""
    if isinstance(gt, CocoFile):
        coco = gt
    elif isinstance(gt, dict):
        coco = load_coco(source, data=gt)
    else:
        coco = load_coco(gt)
    if not coco.categories:
        raise DataError(f"{coco.path}: has no categories, so there is nothing to score "
                        "(ground truth needs 'categories' and 'annotations')")
    return coco


def validate_results(results: Any, gt: dict, source: str = "predictions",
                     iou_types: Sequence[str] = IOU_TYPES) -> list[dict]:
    """Check a COCO result list against ``gt``; ``DataError`` naming ``source`` on the first
    problem (not a list, missing keys, unknown image or category id, mask of the wrong size)."""
    if not isinstance(results, list):
        raise DataError(f"{source}: predictions must be a JSON list of objects, "
                        f"got {type(results).__name__}")
    sizes = {im["id"]: (int(im["height"]), int(im["width"])) for im in gt["images"]}
    cats = {c["id"] for c in gt["categories"]}
    for i, r in enumerate(results):
        where = f"{source}: prediction {i}"
        if not isinstance(r, dict):
            raise DataError(f"{where} is a {type(r).__name__}, not an object")
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise DataError(f"{where} has no '{key}'")
        if r["image_id"] not in sizes:
            raise DataError(f"{where}: image_id {r['image_id']!r} is not in the ground truth")
        if r["category_id"] not in cats:
            raise DataError(f"{where}: category_id {r['category_id']!r} is not one of the "
                            f"ground truth's {sorted(cats)}")
        if not isinstance(r["score"], (int, float)) or not math.isfinite(r["score"]):
            raise DataError(f"{where}: score {r['score']!r} is not a finite number")
        if "segm" in iou_types:
            _check_segmentation(r.get("segmentation"), sizes[r["image_id"]], where)
        if ("bbox" in r) != ("bbox" in results[0]):  # pycocotools reads the layout of item 0
            raise DataError(f"{where}: 'bbox' is given for some predictions but not for others")
        if "bbox" in r or "segm" not in iou_types:
            box = r.get("bbox")
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, (int, float)) for v in box) or min(box[2:]) < 0):
                raise DataError(f"{where}: bbox must be [x, y, w, h] with w, h >= 0, got {box!r}")
    return results


def _check_segmentation(segm: Any, size: tuple[int, int], where: str) -> None:
    if segm is None:
        raise DataError(f"{where} has no 'segmentation' (score boxes only with --iou-types bbox)")
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise DataError(f"{where}: segmentation must be an RLE object with 'size' and 'counts'")
    if [int(v) for v in segm["size"]] != list(size):
        raise DataError(f"{where}: mask size {segm['size']} differs from the image's "
                        f"[height, width] {list(size)}")


# ---------------------------------------------------------------------------------- evaluation
def _coco_gt(gt: dict) -> COCO:
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_dt(coco_gt: COCO, results: list[dict]) -> COCO:
    """pycocotools ``loadRes`` on a copy (it edits the dicts); an empty set for no results."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(copy.deepcopy(results))
        dt = COCO()
        dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                      "categories": copy.deepcopy(coco_gt.dataset["categories"])}
        dt.createIndex()
        return dt


def _per_class_ap(ev: COCOeval, cat_id: Any) -> float:
    """Mean precision over IoUs and recalls of one category (area all, maxDets 100); -1 if none."""
    if cat_id not in ev.params.catIds:
        return -1.0
    k = list(ev.params.catIds).index(cat_id)
    p = ev.eval["precision"][:, :, k, 0, -1]
    p = p[p > -1]
    return float(p.mean()) if p.size else -1.0


def coco_metrics(gt: str | Path | dict | CocoFile, results: list[dict], *, protocol: str = "coco",
                 iou_types: Iterable[str] = IOU_TYPES,
                 class_names: Sequence[str] | None = None) -> dict[str, float]:
    """Score COCO ``results`` against ``gt`` (path, dict or loaded ``CocoFile``) with pycocotools COCOeval.

    Returns ``{"<iou>/AP", "<iou>/AP50", "<iou>/AP75", "<iou>/APs", "<iou>/APm", "<iou>/APl",
    "<iou>/AP/<class>"}`` for each IoU type (``segm``, ``bbox``), values in 0..1 or -1 (nothing
    to score, see the module docstring). ``class_names`` picks the per-class entries by
    category name (default: every category of ``gt``); a name absent from ``gt`` gets -1.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    iou_types = tuple(iou_types)
    bad = [t for t in iou_types if t not in IOU_TYPES]
    if bad or not iou_types:
        raise DataError(f"unknown IoU types {bad} (choose from {', '.join(IOU_TYPES)})")
    gt = load_ground_truth(gt).to_dict()
    validate_results(results, gt, iou_types=iou_types)
    coco_gt = _coco_gt(gt)
    coco_dt = _coco_dt(coco_gt, results)
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    names = list(class_names) if class_names is not None else list(by_name)
    metrics: dict[str, float] = {}
    for iou in iou_types:
        ev = COCOeval(coco_gt, coco_dt, iouType=iou)
        if protocol == "vipriors":  # the official script scores only images with predictions
            ev.params.imgIds = list({r["image_id"] for r in results})
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for key, value in zip(SUMMARY_KEYS, ev.stats[:6]):
            metrics[f"{iou}/{key}"] = float(value)
        for name in names:
            metrics[f"{iou}/AP/{name}"] = _per_class_ap(ev, by_name.get(name))
    return metrics


def evaluate_model(model: torch.nn.Module, dataset: Any, *, device: str | torch.device,
                   options: PredictOptions, protocol: str = "coco",
                   distributed: bool = False, return_results: bool = False) -> Any:
    """Predict ``dataset`` (a labelled ``CocoInstanceDataset`` with the evaluation transform)
    through the one prediction path with ``options`` (``predict_options(cfg, device)``, as
    ``vipseg test`` builds them) and score it against its annotation file.
    Returns the metrics dict, or ``(metrics, COCO results)`` with ``return_results``.

    Under DDP every rank predicts its shard, rank 0 scores and every rank returns the dict.
    """
    results = predict_dataset(model, dataset, device=device, options=options,
                              distributed=distributed, progress=False)
    dist = distributed and torch.distributed.is_available() and torch.distributed.is_initialized()
    box: list[Any] = [None]
    if not dist or torch.distributed.get_rank() == 0:
        box[0] = coco_metrics(dataset.coco, results, protocol=protocol,
                              class_names=dataset.classes)
    if dist:
        torch.distributed.broadcast_object_list(box, src=0)
    return (box[0], results) if return_results else box[0]


def format_metrics_table(metrics: dict[str, float]) -> str:
    """An aligned text table: one row per IoU type (segm, bbox), columns AP AP50 AP75 APs APm
    APl and the per-class APs; values in 0..1 with 3 decimals, ``-`` for -1 (nothing scored)."""
    rows = [t for t in IOU_TYPES if f"{t}/AP" in metrics]
    classes: list[str] = []
    for key in metrics:
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[1] == "AP" and parts[2] not in classes:
            classes.append(parts[2])
    cols = list(SUMMARY_KEYS) + [f"AP/{c}" for c in classes]
    header = ["", *cols]
    body = [[t, *(_fmt(metrics.get(f"{t}/{c}")) for c in cols)] for t in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w)
                       in enumerate(zip(r, widths))) for r in [header, *body]]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{value:.3f}"
