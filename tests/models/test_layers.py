"""ConvWS2d against a hand-computed standardised weight; conv_norm_act's structure."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vipseg.models.layers import ConvWS2d, conv_norm_act, standardise_weight
from vipseg.models.norms import group_norm


def test_standardise_weight_known_answer():
    w = torch.tensor([[1.0, 3.0], [2.0, 8.0]]).view(2, 1, 1, 2)
    # channel 0: mean 2, unbiased std sqrt(2); channel 1: mean 5, std sqrt(18)
    expected = torch.tensor([[-1 / (math.sqrt(2) + 1e-5), 1 / (math.sqrt(2) + 1e-5)],
                             [-3 / (math.sqrt(18) + 1e-5), 3 / (math.sqrt(18) + 1e-5)]])
    assert torch.allclose(standardise_weight(w).view(2, 2), expected, atol=1e-6)


def test_conv_ws_uses_standardised_weight():
    conv = ConvWS2d(1, 1, (1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 3.0]).view(1, 1, 1, 2))
    x = torch.tensor([2.0, 7.0]).view(1, 1, 1, 2)
    out = conv(x)
    assert out.shape == (1, 1, 1, 1)
    assert math.isclose(out.item(), (7.0 - 2.0) / (math.sqrt(2) + 1e-5), rel_tol=1e-6)
    # scaling or shifting the raw weight does not change a weight-standardised conv
    with torch.no_grad():
        conv.weight.mul_(5).add_(3)
    assert torch.allclose(conv(x), out, atol=1e-5)
    assert set(conv.state_dict()) == {"weight"}


def test_conv_norm_act_layers_and_shapes():
    block = conv_norm_act(8, 16, norm_layer=group_norm, ws=True)
    assert isinstance(block[0], ConvWS2d) and block[0].bias is None
    assert isinstance(block[1], nn.GroupNorm) and isinstance(block[2], nn.ReLU)
    plain = conv_norm_act(8, 16, kernel=1, stride=2, norm_layer=None, ws=False)
    assert type(plain[0]) is nn.Conv2d and plain[0].bias is not None and len(plain) == 2
    x = torch.randn(2, 8, 13, 14)
    assert block(x).shape == (2, 16, 13, 14)
    assert plain(x).shape == (2, 16, 7, 7)
    assert (plain(x) >= 0).all()
