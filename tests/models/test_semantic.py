"""HTC semantic branch: fused shapes and a loss that ignores batch padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vipseg.models.heads.semantic import SemanticHead, semantic_loss


def test_semantic_head_fuses_at_the_fusion_level():
    head = SemanticHead(in_channels=8, num_levels=4, fusion_level=1, num_convs=2, conv_channels=6,
                        num_classes=2)
    pyramid = [torch.randn(2, 8, 32 // 2 ** i, 40 // 2 ** i) for i in range(4)]
    logits, feat = head(pyramid)
    assert logits.shape == (2, 3, 16, 20) and feat.shape == (2, 6, 16, 20)
    (logits.sum() + feat.sum()).backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(ValueError):
        head(pyramid[:3])


def test_semantic_loss_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    t0 = torch.randint(0, 3, (4, 5))
    t1 = torch.randint(0, 3, (2, 3))  # a smaller image: the rest of its map is padding
    expected = torch.cat([F.cross_entropy(logits[:1], t0[None], reduction="none").flatten(),
                          F.cross_entropy(logits[1:, :, :2, :3], t1[None], reduction="none").flatten()])
    loss = semantic_loss(logits, [t0, t1], weight=0.2)
    assert loss.item() == pytest.approx(0.2 * expected.mean().item(), rel=1e-5)
