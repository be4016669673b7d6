"""Cascade Mask R-CNN RoI heads (Cai and Vasconcelos): box stages at rising IoU thresholds.

Like detectron2's ``CascadeROIHeads``, only the box path of :class:`StandardRoIHeads` is
overridden: stage ``k`` has its own box head, predictor (class-agnostic regression), matcher at
``iou_thresholds[k]`` and box coder with ``bbox_reg_weights[k]``. In training each stage samples
RoIs from the previous stage's refined boxes (detached; ground-truth RoIs dropped and added
back by the sampler) and its losses are scaled by ``stage_loss_weights[k]``, reported as
``s{k}_loss_classifier`` / ``s{k}_loss_box_reg``. At test time the class scores are averaged
over the stages and the boxes are the last stage's. The mask head (and mask-IoU head) run on
the final stage: trained on its positives, predicting on the final boxes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder, Matcher

from vipseg.models.heads.roi_heads import (Detections, Maps, RoISample, StandardRoIHeads,
                                           TrainPlan)
from vipseg.models.losses import ClsLoss


class CascadeRoIHeads(StandardRoIHeads):
    """:class:`StandardRoIHeads` with ``len(box_heads)`` box stages.

    Box arguments (``box_args`` of :class:`StandardRoIHeads`):
        box_heads, box_predictors, cls_losses: one per stage (predictors class-agnostic,
            deltas [R, 4]; each stage's own classification loss).
        iou_thresholds: per stage, the IoU at which a RoI is foreground (below: background).
        bbox_reg_weights: per stage, the box coder's (wx, wy, ww, wh).
        stage_loss_weights: per stage, the scale of its box losses.
    """

    def _init_box_head(self, *, box_heads: Sequence[nn.Module],
                       box_predictors: Sequence[nn.Module], cls_losses: Sequence[ClsLoss],
                       iou_thresholds: Sequence[float],
                       bbox_reg_weights: Sequence[Sequence[float]],
                       stage_loss_weights: Sequence[float]) -> None:
        n = len(box_heads)
        if not (len(box_predictors) == len(cls_losses) == len(iou_thresholds)
                == len(bbox_reg_weights) == len(stage_loss_weights) == n):
            raise ValueError("cascade: one box head, predictor, IoU threshold, coder weight set "
                             "and loss weight per stage")
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.cls_losses = nn.ModuleList(cls_losses)
        self.proposal_matchers = [Matcher(t, t, allow_low_quality_matches=False)
                                  for t in iou_thresholds]
        self.box_coders = [BoxCoder(tuple(float(v) for v in w)) for w in bbox_reg_weights]
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    def _box_head(self, stage: int) -> nn.Module:
        return self.box_heads[stage]

    def _predictor(self, stage: int) -> nn.Module:
        return self.box_predictors[stage]

    def _coder(self, stage: int) -> BoxCoder:
        return self.box_coders[stage]

    def _cls_loss(self, stage: int) -> ClsLoss:
        return self.cls_losses[stage]

    def refine(self, deltas: Tensor, boxes: list[Tensor], stage: int,
               image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Stage ``stage``'s class-agnostic ``deltas`` [R, 4] applied to ``boxes`` (per image),
        clipped to each image and detached: the next stage's input boxes."""
        decoded = self.box_coders[stage].decode_single(deltas.detach(), torch.cat(boxes))
        return [b.clamp(min=0).minimum(b.new_tensor([w, h, w, h]))
                for b, (h, w) in zip(decoded.split([len(b) for b in boxes]), image_sizes)]

    def _stage_sample(self, stage: int, proposals: list[Tensor], targets: list[dict],
                      plan: Optional[TrainPlan]) -> RoISample:
        if plan:
            return plan.box[stage]
        return self.sample_proposals(proposals, targets, self.proposal_matchers[stage])

    def _stage_losses(self, stage: int, logits: Tensor, deltas: Tensor, sample: RoISample,
                      targets: list[dict]) -> dict[str, Tensor]:
        loss_cls, loss_box = self._box_losses(logits, deltas, sample, targets, stage)
        w = self.stage_loss_weights[stage]
        return {f"s{stage}_loss_classifier": w * loss_cls, f"s{stage}_loss_box_reg": w * loss_box}

    @staticmethod
    def _drop_gt(boxes: list[Tensor], sample: RoISample) -> list[Tensor]:
        return [b[~g] for b, g in zip(boxes, sample.is_gt)]

    def _forward_box_train(self, maps: Maps, proposals: list[Tensor],
                           image_sizes: list[tuple[int, int]], targets: list[dict],
                           plan: Optional[TrainPlan]) -> tuple[dict[str, Tensor], list[RoISample]]:
        losses: dict[str, Tensor] = {}
        samples = []
        for k in range(self.num_stages):
            sample = self._stage_sample(k, proposals, targets, plan)
            logits, deltas = self._run_stage(maps, sample.boxes, image_sizes, k)
            losses.update(self._stage_losses(k, logits, deltas, sample, targets))
            samples.append(sample)
            if k + 1 < self.num_stages and not plan:
                proposals = self._drop_gt(self.refine(deltas, sample.boxes, k, image_sizes), sample)
        return losses, samples

    def _forward_box_test(self, maps: Maps, proposals: list[Tensor],
                          image_sizes: list[tuple[int, int]]) -> Detections:
        probs = []
        boxes = proposals
        for k in range(self.num_stages):
            if k > 0:
                boxes = self.refine(deltas, boxes, k - 1, image_sizes)
            logits, deltas = self._run_stage(maps, boxes, image_sizes, k)
            probs.append(self.cls_losses[k].scores(logits))
        final = self._decode(deltas, boxes, self.box_coders[-1])
        return self.postprocess(sum(probs) / len(probs), final, [len(b) for b in boxes],
                                image_sizes)
