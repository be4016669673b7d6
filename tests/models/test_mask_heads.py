"""FCNMaskHead shapes, HTC's mask information flow and the pixel-crop branch."""

from __future__ import annotations

import pytest
import torch

from vipseg.models.heads.mask_heads import FCNMaskHead
from vipseg.models.heads.roi_heads import crop_pixels
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


def test_pixel_branch_is_required_and_its_crop_changes_the_logits():
    torch.manual_seed(0)
    head = FCNMaskHead(in_channels=16, num_convs=1, conv_channels=8, num_classes=2,
                       norm_layer=group_norm, pixel_channels=4)
    x, pixels = torch.randn(3, 16, 14, 14), torch.randn(3, 3, 28, 28)
    with pytest.raises(ValueError):
        head(x)
    with pytest.raises(ValueError):
        FCNMaskHead(in_channels=16, num_convs=1, conv_channels=8, num_classes=2)(x, pixels=pixels)
    logits, feat = head(x, pixels=pixels)
    assert logits.shape == (3, 2, 28, 28) and feat.shape == (3, 8, 14, 14)
    other = pixels.clone()
    other[1] = torch.randn(3, 28, 28)
    changed = head(x, pixels=other)[0]
    assert torch.equal(changed[[0, 2]], logits[[0, 2]])  # each RoI sees only its own crop
    assert not torch.allclose(changed[1], logits[1])
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in head.pixel_convs.parameters())


def test_crop_pixels_of_a_box_on_pixel_edges_is_its_pixels():
    torch.manual_seed(0)
    image = torch.randn(2, 3, 40, 50)
    boxes = [torch.tensor([[3.0, 5.0, 31.0, 33.0]]), torch.tensor([[20.0, 10.0, 48.0, 38.0],
                                                                   [0.0, 0.0, 14.0, 14.0]])]
    crops = crop_pixels(image, boxes, 28, aligned=True)
    assert crops.shape == (3, 3, 28, 28)
    torch.testing.assert_close(crops[0], image[0, :, 5:33, 3:31])
    torch.testing.assert_close(crops[1], image[1, :, 10:38, 20:48])
    # a 14-pixel box sampled at 28 cells: every pixel twice, bilinear between neighbours
    up = crops[2]
    torch.testing.assert_close(up[:, 1::2][:, :13, 1::2][:, :, :13],
                               0.75 * 0.75 * image[1, :, :13, :13] + 0.25 * 0.75 * (
                                   image[1, :, 1:14, :13] + image[1, :, :13, 1:14])
                               + 0.25 * 0.25 * image[1, :, 1:14, 1:14])
