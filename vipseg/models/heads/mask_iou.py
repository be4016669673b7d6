"""Mask Scoring R-CNN's mask-IoU head (Huang et al., CVPR 2019): its network, targets and loss.

The head regresses, per RoI, the IoU of the predicted mask with the ground-truth instance.
Its input is the RoI features concatenated with the predicted mask probabilities max-pooled
2x to the features' size; 4 3x3 convs (the last of stride 2), 2 FCs and one output per
class. Trained on positive RoIs with the mask of the gt class binarised at 0.5; at test time
the detection score is multiplied by the predicted IoU of the detected class.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.layers import msra_fill, xavier_fill

MASK_THRESH = 0.5  # predicted masks and targets are binarised at this probability
AREA_EPS = 1e-7  # guards the division by the area ratio


class MaskIoUHead(nn.Module):
    """forward(roi_feats [R, in_channels, S, S], mask_probs [R, 1, 2S, 2S] in 0..1) ->
    predicted IoU [R, num_classes] (column c for foreground class c, vipseg's 0..C-1).

    ``mask_probs`` is the mask head's sigmoid output for the RoI's class (the caller decides
    whether to detach it). S is 14 in Mask Scoring R-CNN; the conv stack halves it, so the
    first FC sees ``conv_channels * (S // 2) ** 2`` features (``roi_size`` = S).
    """

    def __init__(self, *, in_channels: int, num_convs: int = 4, conv_channels: int,
                 fc_dim: int, num_classes: int, roi_size: int = 14) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError("MaskIoUHead needs num_convs >= 1")
        convs: list[nn.Module] = []
        for i in range(num_convs):
            conv = nn.Conv2d(in_channels + 1 if i == 0 else conv_channels, conv_channels, 3,
                             stride=2 if i == num_convs - 1 else 1, padding=1)
            msra_fill(conv)
            convs += [conv, nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*convs)
        side = (roi_size + 1) // 2
        self.fc1 = nn.Linear(conv_channels * side * side, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        for fc in (self.fc1, self.fc2):
            xavier_fill(fc)
        self.predictor = nn.Linear(fc_dim, num_classes)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, roi_feats: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([roi_feats, F.max_pool2d(mask_probs, 2, 2)], dim=1)
        x = self.convs(x).flatten(1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.predictor(x)


def mask_iou_targets(mask_probs: torch.Tensor, mask_targets: torch.Tensor,
                     area_ratios: torch.Tensor) -> torch.Tensor:
    """IoU [R] of each predicted mask with its whole ground-truth instance.

    ``mask_probs`` [R, M, M]: predicted probabilities of the gt class; ``mask_targets``
    [R, M, M]: the RoI's mask target (both binarised at 0.5 here); ``area_ratios`` [R]: the
    fraction of the gt instance's pixels inside the RoI (:func:`vipseg.models.mask_targets.
    area_ratios`). The instance's full area in RoI-grid units is the target's area divided by
    that ratio, so pixels of the instance outside the RoI count as missed:
    ``IoU = overlap / (pred_area + target_area / ratio - overlap)``.
    """
    pred = (mask_probs > MASK_THRESH).float()
    target = (mask_targets >= MASK_THRESH).float()
    overlap = (pred * target).sum((-1, -2))
    full = target.sum((-1, -2)) / (area_ratios + AREA_EPS)
    return overlap / (pred.sum((-1, -2)) + full - overlap).clamp(min=AREA_EPS)


def mask_iou_loss(pred_iou: torch.Tensor, targets: torch.Tensor, *, weight: float = 0.5) -> torch.Tensor:
    """``weight`` x mean squared error of ``pred_iou`` [R] (the gt class's column) against
    ``targets`` [R], over the RoIs whose target is positive (mmdetection's MaskIoUHead loss);
    0 (with a graph) when there is none."""
    keep = targets > 0
    if not keep.any():
        return pred_iou.sum() * 0
    return weight * F.mse_loss(pred_iou[keep], targets[keep])
