"""Ensembles: several models as more views (``vipseg test --ensemble``), and result-level
fusion of prediction files (``vipseg ensemble``).

Model ensembles: each member is ``CONFIG:CKPT`` or ``CONFIG:CKPT:WEIGHT`` (weight > 0,
default 1), built from its own config, so families and backbones may differ; the members'
``dataset.classes`` must agree. Every member runs every view (the first config's ``tta:``
views with ``--tta``, else its own ``dataset.test_scale``); boxes of all members and views are
merged and masks re-predicted by every member on the merged boxes (``vipseg.engine.tta``).

Result-level fusion, for models that cannot be loaded together: per image and category the
predictions of all files are clustered greedily, best score first; a cluster takes at most
one prediction per file, the best one whose mask IoU with the cluster's leader exceeds
``iou_thresh``. The fused mask is the weighted majority vote of the cluster's masks (a pixel
is kept when the weights of the masks covering it reach half the cluster's weight); the fused
score is ``sum(w_f * s_f) / sum of all files' weights``, so an object found by fewer files
scores lower. Masks are decoded one cluster at a time, inside the cluster's box.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils

from vipseg.config.loader import load_config
from vipseg.data.masks import decode_crop, encode, rle_box, rle_to_bbox
from vipseg.engine.inference import load_model
from vipseg.engine.tta import Member, View, views_from_config
from vipseg.errors import ConfigError, DataError

RESULT_KEYS = ("image_id", "category_id", "segmentation", "score")


def parse_member(spec: str) -> tuple[str, str, float]:
    """``CONFIG:CKPT[:WEIGHT]`` -> (config, checkpoint, weight); ``ConfigError`` otherwise."""
    parts = spec.split(":")
    weight = 1.0
    if len(parts) == 3:
        try:
            weight = float(parts[2])
        except ValueError:
            raise ConfigError(f"--ensemble {spec}: weight {parts[2]!r} is not a number") from None
        parts = parts[:2]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--ensemble {spec}: expected CONFIG:CKPT or CONFIG:CKPT:WEIGHT")
    if not weight > 0:
        raise ConfigError(f"--ensemble {spec}: weight must be > 0, got {weight:g}")
    return parts[0], parts[1], weight


def load_members(specs: Sequence[str], overrides: Sequence[str], device: str | torch.device,
                 *, tta: bool = False) -> tuple[Any, list[Member]]:
    """(the first member's config, the loaded members). ``overrides`` apply to every config;
    ``ConfigError`` if fewer than two members or their classes differ."""
    if len(specs) < 2:
        raise ConfigError(f"--ensemble needs at least two CONFIG:CKPT members, got {len(specs)}")
    first, members = None, []
    for spec in specs:
        config, ckpt, weight = parse_member(spec)
        cfg = load_config(config, overrides)
        if first is None:
            first = cfg
        elif cfg.dataset.classes != first.dataset.classes:
            raise ConfigError(f"--ensemble {spec}: classes {cfg.dataset.classes} differ from "
                              f"{specs[0].split(':')[0]}'s {first.dataset.classes}")
        views = (views_from_config(first.tta) if tta
                 else (View(tuple(int(v) for v in cfg.dataset.test_scale)),))
        members.append(Member(load_model(cfg, ckpt, device), views, weight))
    return first, members


# ------------------------------------------------------------------------ result-level fusion
def check_prediction_files(files: Sequence[Any], names: Sequence[str]) -> None:
    """``DataError`` naming the file unless every file is a COCO result list with masks and
    all cover the same images (same image ids, same mask sizes)."""
    if len(files) < 2:
        raise DataError(f"ensemble needs at least two prediction files, got {len(files)}")
    images = []
    for data, name in zip(files, names):
        if not isinstance(data, list):
            raise DataError(f"{name}: predictions must be a JSON list of objects")
        sizes: dict[Any, tuple] = {}
        for i, r in enumerate(data):
            if not isinstance(r, dict) or any(k not in r for k in RESULT_KEYS):
                raise DataError(f"{name}: prediction {i} lacks one of {', '.join(RESULT_KEYS)}")
            sizes.setdefault(r["image_id"], tuple(r["segmentation"]["size"]))
        images.append(sizes)
    for sizes, name in zip(images[1:], names[1:]):
        if set(sizes) != set(images[0]):
            diff = sorted(set(sizes) ^ set(images[0]), key=str)
            raise DataError(f"{name}: predicts images other than {names[0]}'s ({len(sizes)} vs "
                            f"{len(images[0])} images, e.g. image_id {diff[0]!r} in only one): "
                            f"not the same image set")
        bad = [k for k in sizes if sizes[k] != images[0][k]]
        if bad:
            raise DataError(f"{name}: image_id {bad[0]!r} has masks of size {list(sizes[bad[0]])}"
                            f", {names[0]} {list(images[0][bad[0]])}: not the same images")


def _fuse_cluster(members: list[tuple[float, dict]], total_weight: float,
                  image_id: Any, category_id: Any) -> dict:
    """One fused result from (weight, prediction) pairs (see the module doc)."""
    rles = [p["segmentation"] for _, p in members]
    h, w = (int(v) for v in rles[0]["size"])
    boxes = np.array([rle_box(r) for r in rles])
    x0, y0 = boxes[:, :2].min(0)
    x1, y1 = boxes[:, 2:].max(0)
    votes = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.float64)
    weight = 0.0
    for (wt, _), rle in zip(members, rles):
        votes += wt * decode_crop(rle, (int(x0), int(y0), int(x1), int(y1)))
        weight += wt
    full = np.zeros((h, w), np.uint8)
    full[y0:y1, x0:x1] = votes >= 0.5 * weight - 1e-9
    rle = encode(full)
    score = sum(wt * float(p["score"]) for wt, p in members) / total_weight
    return {"image_id": image_id, "category_id": category_id, "segmentation": rle,
            "score": score, "bbox": rle_to_bbox(rle)}


def fuse_predictions(files: Sequence[list[dict]], names: Sequence[str], *,
                     weights: Sequence[float] | None = None,
                     iou_thresh: float = 0.5) -> list[dict]:
    """Fuse the COCO result lists ``files`` (named ``names`` in errors) into one list
    (see the module doc); ``weights`` per file (default all 1, each > 0)."""
    check_prediction_files(files, names)
    weights = [1.0] * len(files) if weights is None else [float(v) for v in weights]
    if len(weights) != len(files) or min(weights) <= 0:
        raise DataError(f"ensemble: need one weight > 0 per prediction file, got {weights}")
    if not 0 <= iou_thresh < 1:
        raise DataError(f"ensemble: the IoU threshold must be in [0, 1), got {iou_thresh:g}")
    groups: dict[tuple, list[tuple[int, dict]]] = defaultdict(list)
    for f, data in enumerate(files):
        for r in data:
            groups[(r["image_id"], r["category_id"])].append((f, r))
    total = float(sum(weights))
    fused: list[dict] = []
    for (image_id, category_id), preds in groups.items():
        preds.sort(key=lambda fp: -float(fp[1]["score"]))
        segs = [p["segmentation"] for _, p in preds]
        iou = np.asarray(mask_utils.iou(segs, segs, [0] * len(segs))).reshape(len(segs), -1)
        used = np.zeros(len(preds), bool)
        for lead in range(len(preds)):
            if used[lead]:
                continue
            used[lead] = True
            cluster = [lead]
            taken = {preds[lead][0]}
            for j in range(lead + 1, len(preds)):
                if not used[j] and preds[j][0] not in taken and iou[lead, j] > iou_thresh:
                    used[j] = True
                    taken.add(preds[j][0])
                    cluster.append(j)
            fused.append(_fuse_cluster([(weights[preds[k][0]], preds[k][1]) for k in cluster],
                                       total, image_id, category_id))
    order = {im: i for i, im in enumerate(dict.fromkeys(r["image_id"] for r in files[0]))}
    fused.sort(key=lambda r: (order[r["image_id"]], -r["score"]))
    return fused

