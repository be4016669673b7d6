"""RoI heads of a two-stage detector: proposal sampling, the box path, the mask path and masks
for given boxes, in the layout of detectron2's ``StandardROIHeads``.

Conventions (everything here is *internal*): class 0 is background and foreground class ``c``
is ``c + 1``; the detector shifts labels on the way in and out. Boxes are XYXY in the padded
batch's input pixels. ``maps`` is the pyramid (``OrderedDict`` level name -> [B, C, h, w])
and, under :data:`PIXELS_KEY`, the normalised padded batch [B, 3, H, W] itself, which the
box and mask heads with ``pixel_channels`` crop (the pools read only their own levels).

The components come in as modules (built by :mod:`vipseg.models.build`):

- ``box_head``: [R, C, 7, 7] (and ``pixels`` [R, 3, 14, 14] with ``pixel_channels``) -> [R, F];
  ``box_predictor``: [R, F] -> (logits [R, K], deltas
  [R, 4] class-agnostic or [R, 4 * (C + 1)]); ``cls_loss``: the
  :class:`~vipseg.models.losses.ClsLoss` of its logits (``loss``, ``scores``);
- ``mask_head``: ([R, C, 14, 14], res_feat, pixels [R, 3, 28, 28] with ``pixel_channels``) ->
  (logits [R, C, 28, 28], feat);
- ``mask_iou_head`` (optional): (RoI feats [R, C, 14, 14], mask probs [R, 1, 28, 28]) ->
  predicted IoU [R, C] (one per foreground class).

Training (``forward_train``) returns the losses and a :class:`TrainPlan`, the RoIs every stage
trained on; passing that plan back in re-uses those RoIs on another feature set (the
assisting backbones of a composite model) without sampling again. Cascade and HTC
(:mod:`.cascade`, :mod:`.htc`) override only the box path and, for HTC, the mask path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection._utils import (BalancedPositiveNegativeSampler, BoxCoder,
                                                 Matcher)
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, roi_align
from torchvision.ops import remove_small_boxes

from vipseg.models.heads.mask_iou import mask_iou_loss, mask_iou_targets
from vipseg.models.losses import ClsLoss, box_reg_loss
from vipseg.models.mask_targets import area_ratios, mask_targets

Maps = "OrderedDict[str, Tensor]"
# Per image: (boxes [K, 4], scores [K], labels [K] in 1..C).
Detections = list[tuple[Tensor, Tensor, Tensor]]
MIN_BOX_SIZE = 1e-2  # pixels: smaller detections are dropped (torchvision's threshold)
PIXELS_KEY = "pixels"  # the normalised input batch's entry in the maps dict
# The box heads' pixel crops cover each RoI grown 1.5x about its centre: a proposal's true
# edges may lie outside it, and regressing them needs those pixels.
BOX_PIXEL_CONTEXT = 1.5


@dataclass
class RoISample:
    """RoIs sampled for one stage, per image: ``boxes`` [R_i, 4], ``labels`` int64 [R_i]
    (0 background, c + 1 foreground), ``gt_index`` int64 [R_i] (matched ground truth; 0 for
    background), ``is_gt`` bool [R_i] (the RoI is a ground-truth box added to the proposals)."""

    boxes: list[Tensor]
    labels: list[Tensor]
    gt_index: list[Tensor]
    is_gt: list[Tensor]

    def positives(self) -> "RoISample":
        """The foreground RoIs only."""
        keep = [lab > 0 for lab in self.labels]
        return RoISample(*[[t[k] for t, k in zip(ts, keep)]
                           for ts in (self.boxes, self.labels, self.gt_index, self.is_gt)])


@dataclass
class TrainPlan:
    """The lead feature set's RoIs: one :class:`RoISample` per box stage and per mask stage."""

    box: list[RoISample] = field(default_factory=list)
    mask: list[RoISample] = field(default_factory=list)


def crop_pixels(pixels: Tensor, boxes: list[Tensor], size: int, *, aligned: bool) -> Tensor:
    """The image under each box: ``pixels`` [B, 3, H, W], ``boxes[i]`` [R_i, 4] XYXY pixels of
    image i -> [sum R_i, 3, size, size], one bilinear sample at the centre of each of the
    ``size`` x ``size`` cells (the grid of the mask targets; with ``aligned`` a box on integer
    pixel edges, ``size`` pixels wide, returns exactly its pixels)."""
    return roi_align(pixels, [b.to(pixels.dtype) for b in boxes], size, spatial_scale=1.0,
                     sampling_ratio=1, aligned=aligned)


def grow_boxes(boxes: Tensor, factor: float) -> Tensor:
    """``boxes`` [R, 4] XYXY scaled by ``factor`` about their centres."""
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    return torch.cat([centre - half, centre + half], dim=1)


def flat_gt(targets: list[dict], key: str, sample: RoISample) -> Tensor:
    """``targets[i][key]`` indexed by ``sample.gt_index[i]``, concatenated over images."""
    return torch.cat([t[key][g] if len(t[key]) else t[key].new_zeros((len(g), *t[key].shape[1:]))
                      for t, g in zip(targets, sample.gt_index)])


class StandardRoIHeads(nn.Module):
    """One box stage and one mask head (Mask R-CNN), optionally a mask-IoU head.

    Args:
        box_roi_pool, mask_roi_pool: pyramid RoIAlign to 7x7 and 14x14
            (:class:`~vipseg.models.poolers.PyramidRoIAlign` or torchvision's
            ``MultiScaleRoIAlign``); the mask targets follow the mask pool's ``aligned``
            (torchvision's pool: ``False``), so targets and features agree.
        mask_head, mask_iou_head: modules (module doc).
        num_classes: foreground classes ``C``.
        batch_size_per_image, positive_fraction: the balanced sampler's RoIs per image and
            the largest foreground share.
        box_args: the box stage(s), for :meth:`_init_box_head`: here ``box_head``,
            ``box_predictor``, ``fg_iou_thresh`` / ``bg_iou_thresh`` (IoU at or above which a
            proposal is foreground, below which it is background; between: ignored) and
            ``bbox_reg_weights`` (the box coder's (wx, wy, ww, wh)).
        box_loss: ``smooth_l1``, ``l1`` or ``giou``; ``box_loss_weight`` scales it.
        mask_iou_loss_weight: scale of the mask-IoU regression loss (mean squared error).
        score_thresh, nms_thresh, detections_per_img: test-time filtering (per-class NMS).
    """

    def __init__(self, *, box_roi_pool: nn.Module, mask_roi_pool: nn.Module,
                 mask_head: nn.Module, num_classes: int, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, box_loss: str = "smooth_l1",
                 box_loss_weight: float = 1.0, mask_iou_head: Optional[nn.Module] = None,
                 mask_iou_loss_weight: float = 0.5, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100, **box_args) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.box_roi_pool, self.mask_roi_pool = box_roi_pool, mask_roi_pool
        self.aligned = bool(getattr(mask_roi_pool, "aligned", False))
        self._init_box_head(**box_args)
        self.mask_head = mask_head
        self.mask_iou_head = mask_iou_head
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_loss, self.box_loss_weight = box_loss, box_loss_weight
        self.mask_iou_loss_weight = mask_iou_loss_weight
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img
        self.register_load_state_dict_pre_hook(upgrade_torchvision_keys)

    def _init_box_head(self, *, box_head: nn.Module, box_predictor: nn.Module,
                       cls_loss: ClsLoss, fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                       bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> None:
        """The box stage: ``box_head``, ``box_predictor`` and its ``cls_loss``, matcher and
        box coder."""
        self.box_head, self.box_predictor, self.cls_loss = box_head, box_predictor, cls_loss
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=False)
        self.box_coder = BoxCoder(tuple(float(w) for w in bbox_reg_weights))

    # ------------------------------------------------------------------------ sampling
    def sample_proposals(self, proposals: list[Tensor], targets: list[dict],
                         matcher: Matcher) -> RoISample:
        """Add the ground-truth boxes to ``proposals``, match them at ``matcher``'s IoU and draw
        a balanced sample. ``targets`` are internal (labels 1..C, ``boxes`` [N, 4])."""
        out: list[list[Tensor]] = [[], [], [], []]
        matched: list[Tensor] = []
        for props, tgt in zip(proposals, targets):
            gt = tgt["boxes"]
            boxes = torch.cat([props.detach(), gt])
            is_gt = torch.arange(len(boxes), device=boxes.device) >= len(props)
            if len(gt) == 0:
                labels = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
                gt_index = torch.zeros_like(labels)
            else:
                idx = matcher(box_iou(gt, boxes))
                gt_index = idx.clamp(min=0)
                labels = tgt["labels"][gt_index].clone()
                labels[idx == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[idx == Matcher.BETWEEN_THRESHOLDS] = -1
            matched.append(labels)
            for lst, t in zip(out, (boxes, labels, gt_index, is_gt)):
                lst.append(t)
        pos, neg = self.sampler(matched)
        keep = [torch.where(p | n)[0] for p, n in zip(pos, neg)]
        return RoISample(*[[t[k] for t, k in zip(lst, keep)] for lst in out])

    # ------------------------------------------------------------------------ box path
    def _run_stage(self, maps: Maps, boxes: list[Tensor], image_sizes: list[tuple[int, int]],
                   stage: int = 0, extra: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Box head on ``boxes``: (logits [R, K], deltas). ``extra`` [R, C, 7, 7] is added to
        the pooled features (HTC's semantic fusion)."""
        feats = self.box_roi_pool(maps, boxes, image_sizes)
        if extra is not None:
            feats = feats + extra
        head = self._box_head(stage)
        pixels = self._pixel_crops(maps, boxes, head, 2 * feats.shape[-1],
                                   context=BOX_PIXEL_CONTEXT)
        # Heads without a pixel branch keep the plain [R, C, 7, 7] -> [R, F] contract.
        out = head(feats) if pixels is None else head(feats, pixels=pixels)
        return self._predictor(stage)(out)

    def _box_head(self, stage: int) -> nn.Module:
        return self.box_head

    def _predictor(self, stage: int) -> nn.Module:
        return self.box_predictor

    def _coder(self, stage: int) -> BoxCoder:
        return self.box_coder

    def _cls_loss(self, stage: int) -> ClsLoss:
        return self.cls_loss

    def _box_losses(self, logits: Tensor, deltas: Tensor, sample: RoISample, targets: list[dict],
                    stage: int = 0) -> tuple[Tensor, Tensor]:
        """(classification loss, box regression loss) of box stage ``stage`` on its sample."""
        labels = torch.cat(sample.labels)
        loss_cls = self._cls_loss(stage).loss(logits, labels)
        coder = self._coder(stage)
        rois = torch.cat(sample.boxes)
        gt_boxes = flat_gt(targets, "boxes", sample)
        pos = torch.where(labels > 0)[0]
        pred = self._class_deltas(deltas, labels)[pos]
        loss_box = box_reg_loss(self.box_loss, pred, rois[pos], gt_boxes[pos], coder=coder,
                                normalizer=len(labels))
        return loss_cls, self.box_loss_weight * loss_box

    @staticmethod
    def _class_deltas(deltas: Tensor, labels: Tensor) -> Tensor:
        """[R, 4] deltas of ``labels`` from class-specific [R, 4 * (C + 1)] (or agnostic [R, 4])."""
        if deltas.shape[1] == 4:
            return deltas
        return deltas.reshape(len(deltas), -1, 4)[torch.arange(len(deltas), device=deltas.device),
                                                  labels]

    def _forward_box_train(self, maps: Maps, proposals: list[Tensor],
                           image_sizes: list[tuple[int, int]], targets: list[dict],
                           plan: Optional[TrainPlan]) -> tuple[dict[str, Tensor], list[RoISample]]:
        """Box losses and the samples used (those of ``plan`` when given)."""
        sample = plan.box[0] if plan else self.sample_proposals(proposals, targets,
                                                                 self.proposal_matcher)
        logits, deltas = self._run_stage(maps, sample.boxes, image_sizes)
        loss_cls, loss_box = self._box_losses(logits, deltas, sample, targets)
        return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}, [sample]

    def _forward_box_test(self, maps: Maps, proposals: list[Tensor],
                          image_sizes: list[tuple[int, int]]) -> Detections:
        """Detections per image: (boxes [K, 4], scores [K], labels [K] in 1..C)."""
        logits, deltas = self._run_stage(maps, proposals, image_sizes)
        probs = self.cls_loss.scores(logits)
        boxes = self._decode(deltas, proposals, self.box_coder)
        return self.postprocess(probs, boxes, [len(p) for p in proposals], image_sizes)

    @staticmethod
    def _decode(deltas: Tensor, proposals: list[Tensor], coder: BoxCoder) -> Tensor:
        """Decoded boxes [R, K, 4] (K = C + 1 class-specific, 1 class-agnostic)."""
        rois = torch.cat(proposals)
        per_class = deltas.reshape(len(rois), -1, 4)
        return coder.decode_single(per_class.reshape(-1, 4),
                                   rois.repeat_interleave(per_class.shape[1], 0)
                                   ).reshape(per_class.shape)

    def postprocess(self, probs: Tensor, boxes: Tensor, counts: list[int],
                    image_sizes: list[tuple[int, int]]) -> Detections:
        """Per image: clip, drop background, low scores and tiny boxes, per-class NMS, keep the
        ``detections_per_img`` best. ``probs`` [R, C + 1], ``boxes`` [R, C + 1 or 1, 4]."""
        results = []
        for p, b, size in zip(probs.split(counts), boxes.split(counts), image_sizes):
            b = clip_boxes_to_image(b, size)
            if b.shape[1] == 1:
                b = b.expand(-1, p.shape[1], -1)
            labels = torch.arange(p.shape[1], device=p.device).expand_as(p)
            b, s, lab = b[:, 1:].reshape(-1, 4), p[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(s > self.score_thresh)[0]
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = remove_small_boxes(b, MIN_BOX_SIZE)
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = batched_nms(b, s, lab, self.nms_thresh)[:self.detections_per_img]
            results.append((b[keep], s[keep], lab[keep]))
        return results

    # ------------------------------------------------------------------------ mask path
    def _mask_features(self, maps: Maps, boxes: list[Tensor],
                       image_sizes: list[tuple[int, int]]) -> Tensor:
        """Pooled mask-head input [R, C, 14, 14]."""
        return self.mask_roi_pool(maps, boxes, image_sizes)

    def _pixel_crops(self, maps: Maps, boxes: list[Tensor], head: nn.Module, size: int, *,
                     context: float = 1.0) -> Optional[Tensor]:
        """:func:`crop_pixels` of ``maps[PIXELS_KEY]`` under ``boxes`` grown ``context`` times
        about their centres, for a ``head`` with ``pixel_channels``; ``None`` for a head
        without."""
        if not getattr(head, "pixel_channels", 0):
            return None
        if PIXELS_KEY not in maps:
            raise ValueError(f"the head crops the input image: maps need {PIXELS_KEY!r}")
        if context != 1.0:
            boxes = [grow_boxes(b, context) for b in boxes]
        return crop_pixels(maps[PIXELS_KEY], boxes, size, aligned=self.aligned)

    def _run_mask_head(self, maps: Maps, feats: Tensor, boxes: list[Tensor]
                       ) -> tuple[Tensor, Tensor]:
        """``mask_head`` on the pooled ``feats`` [R, C, S, S] (and the pixel crops of ``boxes``
        when it takes them): (logits [R, K, 2S, 2S], feat)."""
        pixels = self._pixel_crops(maps, boxes, self.mask_head, 2 * feats.shape[-1])
        return self.mask_head(feats, pixels=pixels)

    def _mask_losses(self, logits: Tensor, feats: Tensor, sample: RoISample,
                     targets: list[dict], iou_head: Optional[nn.Module]) -> dict[str, Tensor]:
        """Mask loss (binary cross-entropy of the ground-truth class's 28x28 logits) and, with
        ``iou_head``, the mask-IoU loss on the same positive RoIs."""
        labels = torch.cat(sample.labels)
        size = logits.shape[-1]
        target = self._mask_targets(targets, sample, size)
        if len(labels) == 0:
            zero = logits.sum() * 0
            losses = {"loss_mask": zero}
            if iou_head is not None:
                losses["loss_mask_iou"] = zero + sum(p.sum() * 0 for p in iou_head.parameters())
            return losses
        rows = torch.arange(len(labels), device=labels.device)
        gt_logits = logits[rows, self._mask_channel(logits, labels)]
        losses = {"loss_mask": F.binary_cross_entropy_with_logits(gt_logits, target)}
        if iou_head is not None:
            probs = gt_logits.detach().sigmoid()
            pred = iou_head(feats, probs[:, None])
            pred = pred[torch.arange(len(labels), device=labels.device), labels - 1]
            ratios = torch.cat([area_ratios(t, g, b) for t, g, b in
                                zip(targets, sample.gt_index, sample.boxes)])
            losses["loss_mask_iou"] = mask_iou_loss(pred, mask_iou_targets(probs, target, ratios),
                                                    weight=self.mask_iou_loss_weight)
        return losses

    @staticmethod
    def _mask_channel(logits: Tensor, labels: Tensor) -> Tensor:
        """Channel of each label (1..C) in class-specific [R, C, M, M] or agnostic [R, 1, M, M]."""
        return labels - 1 if logits.shape[1] > 1 else torch.zeros_like(labels)

    def _mask_targets(self, targets: list[dict], sample: RoISample, size: int) -> Tensor:
        """Binary targets [P, size, size] of the positive RoIs from the compact masks."""
        parts = [mask_targets(t, g, b, size, aligned=self.aligned) for t, g, b in
                 zip(targets, sample.gt_index, sample.boxes)]
        return torch.cat(parts) if parts else torch.zeros(0, size, size)

    def _forward_mask_train(self, maps: Maps, image_sizes: list[tuple[int, int]],
                            targets: list[dict], box_samples: list[RoISample],
                            plan: Optional[TrainPlan]) -> tuple[dict[str, Tensor], list[RoISample]]:
        """Mask (and mask-IoU) losses on the positives of the last box stage's sample."""
        sample = plan.mask[0] if plan else box_samples[-1].positives()
        feats = self._mask_features(maps, sample.boxes, image_sizes)
        logits, _ = self._run_mask_head(maps, feats, sample.boxes)
        return self._mask_losses(logits, feats, sample, targets, self.mask_iou_head), [sample]

    def predict_masks(self, maps: Maps, boxes: list[Tensor], labels: list[Tensor],
                      image_sizes: list[tuple[int, int]]) -> tuple[Tensor, Optional[Tensor]]:
        """Masks for given boxes (detectron2's ``forward_with_given_boxes``): soft masks
        [K, 1, 28, 28] of ``labels`` (1..C), concatenated over images, and the predicted mask
        IoU [K] of each (``None`` without a mask-IoU head)."""
        feats = self._mask_features(maps, boxes, image_sizes)
        logits, _ = self._run_mask_head(maps, feats, boxes)
        return self._select_masks(logits, feats, torch.cat(labels), self.mask_iou_head)

    def _select_masks(self, logits: Tensor, feats: Tensor, labels: Tensor,
                      iou_head: Optional[nn.Module]) -> tuple[Tensor, Optional[Tensor]]:
        rows = torch.arange(len(labels), device=labels.device)
        probs = logits[rows, self._mask_channel(logits, labels)][:, None].sigmoid()
        if iou_head is None:
            return probs, None
        return probs, iou_head(feats, probs)[rows, labels - 1]

    # ------------------------------------------------------------------------ entry points
    def forward_train(self, maps: Maps, proposals: list[Tensor],
                      image_sizes: list[tuple[int, int]], targets: list[dict],
                      plan: Optional[TrainPlan] = None) -> tuple[dict[str, Tensor], TrainPlan]:
        """All RoI losses on ``maps``; re-uses the RoIs of ``plan`` when given. Returns the
        losses and the plan that was used."""
        losses, box_samples = self._forward_box_train(maps, proposals, image_sizes, targets, plan)
        mask_losses, mask_samples = self._forward_mask_train(maps, image_sizes, targets,
                                                             box_samples, plan)
        losses.update(mask_losses)
        return losses, TrainPlan(box_samples, mask_samples)

    def detect(self, maps: Maps, proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> Detections:
        """Detections per image: (boxes [K, 4], box scores [K], labels [K] in 1..C)."""
        return self._forward_box_test(maps, proposals, image_sizes)


def upgrade_torchvision_keys(module: StandardRoIHeads, state_dict: dict, prefix: str,
                             *args) -> None:
    """Load-state-dict pre-hook: rename, in place, the RoI-head keys of vipseg's Mask R-CNN
    before its own heads (torchvision ``RoIHeads``: ``box_head.fc6`` / ``fc7`` or
    ``FastRCNNConvFCHead`` indices, ``mask_head.<i>``, ``mask_predictor.conv5_mask`` /
    ``mask_fcn_logits`` with a background row) to this module's names. Other mismatches are
    left for ``load_state_dict`` to report."""
    if not any(k.startswith(prefix + "mask_predictor.") for k in state_dict):
        return
    n_convs = len(getattr(module.box_head, "convs", ()))
    renames = {"box_head.fc6.": "box_head.fcs.0.", "box_head.fc7.": "box_head.fcs.2.",
               f"box_head.{n_convs + 1}.": "box_head.fcs.0.",
               "mask_predictor.conv5_mask.": "mask_head.upsample.",
               "mask_predictor.mask_fcn_logits.": "mask_head.logits."}
    renames.update({f"box_head.{i}.": f"box_head.convs.{i}." for i in range(n_convs)})
    renames.update({f"mask_head.{i}.": f"mask_head.convs.{i}."
                    for i in range(len(module.mask_head.convs))})
    for key in [k for k in state_dict if k.startswith(prefix)]:
        local = key[len(prefix):]
        old = next((o for o in renames if local.startswith(o)), None)
        if old is None:
            continue
        value = state_dict.pop(key)
        if old == "mask_predictor.mask_fcn_logits.":
            value = value[1:]  # torchvision's masks have a (never used) background channel
        state_dict[prefix + renames[old] + local[len(old):]] = value

