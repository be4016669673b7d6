"""``build_features(model_cfg)``: the backbone and its neck as one module (pixels -> pyramid).

The module returned maps a normalised, padded batch ``[B, 3, H, W]`` to an ordered dict of
pyramid levels (finest first, keys ``level_names`` then ``"pool"``), each
``[B, out_channels, H / stride, W / stride]``; the RPN and RoI heads read ``out_channels``,
``level_names`` and ``num_levels`` (pooled level included) from it.

With a composite backbone (``model.backbone.composite``, CBNetV2) the module in training
returns a list ``[lead_dict, assisting dicts...]``, one neck with shared weights applied to
each copy's maps, and ``aux_weights`` holds one loss weight per assisting dict; in evaluation
it returns only the lead's dict. Plain modules have ``aux_weights == ()``.

Backbones: ``resnet18/34/50/101`` (torchvision) or ``timm:<model>``; necks: ``fpn`` (any
backbone) or ``hrfpn`` (backbones exposing multi-resolution branches: timm HRNet).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Union

import torch
import torch.nn as nn

from vipseg.config.schema import BackboneConfig, ModelConfig, NeckConfig
from vipseg.errors import ConfigError
from vipseg.models.backbones.composite import CompositeBackbone
from vipseg.models.backbones.resnet import ResNetFeatures
from vipseg.models.backbones.timm_features import (TIMM_PREFIX, TimmFeatures, splittable,
                                                   timm_stages)
from vipseg.models.necks.fpn import FPN
from vipseg.models.necks.hrfpn import HRFPN
from vipseg.models.norms import norm_factory

def _plain_backbone(cfg: BackboneConfig, *, staged: bool) -> nn.Module:
    """One copy of the network of ``cfg``; ``staged`` forces a stem + stages network (and
    names the key that needs it when the model cannot be split)."""
    if cfg.name.startswith(TIMM_PREFIX):
        name = cfg.name[len(TIMM_PREFIX):]
        options = dict(model_name=name, norm=cfg.norm, out_indices=cfg.out_indices,
                       drop_path_rate=cfg.drop_path_rate)
        if splittable(name):
            return timm_stages(**options, checkpointing=cfg.checkpointing, **cfg.kwargs)
        if staged:
            key = "composite" if cfg.composite is not None else "checkpointing"
            raise ConfigError(f"model.backbone.{key}: timm model {name!r} cannot be split into "
                              "stem + stages (supported: Swin, ConvNeXt, ConvNeXt-V2, ResNet)")
        return TimmFeatures(**options, **cfg.kwargs)
    if cfg.norm == "none":
        raise ConfigError("model.backbone.norm: ResNet backbones need a norm (BN, SyncBN, GN "
                          "or FrozenBN), got 'none'")
    if cfg.kwargs:
        raise ConfigError(f"model.backbone.kwargs {sorted(cfg.kwargs)}: only timm backbones "
                          "take extra arguments")
    if cfg.drop_path_rate > 0:
        raise ConfigError(f"model.backbone.drop_path_rate {cfg.drop_path_rate:g}: only timm "
                          "backbones have stochastic depth")
    return ResNetFeatures(depth_name=cfg.name, norm_layer=norm_factory(cfg.norm),
                          out_indices=cfg.out_indices,
                          zero_init_residual=cfg.norm != "FrozenBN",
                          checkpointing=cfg.checkpointing)


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Multi-scale feature extractor of ``cfg`` (module with ``out_channels`` and
    ``branches``); a :class:`CompositeBackbone` when ``cfg.composite`` is set."""
    staged = cfg.checkpointing or cfg.composite is not None
    if cfg.composite is None:
        return _plain_backbone(cfg, staged=staged)
    if cfg.norm == "FrozenBN":
        raise ConfigError("model.backbone.composite: the zero-initialised composition needs a "
                          "trainable norm; FrozenBN would keep it at zero (use GN, BN or SyncBN)")
    nets = [_plain_backbone(cfg, staged=True) for _ in range(cfg.composite.copies)]
    return CompositeBackbone(nets, norm_layer=norm_factory(cfg.norm))


def build_neck(cfg: NeckConfig, backbone: nn.Module) -> nn.Module:
    """The ``cfg.type`` neck on ``backbone``'s maps (``out_channels``, ``level_names``,
    ``num_levels`` attributes)."""
    norm_layer = norm_factory(cfg.norm)
    if cfg.type == "hrfpn":
        if not getattr(backbone, "branches", False):
            raise ConfigError("model.neck.type 'hrfpn' needs a backbone with multi-resolution "
                              "branches (timm HRNet, e.g. timm:hrnet_w32); this one has none")
        return HRFPN(backbone.out_channels, channels=cfg.channels, norm_layer=norm_layer)
    return FPN(backbone.out_channels, channels=cfg.channels, norm_layer=norm_layer)


class Features(nn.Module):
    """Backbone ``body`` + ``neck`` (module doc).

    Args:
        body: multi-scale backbone; a composite one returns a list of dicts in training.
        neck: maps the body's dict to the pyramid.
        aux_weights: loss weight of each assisting dict (composite only), else ``()``.
    """

    def __init__(self, body: nn.Module, neck: nn.Module, *,
                 aux_weights: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.out_channels: int = neck.out_channels
        self.level_names: list[str] = list(neck.level_names)
        self.num_levels: int = neck.num_levels
        self.aux_weights = tuple(aux_weights)

    def forward(self, x: torch.Tensor) -> Union["OrderedDict[str, torch.Tensor]",
                                              list["OrderedDict[str, torch.Tensor]"]]:
        feats = self.body(x)
        if isinstance(feats, list):
            return [self.neck(f) for f in feats]
        return self.neck(feats)


def build_features(cfg: ModelConfig) -> Features:
    """Backbone + neck of ``cfg`` (module doc); validates both sections first (configs built
    in code)."""
    cfg.backbone.validate()
    cfg.neck.validate()
    body = build_backbone(cfg.backbone)
    comp = cfg.backbone.composite
    aux = (comp.aux_weight,) * (comp.copies - 1) if comp is not None else ()
    return Features(body, build_neck(cfg.neck, body), aux_weights=aux)
