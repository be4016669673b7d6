"""Where a model loses AP: PR curves, the COCO error breakdown and per-image AP.

All three re-run pycocotools ``COCOeval`` (area ``all``, 100 detections per image) on a ground
truth and a COCO result list, so they agree with :func:`vipseg.engine.evaluation.coco_metrics`.

- :func:`pr_curves`: ``eval['precision']`` at IoU 0.5 and 0.75 per class: COCO's
  interpolated precision at the 101 recall points 0, 0.01, ..., 1.
- :func:`error_breakdown`: the COCO ``analyze()`` decomposition, as mmdetection's
  ``tools/analysis_tools/coco_error_analysis.py`` computes it. Seven PR curves per class, each
  the previous one with one kind of error forgiven: ``C75`` and ``C50`` (PR at IoU 0.75 and
  0.5), ``Loc`` (IoU 0.1: localisation errors forgiven), ``Sim`` (detections on objects of
  another class of the same supercategory ignored), ``Oth`` (detections on objects of any
  other class ignored), ``BG`` (background false positives removed too: precision 1 wherever
  ``Oth`` reaches) and ``FN`` (precision 1 at every recall: what is left is missed objects).
  Ignoring works as in mmdetection: the other class's objects become crowd regions of this
  class, so detections on them are neither true nor false positives. The area under each
  curve (mean precision over recall points) is reported; ``C75`` is the class's AP75.
- :func:`per_image_ap`: mask (or box) AP of every image alone (classes without ground truth
  in that image left out), to rank the worst and best images.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vipseg.engine.evaluation import _coco_dt, _coco_gt, load_ground_truth, validate_results

ERROR_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
PR_IOUS = (0.5, 0.75)


def _prepare(gt: str | Path | dict, results: list[dict], iou_type: str) -> tuple[dict, COCO, COCO]:
    gt = load_ground_truth(gt).to_dict()
    validate_results(results, gt, iou_types=(iou_type,))
    coco_gt = _coco_gt(gt)
    return gt, coco_gt, _coco_dt(coco_gt, results)


def _run(coco_gt: COCO, coco_dt: COCO, iou_type: str, *, iou_thrs: Sequence[float] | None = None,
         cat_ids: Sequence[Any] | None = None, accumulate: bool = True) -> COCOeval:
    """COCOeval over every image of ``coco_gt``; area 'all' only, 100 detections."""
    ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
    ev.params.imgIds = sorted(coco_gt.getImgIds())
    ev.params.maxDets = [100]
    ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]
    if iou_thrs is not None:
        ev.params.iouThrs = np.asarray(iou_thrs, dtype=float)
    if cat_ids is not None:
        ev.params.catIds = list(cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        if accumulate:
            ev.accumulate()
    return ev


def _names(gt: dict) -> tuple[list[Any], list[str]]:
    cats = sorted(gt["categories"], key=lambda c: c["id"])  # COCOeval's catIds order
    return [c["id"] for c in cats], [c["name"] for c in cats]


@dataclass
class PRCurves:
    """``precision[name][iou]``: float [101] at ``recall`` [101]; -1 where the class has no
    ground truth (COCOeval's convention)."""

    recall: np.ndarray
    precision: dict[str, dict[float, np.ndarray]]


def pr_curves(gt: str | Path | dict, results: list[dict], *, iou_type: str = "segm") -> PRCurves:
    """Per-class precision-recall curves at IoU 0.5 and 0.75 (see the module docstring)."""
    gt, coco_gt, coco_dt = _prepare(gt, results, iou_type)
    ev = _run(coco_gt, coco_dt, iou_type)
    thrs = list(np.round(ev.params.iouThrs, 2))
    ids, names = _names(gt)
    precision = {name: {iou: ev.eval["precision"][thrs.index(iou), :, k, 0, 0].copy()
                        for iou in PR_IOUS} for k, name in enumerate(names)}
    return PRCurves(np.asarray(ev.params.recThrs), precision)


@dataclass
class ErrorBreakdown:
    """``curves[name]``: float [7, 101], one PR curve per :data:`ERROR_TYPES` at ``recall``;
    ``areas[name][type]``: the area under it (0..1); name ``"all"`` is the mean over the
    classes that have ground truth. Classes without ground truth are left out."""

    recall: np.ndarray
    curves: dict[str, np.ndarray]
    areas: dict[str, dict[str, float]]


def error_breakdown(gt: str | Path | dict, results: list[dict], *,
                    iou_type: str = "segm") -> ErrorBreakdown:
    """The COCO error breakdown of ``results`` (see the module docstring)."""
    gt, coco_gt, coco_dt = _prepare(gt, results, iou_type)
    ids, names = _names(gt)
    base = _run(coco_gt, coco_dt, iou_type, iou_thrs=[0.75, 0.5, 0.1])
    ps = base.eval["precision"][:, :, :, 0, 0]  # [3, R, K]
    supercat = {c["id"]: c.get("supercategory") for c in gt["categories"]}
    curves: dict[str, np.ndarray] = {}
    for k, (cat, name) in enumerate(zip(ids, names)):
        if ps[0, 0, k] < 0:  # no ground truth of this class
            continue
        own = [r for r in results if r["category_id"] == cat]
        same = {c for c in ids if c != cat and supercat[c] is not None
                and supercat[c] == supercat[cat]}
        curve = np.zeros((len(ERROR_TYPES), ps.shape[1]))
        curve[:3] = ps[:, :, k]
        curve[3] = _forgiving(gt, own, cat, same, iou_type)
        curve[4] = _forgiving(gt, own, cat, set(ids) - {cat}, iou_type)
        curve[5] = np.where(curve[4] > 0, 1.0, 0.0)
        curve[6] = 1.0
        curves[name] = curve
    if curves:
        curves["all"] = np.mean(list(curves.values()), axis=0)
    areas = {name: {t: float(c[i].mean()) for i, t in enumerate(ERROR_TYPES)}
             for name, c in curves.items()}
    return ErrorBreakdown(np.asarray(base.params.recThrs), curves, areas)


def _forgiving(gt: dict, own: list[dict], cat: Any, forgiven: set, iou_type: str) -> np.ndarray:
    """PR at IoU 0.1 of class ``cat``'s detections ``own`` when the objects of the classes in
    ``forgiven`` become crowd regions of ``cat`` (detections on them are ignored)."""
    anns = []
    for a in gt["annotations"]:
        if a["category_id"] in forgiven:
            a = {**a, "category_id": cat, "iscrowd": 1, "ignore": 1}
        anns.append(a)
    coco_gt = _coco_gt({**gt, "annotations": anns})
    ev = _run(coco_gt, _coco_dt(coco_gt, own), iou_type, iou_thrs=[0.1], cat_ids=[cat])
    return ev.eval["precision"][0, :, 0, 0, 0]


def per_image_ap(gt: str | Path | dict, results: list[dict], *,
                 iou_type: str = "segm") -> dict[Any, float]:
    """``{image_id: AP}`` of each image scored alone (COCO AP over IoU 0.5:0.95, averaged
    over the classes that image has ground truth of); images without ground truth are left
    out. One ``evaluate()`` for all images, then COCOeval's ``accumulate`` per image."""
    gt, coco_gt, coco_dt = _prepare(gt, results, iou_type)
    ev = _run(coco_gt, coco_dt, iou_type, accumulate=False)
    p = ev._paramsEval
    n_img, n_cat = len(p.imgIds), len(p.catIds)
    out: dict[Any, float] = {}
    for i, image_id in enumerate(p.imgIds):
        one = copy.copy(ev)
        one.params = one._paramsEval = copy.copy(p)
        one.params.imgIds = [image_id]
        one.evalImgs = [ev.evalImgs[k * n_img + i] for k in range(n_cat)]  # one area range
        with contextlib.redirect_stdout(io.StringIO()):
            one.accumulate()
        prec = one.eval["precision"][:, :, :, 0, 0]
        prec = prec[prec > -1]
        if prec.size:
            out[image_id] = float(prec.mean())
    return out


def rank_images(ap: dict[Any, float], n: int = 8) -> tuple[list[tuple[Any, float]],
                                                            list[tuple[Any, float]]]:
    """(worst, best): up to ``n`` (image id, AP) each, worst first / best first; ties keep
    the order of ``ap``. An image is in both lists only when there are fewer than 2n."""
    order = sorted(ap.items(), key=lambda kv: kv[1])  # stable
    worst = order[:n]
    best = sorted(ap.items(), key=lambda kv: -kv[1])[:n]
    return worst, best
