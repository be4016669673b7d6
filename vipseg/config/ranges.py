"""The allowed range of every numeric config key, checked after the types (one-line errors).

:data:`RANGES` maps a dotted key to its :class:`Range`; a list or mapping value is checked item
by item (``dataset.std[1]``). This table is the one place a key's range lives: the schema's
sections call :func:`check_ranges` on themselves in ``validate()`` (so configs built in code are
checked too) and keep only their cross-field rules; the loader checks the whole tree, naming
the file. Keys whose section checks them in its own ``validate()`` (the ``augment`` tree, whose
ranges depend on each other) are listed in :data:`CHECKED_BY_SECTION` instead. ``tests/config/test_ranges.py``
fails for any numeric key of the schema that is in neither, so a new key cannot go unchecked.
NaN and infinity are refused for every float key by :mod:`vipseg.config.typed`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from vipseg.config.typed import _where
from vipseg.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where the bound is open); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, v: float) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.high_open else v > self.high))

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        lo, hi = ("(" if self.low_open else "["), (")" if self.high_open else "]")
        return f"in {lo}{self.low:g}, {self.high:g}{hi}"


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
UNIT = Range(0, 1)  # probabilities, IoU and score thresholds
UNIT_POSITIVE = Range(0, 1, low_open=True)
UNIT_OPEN = Range(0, 1, low_open=True, high_open=True)
BELOW_1 = Range(0, 1, high_open=True)
RGB = Range(0, 255)

RANGES: dict[str, Range] = {
    "dataset.mean": RGB,
    "dataset.std": Range(0, 255, low_open=True),
    "dataset.test_scale": AT_LEAST_1,
    "dataset.min_size": AT_LEAST_0,
    "model.backbone.out_indices": Range(1, 4),
    "model.backbone.drop_path_rate": BELOW_1,
    "model.neck.channels": AT_LEAST_1,
    "model.rpn.anchor_sizes": AT_LEAST_1,
    "model.rpn.aspect_ratios": POSITIVE,
    "model.rpn.pre_nms_top_n_train": AT_LEAST_1,
    "model.rpn.pre_nms_top_n_test": AT_LEAST_1,
    "model.rpn.post_nms_top_n_train": AT_LEAST_1,
    "model.rpn.post_nms_top_n_test": AT_LEAST_1,
    "model.rpn.nms_thresh": UNIT_POSITIVE,
    "model.rpn.fg_iou_thresh": UNIT,
    "model.rpn.bg_iou_thresh": UNIT,
    "model.rpn.batch_size_per_image": AT_LEAST_1,
    "model.rpn.positive_fraction": UNIT_POSITIVE,
    "model.roi_heads.batch_size_per_image": AT_LEAST_1,
    "model.roi_heads.positive_fraction": UNIT_POSITIVE,
    "model.roi_heads.fg_iou_thresh": UNIT,
    "model.roi_heads.bg_iou_thresh": UNIT,
    "model.roi_heads.box_head_convs": AT_LEAST_0,
    "model.roi_heads.box_head_channels": AT_LEAST_1,
    "model.roi_heads.representation_size": AT_LEAST_1,
    "model.roi_heads.mask_head_convs": AT_LEAST_1,
    "model.roi_heads.mask_head_channels": AT_LEAST_1,
    "model.roi_heads.mask_pixel_channels": AT_LEAST_0,
    "model.roi_heads.box_pixel_channels": AT_LEAST_0,
    "model.roi_heads.score_thresh": UNIT,
    "model.roi_heads.nms_thresh": UNIT_POSITIVE,
    "model.roi_heads.detections_per_img": AT_LEAST_1,
    "optimizer.lr": POSITIVE,
    "optimizer.momentum": BELOW_1,
    "optimizer.betas": BELOW_1,
    "optimizer.weight_decay": AT_LEAST_0,
    "schedule.warmup_iters": AT_LEAST_0,
    "schedule.warmup_ratio": UNIT_POSITIVE,
    "schedule.steps": AT_LEAST_0,
    "schedule.gamma": POSITIVE,
    "schedule.min_lr_ratio": UNIT,
    "train.epochs": AT_LEAST_1,
    "train.max_iters": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.num_workers": AT_LEAST_0,
    "train.clip_grad": POSITIVE,
    "train.val_interval": AT_LEAST_0,
    "train.checkpoint_interval": AT_LEAST_0,
    "train.log_interval": AT_LEAST_1,
    "train.seed": Range(0, 2**32 - 1),
    "test.batch_size": AT_LEAST_1,
    "test.mask_thresh": UNIT,
    "test.score_thresh": UNIT,
    "test.paste_chunk": AT_LEAST_1,
    # the model zoo (cascade, HTC, mask-IoU, Seesaw) and composite backbones
    "model.backbone.composite.copies": Range(2, 4),
    "model.backbone.composite.aux_weight": UNIT,
    "model.roi_heads.box_head_fcs": AT_LEAST_0,
    "model.roi_heads.box_loss_weight": AT_LEAST_0,
    "model.roi_heads.seesaw.p": AT_LEAST_0,
    "model.roi_heads.seesaw.q": AT_LEAST_0,
    "model.roi_heads.seesaw.temperature": POSITIVE,
    "model.cascade.iou_thresholds": UNIT_OPEN,
    "model.cascade.stage_loss_weights": AT_LEAST_0,
    "model.cascade.bbox_reg_weights": POSITIVE,
    "model.mask_iou.num_convs": AT_LEAST_1,
    "model.mask_iou.conv_channels": AT_LEAST_1,
    "model.mask_iou.fc_dim": AT_LEAST_1,
    "model.mask_iou.loss_weight": AT_LEAST_0,
    "model.semantic.fusion_level": AT_LEAST_0,
    "model.semantic.num_convs": AT_LEAST_0,
    "model.semantic.loss_weight": AT_LEAST_0,
    # EMA, time budget, SWA
    "train.ema.decay": BELOW_1,
    "train.time_budget": POSITIVE,  # seconds when a number; "10m"-style text is parsed
    "swa.epochs": AT_LEAST_1,
    "swa.optimizer.lr": POSITIVE,
    "swa.optimizer.momentum": BELOW_1,
    "swa.optimizer.betas": BELOW_1,
    "swa.optimizer.weight_decay": AT_LEAST_0,
    "swa.cycle_ratio": UNIT_POSITIVE,
    "swa.update_every": AT_LEAST_0,
    # testing: post-processing and TTA
    "test.post.one_ball.min_score": UNIT,
    "test.post.max_per_class": AT_LEAST_1,
    "tta.scales": POSITIVE,
    "tta.iou_thresh": UNIT_POSITIVE,
    "tta.max_detections": AT_LEAST_1,
}

#: numeric keys checked by their section's ``validate()`` (the whole ``augment`` tree).
CHECKED_BY_SECTION = ("augment.",)


def numeric_leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(key, shown key, number) for every number in a config tree; list items and mapping
    values are yielded under their parent key (shown as ``key[i]`` / ``key.name``)."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            key = f"{prefix}.{f.name}" if prefix else f.name
            yield from _values(key, key, getattr(obj, f.name))


def _values(key: str, shown: str, value: Any) -> Iterator[tuple[str, str, Any]]:
    if dataclasses.is_dataclass(value):
        yield from numeric_leaves(value, key)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _values(key, f"{shown}[{i}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _values(key, f"{shown}.{k}", v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key, shown, value


def check_ranges(cfg: Any, sources: Mapping[str, str] | None = None, prefix: str = "") -> None:
    """``ConfigError`` naming the key (and, with ``sources``, the file) of the first number
    outside its range, e.g. ``model.neck.channels must be >= 1, got 0``. ``cfg``: the whole
    config, or the section at dotted key ``prefix`` (``"model.neck"``)."""
    for key, shown, value in numeric_leaves(cfg, prefix):
        r = RANGES.get(key)
        if r is not None and not r.holds(value):
            raise ConfigError(f"{_where(key, sources or {})}{shown} must be {r.describe()}, "
                              f"got {value!r}")
