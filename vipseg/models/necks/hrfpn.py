"""HRFPN (HRNet's neck, as mmdetection's ``HRFPN``): one map from all branches, then pooled.

All branches are resized (bilinear) to the finest one, concatenated and reduced by a 1x1
conv; levels 1..4 are that map average-pooled by 2, 4, 8 and 16; each of the five levels then
gets its own 3x3 conv. With branches at strides 4..32 the levels have strides 4, 8, 16, 32, 64.
No activations (mmdetection's HRFPN has none); norms after each conv when ``norm_layer``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.norms import NormFactory

NUM_LEVELS = 5  # strides 4..64 from branches starting at stride 4, as the FPN gives


def _conv(in_ch: int, out_ch: int, kernel: int, norm_layer: Optional[NormFactory]) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=norm_layer is None)
    nn.init.kaiming_uniform_(conv.weight, a=1)  # as torchvision's FPN convs
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, norm_layer(out_ch)) if norm_layer is not None else conv


class HRFPN(nn.Module):
    """HRFPN over the branches of a multi-resolution backbone (module doc).

    Args:
        in_channels: channels of the branches, finest first.
        channels: output channels of every level.
        norm_layer: ``channels -> module`` after each conv, or ``None`` (convs with bias).

    ``forward(OrderedDict of branches [B, C_k, h_k, w_k], finest first) -> OrderedDict`` with
    keys ``"0".."3"`` and ``"pool"``, level ``k`` ``[B, channels, ceil(h_0 / 2^k),
    ceil(w_0 / 2^k)]`` (the FPN's sizes); ``out_channels``, ``level_names`` (non-pooled keys)
    and ``num_levels`` (all levels) as the FPN's.
    """

    def __init__(self, in_channels: Sequence[int], *, channels: int = 256,
                 norm_layer: Optional[NormFactory] = None) -> None:
        super().__init__()
        self.reduction = _conv(sum(in_channels), channels, 1, norm_layer)
        self.convs = nn.ModuleList([_conv(channels, channels, 3, norm_layer)
                                    for _ in range(NUM_LEVELS)])
        self.out_channels = channels
        self.level_names = [str(k) for k in range(NUM_LEVELS - 1)]
        self.num_levels = NUM_LEVELS

    def forward(self, branches: "OrderedDict[str, torch.Tensor]"
                ) -> "OrderedDict[str, torch.Tensor]":
        maps = list(branches.values())
        size = maps[0].shape[-2:]
        fused = torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear",
                                                     align_corners=False) for m in maps[1:]], 1)
        fused = self.reduction(fused)
        levels = [fused] + [F.avg_pool2d(fused, 2 ** k, 2 ** k, ceil_mode=True)
                            for k in range(1, NUM_LEVELS)]
        names = [*self.level_names, "pool"]
        return OrderedDict((n, conv(x)) for n, conv, x in zip(names, self.convs, levels))
