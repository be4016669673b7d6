"""``mask_rcnn`` against the torchvision Mask R-CNN heads it replaced (``RoIHeads`` with
``TwoMLPHead`` / ``MaskRCNNHeads`` / ``MaskRCNNPredictor``, as vipseg built them before):
with the same weights (and ``roi_heads.aligned: false``, torchvision's RoIAlign sampling) the
RoI losses and the detections are the same, and a freshly built
model starts from the same initial distribution (the demo's val mask AP depends on it:
benchmarks/RESULTS.md, "Model zoo: the demo's AP against the torchvision heads")."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from vipseg.models.build import BOX_POOL, MASK_POOL, build_model
from vipseg.models.detector import to_internal_target
from vipseg.models.heads.roi_heads import upgrade_torchvision_keys
from vipseg.models.norms import norm_factory
from vipseg.utils.packed_masks import unpack_masks


def torchvision_heads(cfg, levels: list[str], channels: int) -> RoIHeads:
    """The torchvision ``RoIHeads`` that vipseg's Mask R-CNN used for ``cfg`` (box head
    without convs: two FCs)."""
    r, classes = cfg.model.roi_heads, cfg.num_classes + 1
    assert r.box_head_convs == 0 and r.box_head_fcs == 2
    mask_head = MaskRCNNHeads(channels, [r.mask_head_channels] * r.mask_head_convs, 1,
                              norm_layer=norm_factory(r.norm))
    return RoIHeads(
        MultiScaleRoIAlign(levels, BOX_POOL, sampling_ratio=2),
        TwoMLPHead(channels * BOX_POOL ** 2, r.representation_size),
        FastRCNNPredictor(r.representation_size, classes), r.fg_iou_thresh, r.bg_iou_thresh,
        r.batch_size_per_image, r.positive_fraction, bbox_reg_weights=None,
        score_thresh=r.score_thresh, nms_thresh=r.nms_thresh,
        detections_per_img=r.detections_per_img,
        mask_roi_pool=MultiScaleRoIAlign(levels, MASK_POOL, sampling_ratio=2),
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(r.mask_head_channels, r.mask_head_channels, classes))


@pytest.fixture
def pair(tiny_cfg):
    """vipseg's heads with torchvision's (unaligned) RoIAlign, and torchvision's heads."""
    tiny_cfg.model.roi_heads.aligned = False
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    tv = torchvision_heads(tiny_cfg, model.backbone.level_names, model.backbone.out_channels)
    return model, tv


def test_same_weights_give_the_same_losses_and_detections(pair, shapes_batch):
    model, tv = pair
    missing, unexpected = model.roi_heads.load_state_dict(tv.state_dict(), strict=True)
    assert not missing and not unexpected
    images, targets = shapes_batch
    internal = [to_internal_target(t) for t in targets]
    full = [{"boxes": t["boxes"], "labels": t["labels"],
             "masks": unpack_masks(t["mask_data"], t["mask_boxes"], tuple(im.shape[-2:]))}
            for t, im in zip(internal, images)]
    model.train()
    tv.train()
    feats = model.extract_features(images)
    proposals, _ = model.rpn(model._image_list(feats), feats.maps, internal)
    proposals = [p.detach() for p in proposals]
    torch.manual_seed(1)
    ours, _ = model.roi_heads.forward_train(feats.maps, proposals, feats.image_sizes, internal)
    torch.manual_seed(1)
    _, theirs = tv(feats.maps, proposals, feats.image_sizes, full)
    assert ours.keys() == theirs.keys()
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-6, msg=k)

    model.eval()
    tv.eval()
    with torch.no_grad():
        dets = model.roi_heads.detect(feats.maps, proposals, feats.image_sizes)
        expected, _ = tv(feats.maps, proposals, feats.image_sizes)
        masks, _ = model.roi_heads.predict_masks(feats.maps, [d[0] for d in dets],
                                                 [d[2] for d in dets], feats.image_sizes)
    assert sum(len(d[0]) for d in dets) > 0
    for (boxes, scores, labels), e in zip(dets, expected):
        torch.testing.assert_close(boxes, e["boxes"])
        torch.testing.assert_close(scores, e["scores"])
        assert torch.equal(labels, e["labels"])
    torch.testing.assert_close(masks, torch.cat([e["masks"] for e in expected]))


def test_fresh_heads_start_from_torchvisions_init(pair):
    """Weights with enough entries for a stable estimate have torchvision's std (10 %), and
    biases that torchvision leaves at PyTorch's default are not zero. The Xavier-filled box
    FCs (std x1.7) and zero biases of the components' own init lowered the demo's mask AP."""
    model, tv = pair
    theirs = dict(tv.state_dict())
    upgrade_torchvision_keys(model.roi_heads, theirs, "")  # torchvision's names -> ours
    ours = model.roi_heads.state_dict()
    checked = 0
    for key, value in theirs.items():
        mine = ours[key]
        if not value.dtype.is_floating_point or value.std() == 0:
            continue
        if value.numel() >= 1000:
            ratio = float(mine.std() / value.std())
            assert 0.9 < ratio < 1.1, (key, ratio)
            checked += 1
        else:  # small tensors (biases, the logits): nonzero where torchvision's are
            assert mine.abs().sum() > 0, key
    assert checked >= 6
