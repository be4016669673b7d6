"""``build_features(model_cfg)``: the backbone and its neck as one module (pixels -> pyramid).

The module returned maps a normalised, padded batch ``[B, 3, H, W]`` to an ordered dict of
pyramid levels (finest first, keys ``level_names`` then ``"pool"``), each
``[B, out_channels, H / stride, W / stride]``; the RPN and RoI heads read ``out_channels``,
``level_names`` and ``num_levels`` (pooled level included) from it.
"""

from __future__ import annotations

import torch.nn as nn

from vipseg.config.schema import BackboneConfig, ModelConfig
from vipseg.errors import ConfigError
from vipseg.models.backbones.resnet import ResNetFeatures
from vipseg.models.backbones.timm_features import TIMM_PREFIX, TimmFeatures
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


def build_features(cfg: ModelConfig) -> nn.Module:
    """Backbone + FPN of ``cfg`` (module doc)."""
    return BackboneFPN(build_backbone(cfg.backbone), channels=cfg.neck.channels,
                       norm_layer=norm_factory(cfg.neck.norm))
