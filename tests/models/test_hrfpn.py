"""HRFPN: what it computes, its level sizes (the FPN's), HRNet + HRFPN detectors, and the
one-line error on backbones without branches."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from tests.models.backbone_cases import no_downloads, with_backbone  # noqa: F401 (fixture)
from vipseg.config.schema import BackboneConfig, ModelConfig, NeckConfig
from vipseg.errors import ConfigError
from vipseg.models.build import build_model
from vipseg.models.features import build_features
from vipseg.models.necks.fpn import FPN
from vipseg.models.necks.hrfpn import HRFPN

pytestmark = pytest.mark.usefixtures("no_downloads")


def branches(channels=(4, 8, 16, 32), size=(24, 40), batch=1) -> "OrderedDict[str, torch.Tensor]":
    h, w = size
    return OrderedDict((str(k), torch.rand(batch, c, math.ceil(h / 2 ** k), math.ceil(w / 2 ** k)))
                       for k, c in enumerate(channels))


def test_hrfpn_fuses_all_branches_then_pools():
    """With identity convs, level k is the average-pooled sum of the branches resized to the
    finest one (the 1x1 conv sums the concatenated branches channel-wise)."""
    feats = branches(channels=(2, 2, 2, 2))
    neck = HRFPN([2, 2, 2, 2], channels=2)
    with torch.no_grad():
        neck.reduction.weight.copy_(torch.eye(2).repeat(1, 4)[:, :, None, None])
        neck.reduction.bias.zero_()
        for conv in neck.convs:
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(2)
            conv.bias.zero_()
        out = neck(feats)
    maps = list(feats.values())
    fused = maps[0] + sum(F.interpolate(m, size=maps[0].shape[-2:], mode="bilinear",
                                        align_corners=False) for m in maps[1:])
    assert list(out) == ["0", "1", "2", "3", "pool"]
    torch.testing.assert_close(out["0"], fused)
    torch.testing.assert_close(out["1"], F.avg_pool2d(fused, 2))  # 24 x 40: exact windows
    torch.testing.assert_close(out["pool"][..., :1, :2], F.avg_pool2d(fused[..., :16, :32], 16))


@pytest.mark.parametrize("size", [(24, 40), (32, 56), (8, 8)])
def test_hrfpn_levels_have_the_fpn_sizes(size):
    feats = branches(size=size, batch=2)
    hr = HRFPN([4, 8, 16, 32], channels=16, norm_layer=lambda c: torch.nn.GroupNorm(4, c))
    fpn = FPN([4, 8, 16, 32], channels=16)
    got, want = hr(feats), fpn(feats)
    assert list(got) == list(want) and hr.level_names == fpn.level_names
    assert hr.num_levels == fpn.num_levels == 5 and hr.out_channels == 16
    assert [t.shape for t in got.values()] == [t.shape for t in want.values()]


def test_hrnet_w18_small_with_hrfpn_trains(tiny_cfg, shapes_batch):
    with_backbone(tiny_cfg, "hrnet_w18_small")
    torch.manual_seed(0)
    model = build_model(tiny_cfg).train()
    assert isinstance(model.backbone.neck, HRFPN)
    assert model.backbone.body.out_channels == [16, 32, 64, 128]  # raw branches
    losses = model(*shapes_batch)
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    stem_grad = model.backbone.body.model.conv1.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    with torch.no_grad():
        out = model.eval()([torch.zeros(3, 96, 128, dtype=torch.uint8)])
    assert out[0]["masks"].shape[1:] == (1, 28, 28)


def test_hrnet_w32_hrfpn_features():
    features = build_features(ModelConfig(
        backbone=BackboneConfig(name="timm:hrnet_w32", kwargs={"feature_location": ""}),
        neck=NeckConfig(type="hrfpn", channels=32)))
    assert features.body.out_channels == [32, 64, 128, 256]
    with torch.no_grad():
        out = features.eval()(torch.rand(1, 3, 64, 96))
    assert [tuple(t.shape) for t in out.values()] == [
        (1, 32, 16, 24), (1, 32, 8, 12), (1, 32, 4, 6), (1, 32, 2, 3), (1, 32, 1, 2)]


@pytest.mark.parametrize("case,composite", [("resnet18", False), ("swin_t", False),
                                            ("convnext_t", True)])
def test_hrfpn_needs_branches(tiny_cfg, case, composite):
    with_backbone(tiny_cfg, case, composite=composite)
    tiny_cfg.model.neck.type = "hrfpn"
    with pytest.raises(ConfigError) as err:
        build_model(tiny_cfg)
    assert str(err.value).startswith("model.neck.type 'hrfpn' needs a backbone with "
                                     "multi-resolution branches")
    assert "\n" not in str(err.value)
