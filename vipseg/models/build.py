"""``build_model(cfg)``: map ``cfg.model`` onto the plain constructors of this package.

``cfg.model.family`` picks the detector builder from :data:`FAMILIES`;
``cfg.model.backbone.name`` is ``resnet18/34/50/101`` (torchvision) or ``timm:<model>``.
Nothing is pretrained: every weight starts from its library's from-scratch initialisation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import torch.nn as nn

from vipseg.config.schema import Config
from vipseg.errors import ConfigError
from vipseg.models.detector import MaskRCNN
from vipseg.models.features import build_features
from vipseg.models.heads.mask_rcnn import make_roi_heads, make_rpn
from vipseg.models.norms import norm_factory


def build_mask_rcnn(cfg: Config) -> MaskRCNN:
    """Mask R-CNN (backbone + FPN, RPN, box and mask heads) for ``cfg.num_classes`` classes."""
    m = cfg.model
    backbone = build_features(m)
    rpn = make_rpn(in_channels=backbone.out_channels, num_levels=backbone.num_levels,
                   **asdict(m.rpn))
    roi_kwargs = asdict(m.roi_heads)
    roi_heads = make_roi_heads(in_channels=backbone.out_channels,
                               level_names=backbone.level_names,
                               num_classes=cfg.num_classes + 1,
                               norm_layer=norm_factory(roi_kwargs.pop("norm")), **roi_kwargs)
    return MaskRCNN(backbone=backbone, rpn=rpn, roi_heads=roi_heads,
                    mean=cfg.dataset.mean, std=cfg.dataset.std)


FAMILIES: dict[str, Callable[[Config], nn.Module]] = {"mask_rcnn": build_mask_rcnn}


def build_model(cfg: Config) -> nn.Module:
    """The detector of ``cfg.model.family`` (interface in :mod:`vipseg.models.detector`)."""
    if cfg.model.family not in FAMILIES:
        raise ConfigError(f"model.family {cfg.model.family!r} is not available; expected one "
                          f"of {', '.join(FAMILIES)}")
    return FAMILIES[cfg.model.family](cfg)
