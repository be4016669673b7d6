"""``build_model(cfg)``: map ``cfg.model`` onto the plain constructors of this package.

Every family is a :class:`~vipseg.models.detector.TwoStageDetector` (features from
:func:`~vipseg.models.features.build_features`, torchvision's RPN) whose RoI heads
:data:`FAMILIES` builds: ``mask_rcnn`` (:class:`StandardRoIHeads`), ``cascade_mask_rcnn``
(:class:`CascadeRoIHeads`) and ``htc`` (:class:`HybridTaskCascadeRoIHeads`). Each config key
is passed by name here; nothing is pretrained.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch.nn as nn

from vipseg.config.schema import CascadeConfig, Config, ModelConfig
from vipseg.models.detector import TwoStageDetector
from vipseg.models.features import build_features
from vipseg.models.heads.box_heads import BoxPredictor, ConvFCBoxHead
from vipseg.models.heads.cascade import CascadeRoIHeads
from vipseg.models.heads.htc import HybridTaskCascadeRoIHeads
from vipseg.models.heads.mask_heads import FCNMaskHead
from vipseg.models.heads.mask_iou import MaskIoUHead
from vipseg.models.heads.roi_heads import StandardRoIHeads
from vipseg.models.heads.rpn import make_rpn
from vipseg.models.heads.semantic import SemanticHead
from vipseg.models.losses import ClsLoss, Seesaw, SoftmaxCE
from vipseg.models.norms import norm_factory
from vipseg.models.poolers import PyramidRoIAlign

BOX_POOL = 7  # RoIAlign output side for the box head
MASK_POOL = 14  # ... for the mask head (masks are predicted at 2 * MASK_POOL = 28)
SAMPLING_RATIO = 2

# The box head's FCs, the box predictor and the mask upsampling and logits are initialised as
# torchvision's Mask R-CNN does (nn.Linear's default for FCs; Kaiming-normal fan-out for the
# mask predictor's weights, default biases, and the logits' fan-out counting torchvision's
# background channel), so that ``mask_rcnn`` starts from the same distribution as the
# torchvision-based model it replaced (with equal weights both give equal losses). Measured: on
# the tiny overfit (4 images, 80 steps, seed 0) the components' detectron2-style init reached
# mask AP 0.37, torchvision's predictor/logits init 0.65 (the torchvision-based model: 0.64-0.70);
# on the demo (40 val images, 320 steps, seeds 0 and 1) the box FCs' Xavier fill and the
# zero biases left val mask AP at 0.049 / 0.040 against 0.054 / 0.047 before (benchmarks/RESULTS.md).


def torchvision_init_box_head(head: ConvFCBoxHead) -> ConvFCBoxHead:
    """nn.Linear's default init for the FCs (torchvision's ``TwoMLPHead`` / ConvFC head)."""
    for layer in head.fcs:
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    return head


def torchvision_init_mask_head(head: FCNMaskHead, num_classes: int) -> FCNMaskHead:
    """torchvision's ``MaskRCNNPredictor`` init: Kaiming-normal fan-out weights over
    ``num_classes + 1`` logit channels (its background channel), default biases."""
    for layer in (head.upsample, head.logits):
        layer.reset_parameters()
    nn.init.kaiming_normal_(head.upsample.weight, mode="fan_out", nonlinearity="relu")
    nn.init.normal_(head.logits.weight, std=math.sqrt(2.0 / (num_classes + 1)))
    return head


class HeadParts:
    """Builders of the RoI-head components of one model config (``in_channels``: FPN width,
    ``num_classes``: foreground classes)."""

    def __init__(self, m: ModelConfig, *, in_channels: int, level_names: list[str],
                 num_classes: int) -> None:
        self.m, self.in_channels, self.levels, self.num_classes = (m, in_channels,
                                                                   list(level_names), num_classes)
        self.norm = norm_factory(m.roi_heads.norm)

    def box_head(self) -> ConvFCBoxHead:
        r = self.m.roi_heads
        return torchvision_init_box_head(ConvFCBoxHead(
            in_channels=self.in_channels, pool_size=BOX_POOL, num_convs=r.box_head_convs,
            conv_channels=r.box_head_channels, num_fcs=r.box_head_fcs,
            fc_dim=r.representation_size, norm_layer=self.norm, ws=r.ws,
            pixel_channels=r.box_pixel_channels))

    def cls_loss(self) -> ClsLoss:
        seesaw = self.m.roi_heads.seesaw
        if seesaw is None:
            return SoftmaxCE()
        return Seesaw(self.num_classes, p=seesaw.p, q=seesaw.q, scale=seesaw.temperature)

    def predictor(self, head: ConvFCBoxHead, cls_loss: ClsLoss, *,
                  class_agnostic: bool) -> BoxPredictor:
        predictor = BoxPredictor(in_features=head.out_features, num_classes=self.num_classes,
                                 class_agnostic=class_agnostic, cls_loss=cls_loss)
        predictor.cls_score.reset_parameters()  # torchvision's init (see above)
        predictor.bbox_pred.reset_parameters()
        return predictor

    def mask_head(self, *, residual_in: bool = False) -> FCNMaskHead:
        r = self.m.roi_heads
        head = FCNMaskHead(in_channels=self.in_channels, num_convs=r.mask_head_convs,
                           conv_channels=r.mask_head_channels, num_classes=self.num_classes,
                           norm_layer=self.norm, ws=r.ws, residual_in=residual_in,
                           pixel_channels=r.mask_pixel_channels)
        return torchvision_init_mask_head(head, self.num_classes)

    def mask_iou_head(self) -> Optional[MaskIoUHead]:
        mi = self.m.mask_iou
        if not mi.enabled:
            return None
        return MaskIoUHead(in_channels=self.in_channels, num_convs=mi.num_convs,
                           conv_channels=mi.conv_channels, fc_dim=mi.fc_dim,
                           num_classes=self.num_classes, roi_size=MASK_POOL)

    def common(self) -> dict:
        """Keyword arguments every family's RoI heads take."""
        r = self.m.roi_heads
        return dict(
            box_roi_pool=PyramidRoIAlign(self.levels, BOX_POOL, SAMPLING_RATIO, aligned=r.aligned),
            mask_roi_pool=PyramidRoIAlign(self.levels, MASK_POOL, SAMPLING_RATIO,
                                          aligned=r.aligned),
            num_classes=self.num_classes, batch_size_per_image=r.batch_size_per_image,
            positive_fraction=r.positive_fraction, box_loss=r.box_loss,
            box_loss_weight=r.box_loss_weight, mask_iou_loss_weight=self.m.mask_iou.loss_weight,
            score_thresh=r.score_thresh, nms_thresh=r.nms_thresh,
            detections_per_img=r.detections_per_img)

    def cascade_stages(self) -> dict:
        """Per-stage box heads, class-agnostic predictors, losses, IoUs and coder weights."""
        c = self.m.cascade or CascadeConfig()
        heads = [self.box_head() for _ in c.iou_thresholds]
        losses = [self.cls_loss() for _ in heads]
        return dict(box_heads=heads,
                    box_predictors=[self.predictor(h, lo, class_agnostic=True)
                                    for h, lo in zip(heads, losses)],
                    cls_losses=losses, iou_thresholds=list(c.iou_thresholds),
                    bbox_reg_weights=[list(w) for w in c.bbox_reg_weights],
                    stage_loss_weights=list(c.stage_loss_weights))


def build_mask_rcnn_heads(parts: HeadParts) -> StandardRoIHeads:
    """One class-specific box stage (coder weights 10, 10, 5, 5), one mask head."""
    r = parts.m.roi_heads
    head, cls_loss = parts.box_head(), parts.cls_loss()
    return StandardRoIHeads(
        **parts.common(), box_head=head, cls_loss=cls_loss,
        box_predictor=parts.predictor(head, cls_loss, class_agnostic=False),
        fg_iou_thresh=r.fg_iou_thresh, bg_iou_thresh=r.bg_iou_thresh,
        mask_head=parts.mask_head(), mask_iou_head=parts.mask_iou_head())


def build_cascade_heads(parts: HeadParts) -> CascadeRoIHeads:
    """``model.cascade`` box stages, one mask head on the final stage."""
    return CascadeRoIHeads(**parts.common(), **parts.cascade_stages(),
                           mask_head=parts.mask_head(), mask_iou_head=parts.mask_iou_head())


def build_htc_heads(parts: HeadParts) -> HybridTaskCascadeRoIHeads:
    """``model.cascade`` box stages, one mask head per stage (information flow from the
    second on), mask-IoU heads per stage and the semantic branch as configured."""
    stages = parts.cascade_stages()
    n = len(stages["box_heads"])
    sem = parts.m.semantic
    semantic = (SemanticHead(in_channels=parts.in_channels, num_levels=len(parts.levels),
                             fusion_level=sem.fusion_level, num_convs=sem.num_convs,
                             conv_channels=parts.in_channels, num_classes=parts.num_classes)
                if sem.enabled else None)
    iou_heads = [parts.mask_iou_head() for _ in range(n)] if parts.m.mask_iou.enabled else None
    return HybridTaskCascadeRoIHeads(
        **parts.common(), **stages,
        mask_heads=[parts.mask_head(residual_in=k > 0) for k in range(n)],
        mask_iou_heads=iou_heads, semantic_head=semantic, semantic_loss_weight=sem.loss_weight)


FAMILIES: dict[str, Callable[[HeadParts], StandardRoIHeads]] = {
    "mask_rcnn": build_mask_rcnn_heads,
    "cascade_mask_rcnn": build_cascade_heads,
    "htc": build_htc_heads,
}


def build_model(cfg: Config) -> TwoStageDetector:
    """The detector of ``cfg.model.family`` for ``cfg.num_classes`` classes (interface in
    :mod:`vipseg.models.detector`). Validates ``cfg.model`` first (configs built in code)."""
    m = cfg.model
    m.validate()
    features = build_features(m)
    p = m.rpn
    rpn = make_rpn(in_channels=features.out_channels, num_levels=features.num_levels,
                   anchor_sizes=p.anchor_sizes, aspect_ratios=p.aspect_ratios,
                   pre_nms_top_n_train=p.pre_nms_top_n_train,
                   pre_nms_top_n_test=p.pre_nms_top_n_test,
                   post_nms_top_n_train=p.post_nms_top_n_train,
                   post_nms_top_n_test=p.post_nms_top_n_test, nms_thresh=p.nms_thresh,
                   fg_iou_thresh=p.fg_iou_thresh, bg_iou_thresh=p.bg_iou_thresh,
                   batch_size_per_image=p.batch_size_per_image,
                   positive_fraction=p.positive_fraction)
    parts = HeadParts(m, in_channels=features.out_channels, level_names=features.level_names,
                      num_classes=cfg.num_classes)
    return TwoStageDetector(backbone=features, rpn=rpn, roi_heads=FAMILIES[m.family](parts),
                            mean=cfg.dataset.mean, std=cfg.dataset.std)

