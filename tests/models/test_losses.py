"""Classification losses (Seesaw against its formula, computed by hand) and box losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder

from vipseg.models.losses import Seesaw, SoftmaxCE, box_reg_loss


def log_softmax_at(values: list[float], k: int) -> float:
    return values[k] - math.log(sum(math.exp(v) for v in values))


def test_softmax_ce():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    loss = SoftmaxCE()
    assert loss.num_outputs(2) == 3 and not loss.cosine
    expected = -(log_softmax_at([2.0, 0.0, -1.0], 0) + log_softmax_at([0.0, 1.0, 3.0], 2)) / 2
    assert loss.loss(logits, torch.tensor([0, 2])).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(loss.scores(logits).sum(1), torch.ones(2))


def test_seesaw_against_its_formula():
    """Two classes (human = label 1, ball = label 2), three RoIs: a human, a ball, background.
    Layout per RoI: [human, ball, foreground, background]."""
    seesaw = Seesaw(2, p=0.8, q=2.0, eps=1e-2)
    assert seesaw.num_outputs(2) == 4 and seesaw.cosine and seesaw.scale == 20.0
    seesaw.cum_samples.copy_(torch.tensor([0.0, 10.0, 2.0]))
    logits = torch.tensor([[1.0, 2.0, 0.5, -0.5],
                           [0.0, 1.0, 0.2, 0.1],
                           [0.4, 0.3, 0.3, 1.3]], requires_grad=True)
    loss = seesaw.loss(logits, torch.tensor([1, 2, 0]))
    # counts after adding this batch: background 1, human 11, ball 3
    assert seesaw.cum_samples.tolist() == [1.0, 11.0, 3.0]
    # RoI 0 (human): the ball is rarer (3 < 11): mitigation (3 / 11) ** 0.8; the ball's
    # probability exceeds the human's: compensation (s_ball / s_human) ** 2 = e ** 2.
    s_human = math.exp(1.0) / (math.exp(1.0) + math.exp(2.0))
    s_ball = 1.0 - s_human
    factor = (3 / 11) ** 0.8 * (s_ball / s_human) ** 2.0
    ce0 = -log_softmax_at([1.0, 2.0 + math.log(factor)], 0)
    # RoI 1 (ball): the human is more frequent (no mitigation) and less probable (no
    # compensation): plain cross-entropy.
    ce1 = -log_softmax_at([0.0, 1.0], 1)
    # objectness pair: RoIs 0 and 1 are foreground (index 0), RoI 2 background (index 1)
    obj = -(log_softmax_at([0.5, -0.5], 0) + log_softmax_at([0.2, 0.1], 0)
            + log_softmax_at([0.3, 1.3], 1))
    assert loss.item() == pytest.approx((ce0 + ce1 + obj) / 3, rel=1e-6)
    loss.backward()
    assert logits.grad is not None


def test_seesaw_counts_are_state_and_scores_split_objectness():
    seesaw = Seesaw(2)
    assert "cum_samples" in seesaw.state_dict()
    logits = torch.tensor([[1.0, 2.0, 0.5, -0.5], [0.0, 0.0, -1.0, 1.0]])
    scores = seesaw.scores(logits)
    fg = 1 / (1 + math.exp(-1.0))  # softmax([0.5, -0.5])[0]
    s_ball = math.exp(2.0) / (math.exp(1.0) + math.exp(2.0))
    assert scores.shape == (2, 3)
    assert scores[0].tolist() == pytest.approx([1 - fg, (1 - s_ball) * fg, s_ball * fg], rel=1e-6)
    assert torch.allclose(scores.sum(1), torch.ones(2))


def test_seesaw_without_foreground():
    seesaw = Seesaw(2)
    logits = torch.tensor([[1.0, 2.0, 0.5, -0.5]])
    assert seesaw.loss(logits, torch.tensor([0])).item() == pytest.approx(-log_softmax_at([0.5, -0.5], 1))


def test_box_reg_losses_known_answers():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    gt = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    targets = coder.encode_single(gt, proposals)  # (5, 5, 0, 0): centre moves by half a width
    assert torch.allclose(targets, torch.tensor([[5.0, 5.0, 0.0, 0.0]]))
    l1 = box_reg_loss("l1", targets + torch.tensor([0.5, 0, 0, 0]), proposals, gt, coder=coder,
                      normalizer=4)
    assert l1.item() == pytest.approx(0.5 / 4)
    sl1 = box_reg_loss("smooth_l1", targets + torch.tensor([0.05, 0, 0, 0]), proposals, gt,
                       coder=coder, beta=0.1, normalizer=1)
    assert sl1.item() == pytest.approx(0.5 * 0.05 ** 2 / 0.1, rel=1e-4)
    # zero deltas: the proposal itself; IoU 1/7, enclosing box 3x3, union 7
    giou = box_reg_loss("giou", torch.zeros(1, 4), proposals, gt, coder=coder, normalizer=2)
    assert giou.item() == pytest.approx((1 - (1 / 7 - 2 / 9)) / 2, rel=1e-5)
    assert box_reg_loss("giou", targets, proposals, gt, coder=coder, normalizer=1).item() < 1e-5
    empty = box_reg_loss("smooth_l1", torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4),
                         coder=coder, normalizer=0)
    assert empty.item() == 0
    with pytest.raises(ValueError):
        box_reg_loss("iou", targets, proposals, gt, coder=coder, normalizer=1)
