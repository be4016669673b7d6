"""Backbones and norms: ResNet with every norm, timm backbones adapted to the FPN, no downloads."""

from __future__ import annotations

import math

import pytest
import timm.models._builder
import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from vipseg.errors import ConfigError
from vipseg.models.backbones.timm_features import TimmFeatures
from vipseg.models.build import build_model
from vipseg.models.features import build_backbone
from vipseg.models.necks.fpn import BackboneFPN
from vipseg.models.norms import group_count

NORM_TYPES = {"BN": nn.BatchNorm2d, "SyncBN": nn.BatchNorm2d, "GN": nn.GroupNorm,
              "FrozenBN": FrozenBatchNorm2d}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pretrained weight download was attempted")
    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)


def norm_types(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, tuple(NORM_TYPES.values()))}


def test_group_count_divides_channels():
    assert [group_count(c) for c in (256, 96, 48, 24, 7)] == [32, 32, 24, 24, 7]


@pytest.mark.parametrize("norm", sorted(NORM_TYPES))
def test_each_norm_builds_and_trains(tiny_cfg, shapes_batch, norm):
    tiny_cfg.model.backbone.norm = norm
    tiny_cfg.model.neck.norm = norm
    tiny_cfg.model.roi_heads.norm = norm
    tiny_cfg.model.roi_heads.box_head_convs = 1
    model = build_model(tiny_cfg).train()
    for part in (model.backbone.body, model.backbone.fpn, model.roi_heads.box_head,
                 model.roi_heads.mask_head):
        assert norm_types(part) == {NORM_TYPES[norm]}, part.__class__.__name__
    losses = model(*shapes_batch)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_norm_none_for_neck_and_heads_and_zero_init(tiny_cfg):
    tiny_cfg.model.neck.norm = "none"
    tiny_cfg.model.roi_heads.norm = "none"
    model = build_model(tiny_cfg)
    assert norm_types(model.backbone.fpn) == set()
    assert norm_types(model.roi_heads.mask_head) == set()
    # Each residual block's last norm starts at gamma 0 (identity blocks at init).
    assert all(torch.all(block.bn2.weight == 0) for stage in model.backbone.body.stages
               for block in stage)
    tiny_cfg.model.backbone.norm = "none"
    with pytest.raises(ConfigError, match="ResNet backbones need a norm"):
        build_model(tiny_cfg)


def test_box_head_choice(tiny_cfg):
    assert type(build_model(tiny_cfg).roi_heads.box_head).__name__ == "TwoMLPHead"
    tiny_cfg.model.roi_heads.box_head_convs = 2
    head = build_model(tiny_cfg).roi_heads.box_head
    assert type(head).__name__ == "FastRCNNConvFCHead"
    assert sum(isinstance(m, nn.Conv2d) for m in head.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == 1


@pytest.mark.parametrize("name,channels", [("resnet34", 512), ("resnet50", 2048),
                                           ("resnet101", 2048)])
def test_resnet_depths(tiny_cfg, name, channels):
    tiny_cfg.model.backbone.name = name
    tiny_cfg.model.backbone.out_indices = [2, 4]
    body = build_backbone(tiny_cfg.model.backbone)
    assert body.out_channels == [channels // 4, channels]
    feats = body(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[2:]) for f in feats.values()] == [(8, 12), (2, 3)]


def test_bad_backbone_names(tiny_cfg):
    tiny_cfg.model.backbone.name = "resnet9"
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9'"):
        build_model(tiny_cfg)
    tiny_cfg.model.backbone.name = "timm:no_such_model"
    with pytest.raises(ConfigError, match="timm has no model 'no_such_model'"):
        build_model(tiny_cfg)
    tiny_cfg.model.backbone.name = "timm:convnext_atto"
    tiny_cfg.model.backbone.kwargs = {"no_such_option": 1}
    with pytest.raises(ConfigError, match="'convnext_atto' rejects the arguments"):
        build_model(tiny_cfg)
    tiny_cfg.model.backbone.kwargs = {}
    tiny_cfg.model.backbone.out_indices = [0, 1]
    with pytest.raises(ConfigError, match=r"has stages \[1, 2, 3, 4\]"):
        build_model(tiny_cfg)


# (timm name, channels of strides 4..32, NCHW input (H, W)). Inputs are multiples of 32 as the
# detector pads them, but not multiples of Swin's 7x7 windows (x 4 px patches).
TIMM_BACKBONES = [
    ("swin_tiny_patch4_window7_224", [96, 192, 384, 768]),
    ("swin_small_patch4_window7_224", [96, 192, 384, 768]),
    ("swin_base_patch4_window7_224", [128, 256, 512, 1024]),
    ("convnext_tiny", [96, 192, 384, 768]),
    ("convnext_base", [128, 256, 512, 1024]),
    ("convnextv2_tiny", [96, 192, 384, 768]),
    ("hrnet_w32", [128, 256, 512, 1024]),
]


@pytest.mark.parametrize("name,channels", TIMM_BACKBONES)
def test_timm_backbone_feeds_fpn(name, channels):
    body = TimmFeatures(model_name=name, norm="GN")
    assert body.out_channels == channels
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    neck = BackboneFPN(body, channels=32).eval()
    with torch.no_grad():
        feats = neck(torch.rand(1, 3, 96, 160))
    assert list(feats) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape) for f in feats.values()] == [
        (1, 32, 24, 40), (1, 32, 12, 20), (1, 32, 6, 10), (1, 32, 3, 5), (1, 32, 2, 3)]


def test_timm_detector_trains(tiny_cfg, shapes_batch):
    tiny_cfg.model.backbone.name = "timm:swin_tiny_patch4_window7_224"
    tiny_cfg.model.backbone.drop_path_rate = 0.1
    model = build_model(tiny_cfg).train()
    losses = model(*shapes_batch)
    assert all(math.isfinite(v.item()) for v in losses.values())
    with torch.no_grad():
        out = model.eval()([torch.zeros(3, 100, 150, dtype=torch.uint8)])
    assert out[0]["masks"].shape[1:] == (1, 28, 28)


def test_timm_batchnorm_replacement():
    frozen = TimmFeatures(model_name="resnet18", norm="FrozenBN", out_indices=[3, 4])
    assert frozen.out_channels == [256, 512]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert not [p for n, p in frozen.named_parameters() if "bn" in n]
    kept = TimmFeatures(model_name="resnet18", norm="SyncBN")
    assert any(isinstance(m, nn.BatchNorm2d) for m in kept.modules())
