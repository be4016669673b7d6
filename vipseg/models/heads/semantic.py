"""HTC's semantic segmentation branch (Chen et al., "Hybrid Task Cascade", CVPR 2019).

Every pyramid level passes a 1x1 conv-ReLU and is resized (bilinear) to the ``fusion_level``
map and summed; ``num_convs`` 3x3 conv-ReLU follow, then a 1x1 conv to C + 1 class logits
(0 = background) and a 1x1 conv-ReLU embedding that HTC pools per RoI and adds to the box and
mask features. The target is an instance-derived label map at the fusion level's stride
(:func:`vipseg.models.mask_targets.semantic_target`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.layers import conv_norm_act

IGNORE = -1  # label of pixels outside every image (batch padding): no loss


class SemanticHead(nn.Module):
    """forward(pyramid: list of ``num_levels`` maps [B, in_channels, h_l, w_l], finest first)
    -> (logits [B, num_classes + 1, h, w], feat [B, conv_channels, h, w]) at the size (h, w)
    of level ``fusion_level``. ``num_classes`` counts the foreground classes."""

    def __init__(self, *, in_channels: int, num_levels: int, fusion_level: int, num_convs: int,
                 conv_channels: int, num_classes: int) -> None:
        super().__init__()
        if not 0 <= fusion_level < num_levels:
            raise ValueError(f"fusion_level {fusion_level} outside 0..{num_levels - 1}")
        self.fusion_level = fusion_level
        self.lateral = nn.ModuleList(
            conv_norm_act(in_channels, in_channels, kernel=1) for _ in range(num_levels))
        self.convs = nn.Sequential(*[
            conv_norm_act(in_channels if i == 0 else conv_channels, conv_channels)
            for i in range(num_convs)])
        out = conv_channels if num_convs else in_channels
        self.logits = nn.Conv2d(out, num_classes + 1, 1)
        self.embed = conv_norm_act(out, conv_channels, kernel=1)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(pyramid) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} levels, got {len(pyramid)}")
        size = pyramid[self.fusion_level].shape[-2:]
        x = self.lateral[self.fusion_level](pyramid[self.fusion_level])
        for i, level in enumerate(pyramid):
            if i != self.fusion_level:
                level = F.interpolate(level, size=size, mode="bilinear", align_corners=True)
                x = x + self.lateral[i](level)
        x = self.convs(x)
        return self.logits(x), self.embed(x)


def semantic_loss(logits: torch.Tensor, targets: Sequence[torch.Tensor] | torch.Tensor, *,
                  weight: float = 0.2) -> torch.Tensor:
    """``weight`` x pixel-mean cross-entropy of ``logits`` [B, C + 1, h, w] against the
    per-image label maps ``targets`` (each int64 [h_i, w_i] with h_i <= h, w_i <= w, 0 =
    background, c + 1 for class c, top-left aligned as the padded batch); the pixels outside
    each target (batch padding) are ignored. 0.2 is HTC's weight."""
    full = logits.new_full((logits.shape[0], *logits.shape[-2:]), IGNORE, dtype=torch.long)
    for k, t in enumerate(targets):
        h, w = min(t.shape[0], full.shape[1]), min(t.shape[1], full.shape[2])
        full[k, :h, :w] = t[:h, :w]
    return weight * F.cross_entropy(logits, full, ignore_index=IGNORE)
