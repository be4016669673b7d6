"""Mask-IoU head shapes; targets and loss against hand-made masks."""

from __future__ import annotations

import pytest
import torch

from vipseg.models.heads.mask_iou import MaskIoUHead, mask_iou_loss, mask_iou_targets


def test_mask_iou_head_shapes_and_gradients():
    head = MaskIoUHead(in_channels=8, conv_channels=8, fc_dim=16, num_classes=2)
    feats = torch.randn(3, 8, 14, 14, requires_grad=True)
    out = head(feats, torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 2)
    out.sum().backward()
    assert feats.grad is not None and all(p.grad is not None for p in head.parameters())


def test_mask_iou_targets_hand_made():
    probs = torch.full((3, 4, 4), 0.1)
    targets = torch.zeros(3, 4, 4)
    # RoI 0: predicted 2x2 block, target 2x3 block containing it, half the instance inside the
    # RoI: full area 6 / 0.5 = 12, overlap 4, IoU 4 / (4 + 12 - 4) = 1/3.
    probs[0, :2, :2] = 0.9
    targets[0, :2, :3] = 1
    # RoI 1: nothing predicted: IoU 0.
    targets[1, 1:3, 1:3] = 1
    # RoI 2: exact mask, instance entirely inside: IoU 1. 0.5 itself is not foreground.
    probs[2, 2:, :] = 0.8
    probs[2, 0, 0] = 0.5
    targets[2, 2:, :] = 1
    iou = mask_iou_targets(probs, targets, torch.tensor([0.5, 1.0, 1.0]))
    assert torch.allclose(iou, torch.tensor([1 / 3, 0.0, 1.0]), atol=1e-5)


def test_mask_iou_loss_uses_positive_targets_only():
    pred = torch.tensor([0.5, 0.9, 0.2], requires_grad=True)
    loss = mask_iou_loss(pred, torch.tensor([0.3, 0.0, 0.4]), weight=0.5)
    assert loss.item() == pytest.approx(0.5 * ((0.2 ** 2 + 0.2 ** 2) / 2))
    zero = mask_iou_loss(pred, torch.zeros(3))
    assert zero.item() == 0
    zero.backward()
