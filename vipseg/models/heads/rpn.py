"""The region proposal network: torchvision's ``RegionProposalNetwork`` with one anchor size
per pyramid level (the RPN of every family)."""

from __future__ import annotations

from typing import Sequence

from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from vipseg.errors import ConfigError


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
