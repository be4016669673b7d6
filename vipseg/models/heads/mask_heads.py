"""The FCN mask head of Mask R-CNN, with HTC's mask information flow as an option.

``num_convs`` 3x3 conv-norm-ReLU (optionally weight-standardised) on the 14x14 RoI features,
a 2x2 stride-2 transposed conv + ReLU to 28x28 and a 1x1 conv to one logit map per class (or
one, class-agnostic). With ``residual_in`` (HTC), the previous stage's mask features pass
through a 1x1 conv-norm-ReLU and are added to the RoI features before the convs.

With ``pixel_channels`` > 0 the head also sees the input image at full resolution: the RoI's
crop of the normalised image ([R, 3, 2S, 2S], one sample per output cell) passes through two
3x3 conv-norm-ReLU of ``pixel_channels``, is concatenated with the upsampled features and
fused by a 3x3 conv-norm-ReLU before the logits. The pyramid's finest level has stride 4, so
a limb one or two pixels wide is below its resolution; the crop gives the head the edges it
needs to place such boundaries (the idea of PointRend's and RefineMask's fine-grained
features, at the cost of three small convs on the 28x28 grid).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from vipseg.models.layers import conv_norm_act, msra_fill
from vipseg.models.norms import NormFactory


class FCNMaskHead(nn.Module):
    """forward(x [R, in_channels, S, S], res_feat [R, conv_channels, S, S] or None, pixels
    [R, 3, 2S, 2S] or None) -> (logits [R, num_classes or 1, 2S, 2S], feat [R, conv_channels,
    S, S]).

    ``feat`` is the output of the convs (before the upsampling): the next HTC stage's
    ``res_feat``. ``num_classes`` counts the foreground classes: channel c of the logits is
    foreground class c (vipseg's 0..C-1 = the heads' label - 1). ``res_feat`` must be given
    iff ``residual_in``, ``pixels`` (the RoI's image crop) iff ``pixel_channels`` > 0. Init as
    detectron2: convs and deconv MSRA, logits N(0, 0.001).
    """

    def __init__(self, *, in_channels: int, num_convs: int, conv_channels: int, num_classes: int,
                 norm_layer: Optional[NormFactory] = None, ws: bool = False,
                 class_agnostic: bool = False, residual_in: bool = False,
                 pixel_channels: int = 0) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError("FCNMaskHead needs num_convs >= 1")
        self.residual_in = residual_in
        self.conv_res = (conv_norm_act(conv_channels, in_channels, kernel=1,
                                       norm_layer=norm_layer, ws=ws) if residual_in else None)
        self.convs = nn.Sequential(*[
            conv_norm_act(in_channels if i == 0 else conv_channels, conv_channels,
                          norm_layer=norm_layer, ws=ws) for i in range(num_convs)])
        self.upsample = nn.ConvTranspose2d(conv_channels, conv_channels, 2, stride=2)
        msra_fill(self.upsample)
        self.pixel_channels = pixel_channels
        self.pixel_convs = self.fuse = None
        if pixel_channels > 0:
            self.pixel_convs = nn.Sequential(
                conv_norm_act(3, pixel_channels, norm_layer=norm_layer, ws=ws),
                conv_norm_act(pixel_channels, pixel_channels, norm_layer=norm_layer, ws=ws))
            self.fuse = conv_norm_act(conv_channels + pixel_channels, conv_channels,
                                      norm_layer=norm_layer, ws=ws)
        self.logits = nn.Conv2d(conv_channels, 1 if class_agnostic else num_classes, 1)
        nn.init.normal_(self.logits.weight, std=0.001)
        nn.init.zeros_(self.logits.bias)

    def forward(self, x: torch.Tensor, res_feat: Optional[torch.Tensor] = None,
                pixels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if (res_feat is not None) != self.residual_in:
            raise ValueError("res_feat must be given exactly when the head has residual_in")
        if (pixels is not None) != (self.pixel_channels > 0):
            raise ValueError("pixels must be given exactly when the head has pixel_channels")
        if self.conv_res is not None:
            x = x + self.conv_res(res_feat)
        feat = self.convs(x)
        up = torch.relu(self.upsample(feat))
        if self.fuse is not None:
            up = self.fuse(torch.cat([up, self.pixel_convs(pixels)], dim=1))
        return self.logits(up), feat
