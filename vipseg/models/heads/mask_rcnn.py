"""Region proposal network and Mask R-CNN RoI heads from torchvision parts.

Both builders take plain keyword arguments named like the config keys of ``model.rpn`` and
``model.roi_heads``. Class counts here include torchvision's background class 0.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (FastRCNNConvFCHead, FastRCNNPredictor,
                                                      TwoMLPHead)
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from vipseg.errors import ConfigError
from vipseg.models.norms import NormFactory

BOX_POOL = 7  # RoIAlign output side for the box head
MASK_POOL = 14  # ... for the mask head (masks are predicted at 2 * MASK_POOL = 28)


def make_rpn(*, in_channels: int, num_levels: int, anchor_sizes: Sequence[int],
             aspect_ratios: Sequence[float], pre_nms_top_n_train: int, pre_nms_top_n_test: int,
             post_nms_top_n_train: int, post_nms_top_n_test: int, nms_thresh: float,
             fg_iou_thresh: float, bg_iou_thresh: float, batch_size_per_image: int,
             positive_fraction: float) -> RegionProposalNetwork:
    """RPN over ``num_levels`` pyramid levels, one anchor size (pixels) per level, finest first,
    with every aspect ratio (height / width) at each level."""
    if len(anchor_sizes) != num_levels:
        raise ConfigError(f"model.rpn.anchor_sizes has {len(anchor_sizes)} sizes but the FPN "
                          f"has {num_levels} levels (one size per level, finest first)")
    anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                              aspect_ratios=(tuple(float(r) for r in aspect_ratios),) * num_levels)
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors, head, fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction,
        pre_nms_top_n={"training": pre_nms_top_n_train, "testing": pre_nms_top_n_test},
        post_nms_top_n={"training": post_nms_top_n_train, "testing": post_nms_top_n_test},
        nms_thresh=nms_thresh)


def make_roi_heads(*, in_channels: int, level_names: Sequence[str], num_classes: int,
                   norm_layer: Optional[NormFactory], batch_size_per_image: int,
                   positive_fraction: float, fg_iou_thresh: float, bg_iou_thresh: float,
                   box_head_convs: int, box_head_channels: int, representation_size: int,
                   mask_head_convs: int, mask_head_channels: int, score_thresh: float,
                   nms_thresh: float, detections_per_img: int) -> RoIHeads:
    """Box and mask heads on the pyramid levels ``level_names``.

    ``box_head_convs == 0``: two fully connected layers of ``representation_size``
    (TwoMLPHead); ``> 0``: that many 3x3 convs of ``box_head_channels`` then one FC layer
    (FastRCNNConvFCHead). The mask head has ``mask_head_convs`` 3x3 convs then a 2x
    deconvolution; ``num_classes`` counts the background.
    """
    box_pool = MultiScaleRoIAlign(list(level_names), BOX_POOL, sampling_ratio=2)
    if box_head_convs == 0:
        box_head = TwoMLPHead(in_channels * BOX_POOL ** 2, representation_size)
    else:
        box_head = FastRCNNConvFCHead((in_channels, BOX_POOL, BOX_POOL),
                                      [box_head_channels] * box_head_convs,
                                      [representation_size], norm_layer=norm_layer)
    mask_pool = MultiScaleRoIAlign(list(level_names), MASK_POOL, sampling_ratio=2)
    mask_head = MaskRCNNHeads(in_channels, [mask_head_channels] * mask_head_convs, 1,
                              norm_layer=norm_layer)
    mask_in = mask_head_channels if mask_head_convs else in_channels
    return RoIHeads(
        box_pool, box_head, FastRCNNPredictor(representation_size, num_classes),
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction,
        bbox_reg_weights=None, score_thresh=score_thresh, nms_thresh=nms_thresh,
        detections_per_img=detections_per_img, mask_roi_pool=mask_pool, mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(mask_in, mask_head_channels, num_classes))
