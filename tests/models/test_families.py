"""Every model family x the mask-IoU option, one test body each (timm's test_models style):
losses and gradients, the evaluation contract, masks for given boxes, overfitting 4 images;
known answers for the cascade's box decoding; bad configs; old checkpoints."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from tests.helpers import make_shapes_dataset
from vipseg.config.loader import load_config
from vipseg.config.schema import FAMILIES, Config
from vipseg.data.dataset import CocoInstanceDataset, collate
from vipseg.engine.checkpoint import save_checkpoint
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.inference import load_model, output_to_results
from vipseg.errors import ConfigError, DataError
from vipseg.models.build import build_model
from vipseg.models.heads.cascade import CascadeRoIHeads
from vipseg.models.losses import SoftmaxCE
from vipseg.models.norms import group_norm

IOU = ["model.mask_iou.enabled=true", "model.mask_iou.num_convs=2",
       "model.mask_iou.conv_channels=64", "model.mask_iou.fc_dim=128"]
CASES = [(family, iou) for family in FAMILIES for iou in (False, True)]
IDS = [f"{family}{'+iou' if iou else ''}" for family, iou in CASES]
PIXELS = ["model.roi_heads.mask_pixel_channels=8", "model.roi_heads.box_pixel_channels=4"]
PIXEL_CASES = [(family, "pixels") for family in FAMILIES]
PIXEL_IDS = [f"{family}+pixels" for family in FAMILIES]
STAGES = 3


def family_cfg(repo, family: str, iou: bool, *overrides: str) -> Config:
    return load_config(repo / f"configs/exp/{family}/tiny_cpu.yaml",
                       [*(IOU if iou else []), *overrides])


def expected_losses(family: str, iou: bool, semantic: bool = False) -> set[str]:
    rpn = {"loss_objectness", "loss_rpn_box_reg"}
    mask = {"loss_mask"} | ({"loss_mask_iou"} if iou else set())
    if family == "mask_rcnn":
        return rpn | mask | {"loss_classifier", "loss_box_reg"}
    box = {f"s{k}_{n}" for k in range(STAGES) for n in ("loss_classifier", "loss_box_reg")}
    if family == "cascade_mask_rcnn":
        return rpn | mask | box
    return (rpn | box | {f"s{k}_{n}" for k in range(STAGES) for n in mask}
            | ({"loss_semantic"} if semantic else set()))


@pytest.mark.parametrize(("family", "iou"), CASES + [("htc", "semantic")] + PIXEL_CASES,
                         ids=IDS + ["htc+semantic"] + PIXEL_IDS)
def test_losses_finite_and_every_parameter_gets_a_gradient(repo, shapes_batch, family, iou):
    semantic = ["model.semantic.enabled=true", "model.semantic.num_convs=1"]
    extra = {"semantic": semantic, "pixels": PIXELS}.get(iou, [])
    torch.manual_seed(0)
    model = build_model(family_cfg(repo, family, iou is True, *extra)).train()
    losses = model(*shapes_batch)
    assert set(losses) == expected_losses(family, iou is True, iou == "semantic")
    assert all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


class TwoSets(nn.Module):
    """A features module returning, in training, its pyramid twice (lead, assisting) with
    weight 0.5 for the second, as a composite backbone does."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.inner, self.aux_weights = features, (0.5,)

    def forward(self, x):
        out = self.inner(x)
        return [out, OrderedDict((k, v * 1.0) for k, v in out.items())] if self.training else out


@pytest.mark.parametrize("family", FAMILIES)
def test_assisting_feature_sets_reuse_the_lead_rois(repo, shapes_batch, family):
    torch.manual_seed(0)
    model = build_model(family_cfg(repo, family, False)).train()
    model.backbone = TwoSets(model.backbone)
    losses = model(*shapes_batch)
    lead = expected_losses(family, False)
    assert set(losses) == lead | {f"aux0_{k}" for k in lead}
    # The assisting set is the lead's pyramid: on the lead's RoIs its RoI losses are the
    # lead's, halved (the RPN samples anchors afresh, so only its losses are compared loosely).
    for k in lead - {"loss_objectness", "loss_rpn_box_reg"}:
        torch.testing.assert_close(losses[f"aux0_{k}"], 0.5 * losses[k])


@pytest.mark.parametrize(("family", "iou"), CASES + PIXEL_CASES, ids=IDS + PIXEL_IDS)
def test_eval_contract_and_masks_for_given_boxes(repo, shapes_batch, family, iou):
    extra = PIXELS if iou == "pixels" else []
    iou = iou is True
    cfg = family_cfg(repo, family, iou, "model.roi_heads.score_thresh=0.0", *extra)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images, _ = shapes_batch
    odd = torch.rand(3, 75, 230) * 255  # another size, not a multiple of 32
    with torch.no_grad():
        full = model([images[0], odd])
        feats = model.extract_features([images[0], odd])
        dets = model.detect(feats)
        given = model.predict_masks(feats, [d["boxes"] for d in full], [d["labels"] for d in full])
    for det, d, g, (h, w) in zip(full, dets, given, [(128, 160), (75, 230)]):
        k = len(det["boxes"])
        assert 0 < k <= cfg.model.roi_heads.detections_per_img
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,)
        assert det["labels"].dtype == torch.int64
        assert 0 <= det["labels"].min() and det["labels"].max() < cfg.num_classes
        assert det["masks"].shape == (k, 1, 28, 28)
        assert 0 <= det["masks"].min() and det["masks"].max() <= 1
        assert det["boxes"][:, :2].min() >= 0
        assert det["boxes"][:, 2].max() <= w and det["boxes"][:, 3].max() <= h
        torch.testing.assert_close(det["boxes"], d["boxes"])
        assert torch.equal(det["labels"], d["labels"])
        torch.testing.assert_close(det["masks"], g["masks"])
        assert ("mask_iou" in g) == iou
        scale = g["mask_iou"] if iou else torch.ones(k)
        torch.testing.assert_close(det["scores"], d["scores"] * scale)
    assert full[1]["boxes"][:, 2].max() > 160  # no shared canvas with the narrower image


# --------------------------------------------------------------------------------- overfitting
OVERFIT_STEPS = 40


@pytest.fixture(scope="session")
def four_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("four")
    ann = make_shapes_dataset(root, "train", n_images=4, size=(160, 128), seed=3)
    ds = CocoInstanceDataset(ann, root / "train", ["human", "ball"])
    return ann, collate([ds[i] for i in range(4)])


@pytest.fixture(scope="session")
def overfit_ap(repo, four_images):
    """Mask AP of each tiny family after :data:`OVERFIT_STEPS` AdamW steps on 4 images,
    trained on first use and shared by the tests of this session."""
    cache: dict[str, dict] = {}

    def get(family: str, iou: bool) -> dict:
        key = f"{family}{iou}"
        if key not in cache:
            ann, (images, targets) = four_images
            torch.manual_seed(0)
            model = build_model(family_cfg(repo, family, iou)).train()
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=OVERFIT_STEPS,
                                                        pct_start=0.15)
            for _ in range(OVERFIT_STEPS):
                loss = sum(model(images, targets).values())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            model.eval()
            with torch.no_grad():
                outs = model(images)
            results = [r for o, t in zip(outs, targets)
                       for r in output_to_results(o, t, [1, 2])]
            cache[key] = coco_metrics(ann, results)
        return cache[key]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family_overfits_four_images(overfit_ap, family):
    metrics = overfit_ap(family, False)
    assert metrics["segm/AP"] >= 0.5, metrics


def test_tiny_htc_with_mask_iou_overfits_four_images(overfit_ap):
    metrics = overfit_ap("htc", True)
    assert metrics["segm/AP"] >= 0.5, metrics


# ------------------------------------------------------------------------------ known answers
class FixedPredictor(nn.Module):
    """Predictor stub: the same logits [3] and deltas [4] for every RoI."""

    def __init__(self, logits, deltas) -> None:
        super().__init__()
        self.logits, self.deltas = torch.tensor(logits), torch.tensor(deltas)

    def forward(self, x):
        return self.logits.expand(len(x), -1), self.deltas.expand(len(x), -1)


def test_cascade_decodes_boxes_stage_by_stage():
    """A 20x20 proposal at (10, 10); stage k predicts dx = k + 1 with coder weight
    wx = 10 (k + 1), i.e. 2 px to the right each stage, and dh = ln 2 * wh_k (height x2)
    only in stage 1: the final box is (16, 0, 36, 40) after 3 stages."""
    weights = [(10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0)]
    deltas = [[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 10 * math.log(2)], [3.0, 0.0, 0.0, 0.0]]
    logits = [[0.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    levels = ["0"]
    heads = CascadeRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=nn.Identity(), num_classes=2, score_thresh=0.0, detections_per_img=10,
        box_heads=[nn.Flatten() for _ in range(3)],
        box_predictors=[FixedPredictor(lo, d) for lo, d in zip(logits, deltas)],
        cls_losses=[SoftmaxCE() for _ in range(3)], iou_thresholds=[0.5, 0.6, 0.7],
        bbox_reg_weights=weights, stage_loss_weights=[1.0, 0.5, 0.25])
    maps = OrderedDict({"0": torch.zeros(1, 4, 16, 16)})
    ((boxes, scores, labels),) = heads.detect(maps, [torch.tensor([[10.0, 10.0, 30.0, 30.0]])],
                                              [(64, 64)])
    # Both foreground classes keep the same (class-agnostic) box; the best is class 1.
    assert labels.tolist() == [1, 2]
    torch.testing.assert_close(boxes, torch.tensor([[16.0, 0.0, 36.0, 40.0]] * 2))
    probs = torch.stack([torch.tensor(lo).softmax(0) for lo in logits]).mean(0)
    torch.testing.assert_close(scores, probs[[1, 2]])


# ------------------------------------------------------------------------------ bad configs
@pytest.mark.parametrize(("overrides", "key"), [
    (["model.family=yolo"], "model.family"),
    (["model.family=cascade_mask_rcnn", "model.cascade.stage_loss_weights=[1.0, 0.5]"],
     "model.cascade.stage_loss_weights"),
    (["model.family=htc", "model.cascade.bbox_reg_weights=[[10, 10, 5, 5]]"],
     "model.cascade.bbox_reg_weights"),
    (["model.cascade.iou_thresholds=[0.5]"], "model.cascade"),
    (["model.family=cascade_mask_rcnn", "model.semantic.enabled=true"], "model.semantic.enabled"),
    (["model.family=htc", "model.roi_heads.fg_iou_thresh=0.6"], "model.roi_heads.fg_iou_thresh"),
    (["model.roi_heads.mask_head_convs=0"], "model.roi_heads.mask_head_convs"),
    (["model.mask_iou.enabled=true", "model.mask_iou.fc_dim=0"], "model.mask_iou.fc_dim"),
    (["model.roi_heads.seesaw={temperature: 0}"], "model.roi_heads.seesaw.temperature"),
    (["model.mask_iou.fc_dim=256"], "model.mask_iou.fc_dim"),  # set but not enabled
    (["model.family=htc", "model.semantic.num_convs=2"], "model.semantic.num_convs"),
    (["model.roi_heads.box_head_channels=128"], "model.roi_heads.box_head_channels"),
])
def test_bad_model_config_is_a_one_line_error_naming_the_key(repo, overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml", overrides)
    message = str(err.value)
    assert key in message and "\n" not in message, message


def test_config_built_in_code_is_validated(repo):
    cfg = family_cfg(repo, "cascade_mask_rcnn", False)
    cfg.model.cascade.iou_thresholds = [0.5, 0.6]
    with pytest.raises(ConfigError, match="model.cascade.stage_loss_weights has 3 entries"):
        build_model(cfg)


@pytest.mark.parametrize("family", ["mask_rcnn_iou", "htc_iou"])
def test_iou_configs_are_their_family_plus_mask_iou(repo, family):
    cfg = load_config(repo / f"configs/exp/{family}/tiny_cpu.yaml")
    assert cfg == family_cfg(repo, cfg.model.family, True)


# ----------------------------------------------------------------------- old checkpoints
def legacy_roi_heads(in_channels: int, num_classes: int) -> nn.Module:
    """The tiny config's RoI heads as torchvision's ``RoIHeads`` named them (vipseg's Mask
    R-CNN before its own heads): TwoMLPHead, FastRCNNPredictor, MaskRCNNHeads, predictor."""
    heads = nn.Module()
    heads.box_head = TwoMLPHead(in_channels * 49, 128)
    heads.box_predictor = FastRCNNPredictor(128, num_classes + 1)
    heads.mask_head = MaskRCNNHeads(in_channels, [64, 64], 1, norm_layer=group_norm)
    heads.mask_predictor = MaskRCNNPredictor(64, 64, num_classes + 1)
    return heads


def test_old_checkpoint_loads_into_mask_rcnn(repo, tmp_path):
    cfg = family_cfg(repo, "mask_rcnn", False)
    torch.manual_seed(0)
    model = build_model(cfg)
    old = legacy_roi_heads(64, cfg.num_classes)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.")}
    state.update({f"roi_heads.{k}": v for k, v in old.state_dict().items()})
    save_checkpoint(tmp_path / "old.pth", {"model": state})
    loaded = load_model(cfg, tmp_path / "old.pth", "cpu").roi_heads
    assert torch.equal(loaded.box_head.fcs[2].weight, old.box_head.fc7.weight)
    assert torch.equal(loaded.box_predictor.cls_score.weight, old.box_predictor.cls_score.weight)
    assert torch.equal(loaded.mask_head.convs[1][1].weight, old.mask_head[1][1].weight)
    assert torch.equal(loaded.mask_head.upsample.weight, old.mask_predictor.conv5_mask.weight)
    assert torch.equal(loaded.mask_head.logits.weight,
                       old.mask_predictor.mask_fcn_logits.weight[1:])


def test_checkpoint_of_another_family_fails_naming_the_mismatch(repo, tmp_path):
    cascade = build_model(family_cfg(repo, "cascade_mask_rcnn", False))
    save_checkpoint(tmp_path / "cascade.pth", {"model": cascade.state_dict()})
    with pytest.raises(DataError) as err:
        load_model(family_cfg(repo, "mask_rcnn", False), tmp_path / "cascade.pth", "cpu")
    message = str(err.value)
    assert "weights do not match" in message and "roi_heads." in message and "\n" not in message
