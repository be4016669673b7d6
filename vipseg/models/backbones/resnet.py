"""torchvision ResNet as a multi-scale feature extractor, initialised from scratch.

Stage ``i`` (1..4, torchvision's ``layer{i}``) has stride ``2 ** (i + 1)``: stage 1 is 1/4 of
the input, stage 4 is 1/32.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models import resnet

from vipseg.errors import ConfigError
from vipseg.models.norms import NormFactory

RESNETS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}


class ResNetFeatures(nn.Module):
    """Stem and stages of a torchvision ResNet; returns the stages in ``out_indices``.

    Args:
        depth_name: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        norm_layer: ``channels -> module`` used for every norm of the network.
        out_indices: stages to return, 1..4 (stride ``2 ** (i + 1)``).
        zero_init_residual: start each residual block's last norm at gamma 0 (the block is the
            identity at init, which helps from-scratch training); leave it off for frozen norms.

    ``forward(x [B, 3, H, W]) -> OrderedDict`` of ``str(k) -> [B, C_k, H / s_k, W / s_k]`` in
    the order of ``out_indices``; ``out_channels`` lists the ``C_k``.
    """

    def __init__(self, *, depth_name: str, norm_layer: NormFactory,
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        if depth_name not in RESNETS:
            raise ConfigError(f"unknown backbone {depth_name!r}; expected one of "
                              f"{', '.join(RESNETS)} or timm:<name>")
        bad = [i for i in out_indices if i not in (1, 2, 3, 4)]
        if bad or not out_indices:
            raise ConfigError(f"model.backbone.out_indices {list(out_indices)}: ResNet stages "
                              "are 1..4")
        net = RESNETS[depth_name](weights=None, norm_layer=norm_layer,
                                  zero_init_residual=zero_init_residual)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.out_indices = list(out_indices)
        last = max(self.out_indices)
        self.stages = nn.ModuleList([getattr(net, f"layer{i}") for i in range(1, last + 1)])
        width = 512 if depth_name in ("resnet18", "resnet34") else 2048
        self.out_channels = [width >> (4 - i) for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.out_indices:
                out[str(len(out))] = x
        return out
