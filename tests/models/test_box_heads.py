"""Box head shapes for the three reference layouts and the pixel branch; predictor outputs,
cosine classifier, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vipseg.models.heads.box_heads import BoxPredictor, ConvFCBoxHead, CosineLinear
from vipseg.models.heads.roi_heads import grow_boxes
from vipseg.models.layers import ConvWS2d
from vipseg.models.losses import Seesaw, SoftmaxCE
from vipseg.models.norms import group_norm


@pytest.mark.parametrize("convs, fcs, expected", [(0, 2, 32), (4, 1, 32), (2, 2, 32), (2, 0, 8 * 49)])
def test_conv_fc_box_head_shapes(convs, fcs, expected):
    head = ConvFCBoxHead(in_channels=16, num_convs=convs, conv_channels=8, num_fcs=fcs, fc_dim=32,
                         norm_layer=group_norm if convs else None, ws=convs > 0)
    assert head.out_features == expected
    out = head(torch.randn(5, 16, 7, 7))
    assert out.shape == (5, expected)
    assert sum(isinstance(m, ConvWS2d) for m in head.modules()) == convs
    assert sum(isinstance(m, nn.GroupNorm) for m in head.modules()) == convs
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == fcs


@pytest.mark.parametrize("convs", [0, 2])
def test_box_head_pixel_branch_joins_before_the_fcs(convs):
    torch.manual_seed(0)
    head = ConvFCBoxHead(in_channels=16, num_convs=convs, conv_channels=8, num_fcs=1, fc_dim=32,
                         norm_layer=group_norm, pixel_channels=4)
    assert head.fcs[0].in_features == ((8 if convs else 16) + 4) * 49
    x, pixels = torch.randn(5, 16, 7, 7), torch.randn(5, 3, 14, 14)
    with pytest.raises(ValueError):
        head(x)
    out = head(x, pixels=pixels)
    assert out.shape == (5, 32)
    other = pixels.clone()
    other[2] += 1.0
    changed = head(x, pixels=other)
    assert torch.equal(changed[[0, 1, 3, 4]], out[[0, 1, 3, 4]])
    assert not torch.allclose(changed[2], out[2])


def test_grow_boxes_about_the_centre():
    grown = grow_boxes(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), 1.5)
    torch.testing.assert_close(grown, torch.tensor([[5.0, 10.0, 35.0, 70.0]]))


def test_box_head_needs_a_layer():
    with pytest.raises(ValueError):
        ConvFCBoxHead(in_channels=4, num_convs=0, conv_channels=4, num_fcs=0, fc_dim=4)


@pytest.mark.parametrize("loss, outputs", [(SoftmaxCE(), 3), (Seesaw(2), 4)])
@pytest.mark.parametrize("agnostic", [True, False])
def test_predictor_shapes(loss, outputs, agnostic):
    pred = BoxPredictor(in_features=32, num_classes=2, class_agnostic=agnostic, cls_loss=loss)
    logits, deltas = pred(torch.randn(6, 32))
    assert logits.shape == (6, outputs)
    assert deltas.shape == (6, 4 if agnostic else 12)
    assert isinstance(pred.cls_score, CosineLinear) == loss.cosine


def test_cosine_classifier_is_scaled_cosine():
    layer = CosineLinear(3, 2, scale=20.0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([[3.0, 4.0, 0.0]])
    assert torch.allclose(layer(x), torch.tensor([[20 * 0.6, 20 * 0.8]]), atol=1e-4)
    assert torch.allclose(layer(7 * x), layer(x), atol=1e-4)  # invariant to the feature norm


def test_predictor_init_like_detectron2():
    torch.manual_seed(0)
    pred = BoxPredictor(in_features=1024, num_classes=2, class_agnostic=False, cls_loss=SoftmaxCE())
    assert abs(pred.cls_score.weight.std().item() - 0.01) < 0.001
    assert abs(pred.bbox_pred.weight.std().item() - 0.001) < 0.0001
    assert not pred.cls_score.bias.any() and not pred.bbox_pred.bias.any()
