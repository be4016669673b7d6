"""Hybrid Task Cascade RoI heads (Chen et al., CVPR 2019), on top of :class:`CascadeRoIHeads`.

Per stage ``k`` in training (interleaved execution, as mmdetection's ``HybridTaskCascadeRoIHead``):

1. sample RoIs at the stage's IoU (from the previous stage's refined boxes), box head, box
   losses;
2. refine the sampled RoIs with this stage's regression (detached, ground-truth RoIs dropped),
   sample again at the same IoU, and train mask head ``k`` on the positives: mask heads
   ``0 .. k - 1`` run first on the same RoIs and pass their features forward (mask
   information flow: head ``k`` adds a 1x1 conv of head ``k - 1``'s features to its input);
3. the refined boxes are the next stage's proposals.

All stage-``k`` losses are scaled by ``stage_loss_weights[k]`` (``s{k}_loss_mask``,
``s{k}_loss_mask_iou`` beside the box losses). At test time boxes come from the cascade and
masks from the last mask head, run after the others for the information flow; with mask-IoU
heads (one per mask stage) the last one scores the masks.

The optional semantic branch (``semantic_head``) segments the whole image at one pyramid
level; its embedding is pooled per RoI (7x7 and 14x14) and added to the box and mask
features, and it is trained with ``loss_semantic`` against a label map derived from the
instance masks.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from vipseg.models.heads.cascade import CascadeRoIHeads
from vipseg.models.heads.roi_heads import Detections, Maps, RoISample, TrainPlan
from vipseg.models.heads.semantic import semantic_loss
from vipseg.models.mask_targets import semantic_target
from vipseg.models.poolers import PyramidRoIAlign

SEMANTIC_KEY = "semantic"  # the semantic embedding's entry in the maps dict


class HybridTaskCascadeRoIHeads(CascadeRoIHeads):
    """:class:`CascadeRoIHeads` with one mask head per stage and the optional semantic branch.

    Args (beside those of :class:`CascadeRoIHeads`; ``mask_head`` / ``mask_iou_head`` are
    replaced by the per-stage lists):
        mask_heads: one ``FCNMaskHead`` per stage, all but the first with ``residual_in``.
        mask_iou_heads: one ``MaskIoUHead`` per stage, or ``None``.
        semantic_head: a ``SemanticHead`` over the ``box_roi_pool`` levels, or ``None``.
        semantic_loss_weight: scale of ``loss_semantic``.
    """

    def __init__(self, *, mask_heads: Sequence[nn.Module],
                 mask_iou_heads: Optional[Sequence[nn.Module]] = None,
                 semantic_head: Optional[nn.Module] = None, semantic_loss_weight: float = 0.2,
                 **kwargs) -> None:
        super().__init__(mask_head=None, mask_iou_head=None, **kwargs)
        if len(mask_heads) != self.num_stages or (mask_iou_heads is not None
                                                  and len(mask_iou_heads) != self.num_stages):
            raise ValueError("HTC: one mask head (and mask-IoU head) per box stage")
        self.mask_heads = nn.ModuleList(mask_heads)
        self.mask_iou_heads = nn.ModuleList(mask_iou_heads) if mask_iou_heads else None
        self.semantic_head = semantic_head
        self.semantic_loss_weight = semantic_loss_weight
        self.levels = list(self.box_roi_pool.featmap_names)
        if semantic_head is not None:
            self.semantic_box_pool = PyramidRoIAlign(
                [SEMANTIC_KEY], self.box_roi_pool.output_size, self.box_roi_pool.sampling_ratio,
                aligned=self.aligned)
            self.semantic_mask_pool = PyramidRoIAlign(
                [SEMANTIC_KEY], self.mask_roi_pool.output_size, self.mask_roi_pool.sampling_ratio,
                aligned=self.aligned)

    # ------------------------------------------------------------------------ semantic
    def _with_semantic(self, maps: Maps) -> tuple[Maps, Optional[Tensor]]:
        """``maps`` plus the semantic embedding under :data:`SEMANTIC_KEY`, and the semantic
        logits [B, C + 1, h, w] (both absent without a semantic head)."""
        if self.semantic_head is None:
            return maps, None
        logits, feat = self.semantic_head([maps[k] for k in self.levels])
        return OrderedDict(maps, **{SEMANTIC_KEY: feat}), logits

    def _run_stage(self, maps: Maps, boxes: list[Tensor], image_sizes: list[tuple[int, int]],
                   stage: int = 0, extra: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if SEMANTIC_KEY in maps:
            extra = self.semantic_box_pool(maps, boxes, image_sizes)
        return super()._run_stage(maps, boxes, image_sizes, stage, extra)

    def _mask_features(self, maps: Maps, boxes: list[Tensor],
                       image_sizes: list[tuple[int, int]]) -> Tensor:
        feats = self.mask_roi_pool(maps, boxes, image_sizes)
        if SEMANTIC_KEY in maps:
            feats = feats + self.semantic_mask_pool(maps, boxes, image_sizes)
        return feats

    # ------------------------------------------------------------------------ mask path
    def _mask_stage(self, maps: Maps, feats: Tensor, boxes: list[Tensor], stage: int) -> Tensor:
        """Mask logits of head ``stage`` after heads ``0 .. stage - 1`` (information flow) on
        the pooled ``feats`` of ``boxes``."""
        res = None
        pixels = self._pixel_crops(maps, boxes, self.mask_heads[0], 2 * feats.shape[-1])
        for k in range(stage + 1):
            logits, res = self.mask_heads[k](feats, res if k > 0 else None, pixels=pixels)
        return logits

    def _iou_head(self, stage: int) -> Optional[nn.Module]:
        return self.mask_iou_heads[stage] if self.mask_iou_heads is not None else None

    def forward_train(self, maps: Maps, proposals: list[Tensor],
                      image_sizes: list[tuple[int, int]], targets: list[dict],
                      plan: Optional[TrainPlan] = None) -> tuple[dict[str, Tensor], TrainPlan]:
        maps, sem_logits = self._with_semantic(maps)
        losses: dict[str, Tensor] = {}
        if sem_logits is not None:
            # The fusion level's stride, a power of two (as PyramidRoIAlign infers it).
            ratio = max(h for h, _ in image_sizes) / sem_logits.shape[-2]
            stride = 2 ** round(math.log2(ratio))
            sem_targets = [semantic_target(t, size, stride)
                           for t, size in zip(targets, image_sizes)]
            losses["loss_semantic"] = semantic_loss(sem_logits, sem_targets,
                                                    weight=self.semantic_loss_weight)
        box_samples: list[RoISample] = []
        mask_samples: list[RoISample] = []
        for k in range(self.num_stages):
            sample = self._stage_sample(k, proposals, targets, plan)
            logits, deltas = self._run_stage(maps, sample.boxes, image_sizes, k)
            losses.update(self._stage_losses(k, logits, deltas, sample, targets))
            if plan:
                mask_sample = plan.mask[k]
            else:
                proposals = self._drop_gt(self.refine(deltas, sample.boxes, k, image_sizes), sample)
                mask_sample = self.sample_proposals(proposals, targets,
                                                    self.proposal_matchers[k]).positives()
            feats = self._mask_features(maps, mask_sample.boxes, image_sizes)
            logits = self._mask_stage(maps, feats, mask_sample.boxes, k)
            stage_losses = self._mask_losses(logits, feats, mask_sample, targets,
                                             self._iou_head(k))
            w = self.stage_loss_weights[k]
            losses.update({f"s{k}_{name}": w * v for name, v in stage_losses.items()})
            box_samples.append(sample)
            mask_samples.append(mask_sample)
        return losses, TrainPlan(box_samples, mask_samples)

    # ------------------------------------------------------------------------ test
    def detect(self, maps: Maps, proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> Detections:
        return self._forward_box_test(self._with_semantic(maps)[0], proposals, image_sizes)

    def predict_masks(self, maps: Maps, boxes: list[Tensor], labels: list[Tensor],
                      image_sizes: list[tuple[int, int]]) -> tuple[Tensor, Optional[Tensor]]:
        """Masks of the last mask head (after the information flow through all of them)."""
        maps = self._with_semantic(maps)[0]
        feats = self._mask_features(maps, boxes, image_sizes)
        last = self.num_stages - 1
        return self._select_masks(self._mask_stage(maps, feats, boxes, last), feats,
                                  torch.cat(labels), self._iou_head(last))
