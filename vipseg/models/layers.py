"""Convolution building blocks shared by the heads: weight-standardised conv and conv-norm-ReLU.

Weight standardisation (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and
Weight Standardization") re-centres and re-scales every output channel's filter before the
convolution; with GroupNorm it is a known aid when training from scratch with small batches.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.norms import NormFactory

WS_EPS = 1e-5  # added to the filter std (as mmcv's ConvWS)


def standardise_weight(weight: torch.Tensor, eps: float = WS_EPS) -> torch.Tensor:
    """``(w - mean) / (std + eps)`` per output channel of a conv weight [O, I, kh, kw].

    ``mean`` and ``std`` (unbiased, torch's default) are taken over the ``I * kh * kw``
    entries of each output channel's filter.
    """
    flat = weight.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).view(-1, 1, 1, 1)
    return (weight - mean) / (std + eps)


class ConvWS2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardised (:func:`standardise_weight`) at every call.

    Same arguments, parameters and state-dict keys as ``nn.Conv2d``; input [B, I, H, W] ->
    output [B, O, H', W'] as the plain convolution with the standardised weight.
    """

    def __init__(self, *args, eps: float = WS_EPS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, standardise_weight(self.weight, self.eps), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


def msra_fill(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) weight and zero bias, as detectron2's ``c2_msra_fill``."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def xavier_fill(module: nn.Module) -> None:
    """Kaiming-uniform (a=1) weight and zero bias, as detectron2's ``c2_xavier_fill`` (FCs)."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def conv_norm_act(in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1,
                  norm_layer: Optional[NormFactory] = None, ws: bool = False) -> nn.Sequential:
    """``kernel`` x ``kernel`` conv ("same" padding, ``stride``) -> norm -> ReLU.

    [B, in_ch, H, W] -> [B, out_ch, ceil(H / stride), ceil(W / stride)]. The conv has a bias
    only without a norm; ``ws`` makes it a :class:`ConvWS2d`. Weights are MSRA-filled.
    """
    conv_type = ConvWS2d if ws else nn.Conv2d
    conv = conv_type(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2,
                     bias=norm_layer is None)
    msra_fill(conv)
    layers: list[nn.Module] = [conv]
    if norm_layer is not None:
        layers.append(norm_layer(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
