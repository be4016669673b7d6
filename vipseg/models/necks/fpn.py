"""Feature pyramid on top of any multi-scale backbone (torchvision ``FeaturePyramidNetwork``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vipseg.models.norms import NormFactory


class BackboneFPN(nn.Module):
    """A backbone followed by an FPN with one extra max-pooled level.

    Args:
        body: module with an ``out_channels`` list whose forward returns an ordered dict of
            ``L`` feature maps, finest first, keyed ``"0" .. str(L - 1)``.
        channels: FPN output channels.
        norm_layer: ``channels -> module`` after each FPN conv, or ``None`` (convs with bias).

    ``forward(x [B, 3, H, W]) -> OrderedDict`` with keys ``"0" .. str(L - 1)`` and ``"pool"``,
    each ``[B, channels, h, w]``; ``out_channels`` is ``channels`` (as torchvision's detection
    heads expect), ``level_names`` lists the keys of the non-pooled levels and ``num_levels``
    counts all levels.
    """

    def __init__(self, body: nn.Module, *, channels: int = 256,
                 norm_layer: Optional[NormFactory] = None) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.out_channels), channels,
                                         extra_blocks=LastLevelMaxPool(), norm_layer=norm_layer)
        self.out_channels = channels
        self.level_names = [str(i) for i in range(len(body.out_channels))]
        self.num_levels = len(self.level_names) + 1  # + the max-pooled level

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))
