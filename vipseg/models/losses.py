"""Classification and box-regression losses of the RoI box heads.

Label convention inside the heads: ``labels`` int64 [R] with 0 = background and foreground
class c (vipseg's 0..C-1) at c + 1. A :class:`ClsLoss` owns everything that depends on the
classifier's output layout: how many logits the predictor emits for C foreground classes,
the loss, and the conversion of logits to per-class probabilities [R, C + 1] (column 0
background) that post-processing reads. ``cosine`` / ``scale`` tell the predictor to use a
normalised-linear (cosine) classifier whose logits are ``scale * cos(x, w)``.

- :class:`SoftmaxCE`: C + 1 logits, cross-entropy, softmax scores (Fast R-CNN).
- :class:`Seesaw`: mmdetection's Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed
  Instance Segmentation", CVPR 2021) with its separate objectness pair: C + 2 logits laid out
  ``[class_1 .. class_C, foreground, background]``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import generalized_box_iou_loss

BoxLossKind = Literal["smooth_l1", "l1", "giou"]
BOX_LOSSES = ("smooth_l1", "l1", "giou")


class ClsLoss(nn.Module):
    """Interface of a box classifier's loss (module doc). Subclasses set ``cosine`` and
    ``scale`` and implement the three methods."""

    cosine: bool = False
    scale: float = 20.0

    def num_outputs(self, num_classes: int) -> int:
        """Logits per RoI for ``num_classes`` foreground classes."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``logits`` [R, K] for ``labels`` [R] (0 = background), averaged
        over the R RoIs."""
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` [R, K] -> probabilities [R, C + 1], column 0 background."""
        raise NotImplementedError


class SoftmaxCE(ClsLoss):
    """Softmax cross-entropy over C + 1 logits (column 0 background).

    ``cosine=True`` pairs it with the normalised-linear classifier of temperature ``scale``.
    """

    def __init__(self, *, cosine: bool = False, scale: float = 20.0) -> None:
        super().__init__()
        self.cosine = cosine
        self.scale = scale

    def num_outputs(self, num_classes: int) -> int:
        return num_classes + 1

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.numel() == 0:
            return logits.sum()
        return F.cross_entropy(logits, labels)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=-1)


def seesaw_weights(logits: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, *,
                   p: float, q: float, eps: float) -> torch.Tensor:
    """Seesaw factors S [R, C] for class ``logits`` [R, C], ``labels`` [R] in 0..C-1 and
    cumulative class ``counts`` [C].

    Mitigation ``M[i, j] = (N_j / N_i) ** p`` where ``N_j < N_i`` (else 1), ``i`` the RoI's
    label; compensation ``C[i, j] = (s_j / s_i) ** q`` where the predicted probability
    ``s_j`` of class j exceeds that of the label (else 1), probabilities from the detached
    softmax, ``s_i`` clamped below at ``eps``. ``S = M * C``; the label's own factor is 1.
    """
    weights = logits.new_ones(logits.shape)
    if p > 0:
        n = counts.clamp(min=1).to(logits.dtype)
        ratio = n[None, :] / n[:, None]  # [i, j] = N_j / N_i
        weights = weights * torch.where(ratio < 1, ratio.pow(p), torch.ones_like(ratio))[labels]
    if q > 0:
        probs = F.softmax(logits.detach(), dim=1)
        own = probs.gather(1, labels[:, None]).clamp(min=eps)
        ratio = probs / own
        weights = weights * torch.where(ratio > 1, ratio.pow(q), torch.ones_like(ratio))
    return weights


class Seesaw(ClsLoss):
    """mmdetection's ``SeesawLoss`` with the objectness pair, for ``num_classes`` foreground
    classes (C + 2 logits: ``[class_1 .. class_C, foreground, background]``).

    ``loss`` = (sum over foreground RoIs of the cross-entropy of the class logits, each
    non-target logit ``z_j`` raised to ``z_j + log S_ij`` (:func:`seesaw_weights`)) / R
    + (sum over all RoIs of the cross-entropy of the objectness pair) / R. Before each loss
    the batch's labels are added to ``cum_samples`` [C + 1] (a buffer indexed by label, so it
    is saved with the model; column 0 counts background RoIs and is unused).
    ``scores``: softmax over the C class logits times the foreground probability of the
    pair; column 0 is the pair's background probability. ``scale``: temperature of the
    normalised-linear classifier (``cosine``), 20 in the paper's configs.
    """

    def __init__(self, num_classes: int, *, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 scale: float = 20.0, cosine: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.p, self.q, self.eps = p, q, eps
        self.cosine = cosine
        self.scale = scale
        self.register_buffer("cum_samples", torch.zeros(num_classes + 1, dtype=torch.float64))

    def num_outputs(self, num_classes: int) -> int:
        return num_classes + 2

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        with torch.no_grad():
            self.cum_samples += torch.bincount(labels, minlength=c + 1).to(self.cum_samples)
        if logits.numel() == 0:
            return logits.sum()
        logits = logits.float()  # the factors' ratios and logs in float32 under AMP
        r = len(labels)
        pos = labels > 0
        cls_logits, fg_labels = logits[pos, :c], labels[pos] - 1
        weights = seesaw_weights(cls_logits, fg_labels, self.cum_samples[1:], p=self.p,
                                 q=self.q, eps=self.eps)
        onehot = F.one_hot(fg_labels, c).to(cls_logits.dtype)
        adjusted = cls_logits + weights.log() * (1 - onehot)
        cls = F.cross_entropy(adjusted, fg_labels, reduction="sum")
        obj = F.cross_entropy(logits[:, c:], (labels == 0).long(), reduction="sum")
        return (cls + obj) / r

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        classes = F.softmax(logits[:, :c], dim=-1)
        obj = F.softmax(logits[:, c:], dim=-1)
        return torch.cat([obj[:, 1:], classes * obj[:, :1]], dim=1)


def box_reg_loss(kind: BoxLossKind, pred_deltas: torch.Tensor, proposals: torch.Tensor,
                 gt_boxes: torch.Tensor, *, coder: BoxCoder, beta: float = 1.0 / 9,
                 normalizer: int) -> torch.Tensor:
    """Box regression loss of the foreground RoIs, summed and divided by ``normalizer``
    (the number of sampled RoIs, foreground and background, as torchvision and detectron2).

    ``pred_deltas`` [P, 4]: the predicted deltas of each foreground RoI for its gt class;
    ``proposals`` [P, 4] and ``gt_boxes`` [P, 4] XYXY pixels (the matched gt). ``kind``:
    ``smooth_l1`` (``beta`` in delta units) or ``l1`` on the deltas that ``coder`` encodes;
    ``giou``: torchvision's ``generalized_box_iou_loss`` of the decoded boxes.
    """
    if kind not in BOX_LOSSES:
        raise ValueError(f"unknown box loss {kind!r}; expected one of {', '.join(BOX_LOSSES)}")
    if len(pred_deltas) == 0:
        return pred_deltas.sum()
    if kind == "giou":
        boxes = coder.decode_single(pred_deltas, proposals)
        loss = generalized_box_iou_loss(boxes, gt_boxes, reduction="sum")
    else:
        targets = coder.encode_single(gt_boxes, proposals)
        if kind == "smooth_l1":
            loss = F.smooth_l1_loss(pred_deltas, targets, beta=beta, reduction="sum")
        else:
            loss = F.l1_loss(pred_deltas, targets, reduction="sum")
    return loss / max(normalizer, 1)
