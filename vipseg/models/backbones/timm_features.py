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

Two ways in: Swin, ConvNeXt and ConvNeXt-V2 (:data:`SPLITTABLE`) are built as full timm
models whose stem and stages vipseg runs one by one (:func:`timm_stages`, a
:class:`~vipseg.models.backbones.stages.StagedBackbone`: checkpointing per stage and composite
backbones work for them); every other model goes through timm's ``features_only`` wrapper
(:class:`TimmFeatures`). HRNet models expose their parallel branches (``branches = True``),
which the HRFPN neck needs; with ``feature_location=''`` (a timm kwarg) they return the raw
branch outputs (W32: 32, 64, 128, 256 channels) rather than the wider "incre" features.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import timm
import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, freeze_batch_norm_2d
from timm.models.hrnet import HighResolutionNet

from vipseg.errors import ConfigError
from vipseg.models.backbones.stages import StagedBackbone
from vipseg.models.norms import norm_factory

TIMM_PREFIX = "timm:"
# Tried in order: the first one the model accepts lets it take any (padded) input size.
SIZE_OPTIONS: tuple[dict[str, Any], ...] = ({"strict_img_size": False},
                                            {"dynamic_img_size": True}, {})
# timm modules whose models run as stem + stages: module -> (stem attribute, stages attribute).
# Their forward_features is stem, each stage (downsample then blocks), final norm; each
# stage's feature_info entry names the stage module.
SPLITTABLE: dict[str, tuple[str, str]] = {"swin_transformer": ("patch_embed", "layers"),
                                          "convnext": ("stem", "stages")}


def splittable(model_name: str) -> bool:
    """Whether timm's ``model_name`` runs as stem + stages here (:data:`SPLITTABLE`)."""
    arch = model_name.split(".")[0]
    return any(arch in timm.list_models(module=m) for m in SPLITTABLE)


def _create(model_name: str, options: dict[str, Any], features_only: bool = True) -> nn.Module:
    """``timm.create_model(pretrained=False)`` (``features_only``, or the bare network without
    classifier) with the first size option of :data:`SIZE_OPTIONS` the model accepts."""
    if not timm.is_model(model_name):
        raise ConfigError(f"model.backbone.name: timm has no model {model_name!r}")
    mode: dict[str, Any] = {"features_only": True} if features_only else {"num_classes": 0}
    for size_option in SIZE_OPTIONS:
        try:
            return timm.create_model(model_name, pretrained=False, **mode,
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


def _options(kwargs: dict[str, Any], drop_path_rate: float) -> dict[str, Any]:
    options = dict(kwargs)
    if drop_path_rate > 0:
        options["drop_path_rate"] = drop_path_rate
    return options


def timm_stages(*, model_name: str, norm: str = "BN", out_indices: Sequence[int] = (1, 2, 3, 4),
                drop_path_rate: float = 0.0, checkpointing: bool = False,
                **kwargs: Any) -> StagedBackbone:
    """A :func:`splittable` timm model as stem + stages (arguments as :class:`TimmFeatures`;
    ``checkpointing`` as ``StagedBackbone``). The final norm and classifier are dropped, as
    in timm's ``features_only`` models."""
    if not splittable(model_name):
        raise ConfigError(f"model.backbone: timm model {model_name!r} cannot be split into stem "
                          f"+ stages (supported: Swin, ConvNeXt, ConvNeXt-V2)")
    model = _create(model_name, _options(kwargs, drop_path_rate), features_only=False)
    stem_attr, stages_attr = next(v for k, v in SPLITTABLE.items()
                                  if type(model).__module__.endswith(k))
    stages = list(getattr(model, stages_attr))
    info = model.feature_info
    if [f["module"] for f in info] != [f"{stages_attr}.{i}" for i in range(len(stages))]:
        raise ConfigError(f"model.backbone: timm model {model_name!r} does not list one feature "
                          f"per stage; it cannot be split into stem + stages")
    channels = [f["num_chs"] for f in info]
    stem = replace_batchnorm(getattr(model, stem_attr), norm)
    return StagedBackbone(stem=stem, stages=[replace_batchnorm(s, norm) for s in stages],
                          stage_channels=channels, stage_strides=[f["reduction"] for f in info],
                          entry_channels=channels, split_stages=True,
                          channels_last=str(getattr(model, "output_fmt", "NCHW")) == "NHWC",
                          out_indices=out_indices, checkpointing=checkpointing, name=model_name)


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
    (sizes rounded up) in the order of ``out_indices``; ``out_channels`` lists the ``C_k``;
    ``branches`` says whether the maps are an HRNet's parallel branches.
    """

    def __init__(self, *, model_name: str, norm: str = "BN",
                 out_indices: Sequence[int] = (1, 2, 3, 4), drop_path_rate: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__()
        options = _options(kwargs, drop_path_rate)
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
        self.branches = isinstance(model, HighResolutionNet)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.model(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return OrderedDict((str(k), f.contiguous()) for k, f in enumerate(feats))
