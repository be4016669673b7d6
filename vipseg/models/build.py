"""``build_model(cfg)``: map ``cfg.model`` onto the plain constructors of this package.

``cfg.model.family`` picks the detector builder from :data:`FAMILIES`;
``cfg.model.backbone.name`` is ``resnet18/34/50/101`` (torchvision) or ``timm:<model>``.
Nothing is pretrained: every weight starts from its library's from-scratch initialisation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import torch.nn as nn

from vipseg.config.schema import BackboneConfig, Config
from vipseg.errors import ConfigError
from vipseg.models.backbones.resnet import ResNetFeatures
from vipseg.models.backbones.timm_features import TIMM_PREFIX, TimmFeatures
from vipseg.models.detector import MaskRCNN
from vipseg.models.heads.mask_rcnn import make_roi_heads, make_rpn
from vipseg.models.necks.fpn import BackboneFPN
from vipseg.models.norms import norm_factory


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Multi-scale feature extractor named by ``cfg.name`` (module with ``out_channels``)."""
    if cfg.name.startswith(TIMM_PREFIX):
        return TimmFeatures(model_name=cfg.name[len(TIMM_PREFIX):], norm=cfg.norm,
                            out_indices=cfg.out_indices, drop_path_rate=cfg.drop_path_rate,
                            **cfg.kwargs)
    if cfg.norm == "none":
        raise ConfigError("model.backbone.norm: ResNet backbones need a norm (BN, SyncBN, GN "
                          "or FrozenBN), got 'none'")
    if cfg.kwargs:
        raise ConfigError(f"model.backbone.kwargs {sorted(cfg.kwargs)}: only timm backbones "
                          "take extra arguments")
    return ResNetFeatures(depth_name=cfg.name, norm_layer=norm_factory(cfg.norm),
                          out_indices=cfg.out_indices,
                          zero_init_residual=cfg.norm != "FrozenBN")


def build_mask_rcnn(cfg: Config) -> MaskRCNN:
    """Mask R-CNN (backbone + FPN, RPN, box and mask heads) for ``cfg.num_classes`` classes."""
    m = cfg.model
    backbone = BackboneFPN(build_backbone(m.backbone), channels=m.neck.channels,
                           norm_layer=norm_factory(m.neck.norm))
    levels = len(backbone.level_names) + 1  # + the max-pooled level
    rpn = make_rpn(in_channels=backbone.out_channels, num_levels=levels, **asdict(m.rpn))
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
