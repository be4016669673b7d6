"""FCNMaskHead shapes and HTC's mask information flow."""

from __future__ import annotations

import pytest
import torch

from vipseg.models.heads.mask_heads import FCNMaskHead
from vipseg.models.layers import ConvWS2d
from vipseg.models.norms import group_norm


@pytest.mark.parametrize("agnostic, channels", [(False, 2), (True, 1)])
def test_mask_head_shapes(agnostic, channels):
    head = FCNMaskHead(in_channels=16, num_convs=2, conv_channels=8, num_classes=2,
                       norm_layer=group_norm, ws=True, class_agnostic=agnostic)
    logits, feat = head(torch.randn(3, 16, 14, 14))
    assert logits.shape == (3, channels, 28, 28)
    assert feat.shape == (3, 8, 14, 14)
    assert sum(isinstance(m, ConvWS2d) for m in head.modules()) == 2


def test_residual_feature_flows_and_is_required():
    torch.manual_seed(0)
    plain = FCNMaskHead(in_channels=16, num_convs=2, conv_channels=8, num_classes=2)
    res = FCNMaskHead(in_channels=16, num_convs=2, conv_channels=8, num_classes=2, residual_in=True)
    res.load_state_dict(plain.state_dict(), strict=False)  # same convs; conv_res extra
    x, prev = torch.randn(3, 16, 14, 14), torch.randn(3, 8, 14, 14)
    with pytest.raises(ValueError):
        res(x)
    with pytest.raises(ValueError):
        plain(x, prev)
    with torch.no_grad():  # a zero 1x1 conv adds relu(0) = 0: both heads agree
        res.conv_res[0].weight.zero_()
        res.conv_res[0].bias.zero_()
    assert torch.allclose(res(x, prev)[0], plain(x)[0])
    with torch.no_grad():
        res.conv_res[0].bias.fill_(1.0)  # adds 1 to every input: the output changes
    logits, _ = res(x, prev.requires_grad_())
    assert not torch.allclose(logits, plain(x)[0])
    logits.sum().backward()
    assert res.conv_res[0].bias.grad is not None
