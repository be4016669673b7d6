"""Any timm ``features_only`` model as a multi-scale backbone for the FPN.

Stages are chosen by stride, the same way as for ResNet: ``out_indices`` entry ``i`` is the
feature map with stride ``2 ** (i + 1)`` (1 -> 1/4, 4 -> 1/32), whatever timm's own feature
list holds (HRNet and timm ResNets also return a stride-2 map, Swin and ConvNeXt start at 1/4).
Channels come from timm's ``feature_info``. Channels-last outputs (``NHWC``: Swin and other
transformers) are permuted to ``NCHW``.

Input sizes: the detector pads images to a multiple of 32, not to a model's window or fixed
image size. Models that support it are created with ``strict_img_size=False`` (Swin: any input
size; window attention pads each stage to the window multiple and builds its shift mask for
the actual size) or else ``dynamic_img_size=True`` (ViT-style models); CNNs need neither.

Norms: ``norm`` replaces the model's BatchNorm layers (``GN`` -> GroupNorm, ``FrozenBN`` ->
frozen statistics, ``BN``/``SyncBN`` keep BatchNorm2d); other norms such as LayerNorm are part
of the architecture and stay. Weights are never downloaded (``pretrained=False``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import timm
import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, freeze_batch_norm_2d

from vipseg.errors import ConfigError
from vipseg.models.norms import norm_factory

TIMM_PREFIX = "timm:"
# Tried in order: the first one the model accepts lets it take any (padded) input size.
SIZE_OPTIONS: tuple[dict[str, Any], ...] = ({"strict_img_size": False},
                                            {"dynamic_img_size": True}, {})


def _create(model_name: str, options: dict[str, Any]) -> nn.Module:
    """``timm.create_model(features_only=True, pretrained=False)`` with the first size option
    of :data:`SIZE_OPTIONS` the model accepts."""
    if not timm.is_model(model_name):
        raise ConfigError(f"model.backbone.name: timm has no model {model_name!r}")
    for size_option in SIZE_OPTIONS:
        try:
            return timm.create_model(model_name, pretrained=False, features_only=True,
                                     **size_option, **options)
        except TypeError as e:
            if not (size_option and next(iter(size_option)) in str(e)):
                raise ConfigError(f"model.backbone: timm model {model_name!r} rejects the "
                                  f"arguments {sorted(options)}: {e}") from None
    raise AssertionError("unreachable: the last size option is empty")


def replace_batchnorm(module: nn.Module, norm: str) -> nn.Module:
    """``module`` with its BatchNorm layers swapped for ``norm`` (module doc); returns it."""
    if norm in ("BN", "SyncBN"):
        return module
    if norm == "FrozenBN":
        return freeze_batch_norm_2d(module)
    factory = norm_factory(norm)  # GN here; rejects unknown names
    if factory is None:
        raise ConfigError("model.backbone.norm 'none' is not supported for timm backbones; "
                          "use BN, SyncBN, GN or FrozenBN")
    for name, child in module.named_children():
        if isinstance(child, BatchNormAct2d):
            setattr(module, name, nn.Sequential(factory(child.num_features), child.drop,
                                                child.act))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, factory(child.num_features))
        else:
            replace_batchnorm(child, norm)
    return module


class TimmFeatures(nn.Module):
    """A timm model (``features_only``) returning the stages in ``out_indices`` as NCHW.

    Args:
        model_name: timm model name, e.g. ``swin_tiny_patch4_window7_224``, ``convnext_tiny``,
            ``hrnet_w32``.
        norm: what replaces the model's BatchNorm layers (module doc).
        out_indices: stages by stride, ``i`` -> stride ``2 ** (i + 1)``.
        drop_path_rate: stochastic depth rate, passed to timm only when > 0.
        **kwargs: any other ``timm.create_model`` argument.

    ``forward(x [B, 3, H, W]) -> OrderedDict`` of ``str(k) -> [B, C_k, H / s_k, W / s_k]``
    (sizes rounded up) in the order of ``out_indices``; ``out_channels`` lists the ``C_k``.
    """

    def __init__(self, *, model_name: str, norm: str = "BN",
                 out_indices: Sequence[int] = (1, 2, 3, 4), drop_path_rate: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__()
        options = dict(kwargs)
        if drop_path_rate > 0:
            options["drop_path_rate"] = drop_path_rate
        model = _create(model_name, options)
        reductions = list(model.feature_info.reduction())
        wanted = [2 ** (i + 1) for i in out_indices]
        missing = [i for i, r in zip(out_indices, wanted) if r not in reductions]
        if missing or not out_indices:
            have = [r.bit_length() - 2 for r in reductions]
            raise ConfigError(f"model.backbone.out_indices {list(out_indices)}: timm model "
                              f"{model_name!r} has stages {have} (stage i has stride 2^(i+1))")
        picked = [reductions.index(r) for r in wanted]
        if picked != list(range(len(reductions))):  # rebuild without unused outputs
            model = _create(model_name, {**options, "out_indices": tuple(
                model.feature_info.out_indices[p] for p in picked)})
        self.model = replace_batchnorm(model, norm)
        self.out_channels = list(model.feature_info.channels())
        self.channels_last = str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.model(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return OrderedDict((str(k), f.contiguous()) for k, f in enumerate(feats))
