"""Backbones and norms: ResNet with every norm, timm backbones adapted to the FPN (stem + stages
or features_only), activation checkpointing, no downloads."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

import vipseg.models.backbones.stages as stages_module
from tests.models.backbone_cases import (CHANNELS, STAGED, TINY_BACKBONES, backbone_cfg,
                                         no_downloads, with_backbone)  # noqa: F401 (fixture)
from vipseg.config.schema import BackboneConfig
from vipseg.errors import ConfigError
from vipseg.models.backbones.stages import StagedBackbone
from vipseg.models.backbones.timm_features import TimmFeatures
from vipseg.models.build import build_model
from vipseg.models.features import build_backbone
from vipseg.models.necks.fpn import FPN
from vipseg.models.norms import group_count

pytestmark = pytest.mark.usefixtures("no_downloads")
NORM_TYPES = {"BN": nn.BatchNorm2d, "SyncBN": nn.BatchNorm2d, "GN": nn.GroupNorm,
              "FrozenBN": FrozenBatchNorm2d}


def norm_types(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, tuple(NORM_TYPES.values()))}


def test_group_count_divides_channels():
    assert [group_count(c) for c in (256, 96, 48, 24, 7)] == [32, 32, 24, 24, 7]


@pytest.mark.parametrize("norm", sorted(NORM_TYPES))
def test_each_norm_builds_and_trains(tiny_cfg, shapes_batch, norm):
    tiny_cfg.model.backbone.norm = norm
    tiny_cfg.model.neck.norm = norm
    model = build_model(tiny_cfg).train()
    for part in (model.backbone.body, model.backbone.neck):
        assert norm_types(part) == {NORM_TYPES[norm]}, part.__class__.__name__
    losses = model(*shapes_batch)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_norm_none_for_neck_and_zero_init(tiny_cfg):
    tiny_cfg.model.neck.norm = "none"
    model = build_model(tiny_cfg)
    assert norm_types(model.backbone.neck) == set()
    # Each residual block's last norm starts at gamma 0 (identity blocks at init).
    assert all(torch.all(block.bn2.weight == 0) for stage in model.backbone.body.stages
               for block in stage)
    tiny_cfg.model.backbone.norm = "none"
    with pytest.raises(ConfigError, match="ResNet backbones need a norm"):
        build_model(tiny_cfg)


@pytest.mark.parametrize("name,channels", [("resnet34", 512), ("resnet50", 2048),
                                           ("resnet101", 2048)])
def test_resnet_depths(name, channels):
    body = build_backbone(BackboneConfig(name=name, out_indices=[2, 4]))
    assert body.out_channels == [channels // 4, channels]
    assert len(body.stages) == 4  # stages up to the last one returned
    feats = body(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[2:]) for f in feats.values()] == [(8, 12), (2, 3)]
    body = build_backbone(BackboneConfig(name=name, out_indices=[1, 2]))
    assert len(body.stages) == 2


def test_bad_backbone_names(tiny_cfg):
    tiny_cfg.model.backbone.name = "resnet9"
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9'"):
        build_model(tiny_cfg)
    tiny_cfg.model.backbone.name = "resnet18"
    tiny_cfg.model.backbone.drop_path_rate = 0.1
    with pytest.raises(ConfigError, match="drop_path_rate 0.1: only timm backbones"):
        build_model(tiny_cfg)
    tiny_cfg.model.backbone.drop_path_rate = 0.0
    tiny_cfg.model.backbone.name = "timm:no_such_model"
    with pytest.raises(ConfigError, match="timm has no model 'no_such_model'"):
        build_model(tiny_cfg)
    for name in ("convnext_atto", "resnet18"):  # stem + stages, features_only
        tiny_cfg.model.backbone.name = f"timm:{name}"
        tiny_cfg.model.backbone.kwargs = {"no_such_option": 1}
        with pytest.raises(ConfigError, match=f"'{name}' rejects the arguments"):
            build_model(tiny_cfg)
        tiny_cfg.model.backbone.kwargs = {}
        tiny_cfg.model.backbone.out_indices = [1, 5]
        with pytest.raises(ConfigError,
                           match=r"^model.backbone.out_indices\[1\] must be in \[1, 4\], got 5$"):
            build_model(tiny_cfg)  # the config's range table, before any model is built
        tiny_cfg.model.backbone.out_indices = [1, 2, 3, 4]
    # a stage the timm model lacks (reachable for models with fewer stages; here called
    # directly, past the config's range)
    with pytest.raises(ConfigError, match=r"'resnet18' has stages \[0, 1, 2, 3, 4\]"):
        TimmFeatures(model_name="resnet18", out_indices=[1, 5])


# (timm name, channels of strides 4..32, how vipseg runs it). Inputs are multiples of 32 as
# the detector pads them, but not multiples of Swin's 7x7 windows (x 4 px patches).
TIMM_BACKBONES = [
    ("swin_tiny_patch4_window7_224", [96, 192, 384, 768], StagedBackbone),
    ("swin_small_patch4_window7_224", [96, 192, 384, 768], StagedBackbone),
    ("swin_base_patch4_window7_224", [128, 256, 512, 1024], StagedBackbone),
    ("convnext_tiny", [96, 192, 384, 768], StagedBackbone),
    ("convnext_base", [128, 256, 512, 1024], StagedBackbone),
    ("convnextv2_tiny", [96, 192, 384, 768], StagedBackbone),
    ("hrnet_w32", [128, 256, 512, 1024], TimmFeatures),
]


@pytest.mark.parametrize("name,channels,kind", TIMM_BACKBONES)
def test_timm_backbone_feeds_fpn(name, channels, kind):
    body = build_backbone(BackboneConfig(name=f"timm:{name}", norm="GN"))
    assert type(body) is kind
    assert body.out_channels == channels
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    neck = FPN(body.out_channels, channels=32).eval()
    with torch.no_grad():
        feats = neck(body.eval()(torch.rand(1, 3, 96, 160)))
    assert list(feats) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape) for f in feats.values()] == [
        (1, 32, 24, 40), (1, 32, 12, 20), (1, 32, 6, 10), (1, 32, 3, 5), (1, 32, 2, 3)]


def test_staged_timm_equals_timm_forward():
    """Running the stem and stages one by one is timm's own forward (before the final norm)."""
    for name in ("convnext_atto", "swin_tiny_patch4_window7_224"):
        kw = {"strict_img_size": False} if name.startswith("swin") else {}
        torch.manual_seed(0)
        ref = timm.create_model(name, pretrained=False, num_classes=0, **kw).eval()
        torch.manual_seed(0)  # same draws: the same weights
        body = build_backbone(BackboneConfig(name=f"timm:{name}", norm="GN")).eval()
        x = torch.rand(1, 3, 96, 160)
        with torch.no_grad():
            want = ref.forward_intermediates(x, intermediates_only=True)
            got = list(body(x).values())
        assert len(got) == len(want) == 4
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w)


@pytest.mark.parametrize("case", sorted(TINY_BACKBONES))
def test_feature_shapes_and_strides(case):
    body = build_backbone(backbone_cfg(case))
    assert body.out_channels == CHANNELS[case]
    assert getattr(body, "branches", False) == case.startswith("hrnet")
    x = torch.rand(2, 3, 96, 160)
    feats = body.train()(x)
    assert list(feats) == ["0", "1", "2", "3"]
    for (key, f), c, stride in zip(feats.items(), CHANNELS[case], (4, 8, 16, 32)):
        assert f.shape == (2, c, 96 // stride, 160 // stride), key
        assert f.is_contiguous()
    if case in STAGED:
        assert body.stage_strides == [4, 8, 16, 32]


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


# ---------------------------------------------------------------------------- checkpointing
def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``fn()`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def train_step(model, batch, seed: int = 0) -> tuple[dict, dict]:
    """Losses and parameter gradients of one training step from RNG seed ``seed``."""
    torch.manual_seed(seed)
    model.zero_grad()
    losses = model(*batch)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize("case,composite", [("resnet18", False), ("swin_t", False),
                                            ("convnext_t", False), ("convnext_t", True)])
def test_checkpointing_gives_the_same_losses_and_gradients(tiny_cfg, shapes_batch, monkeypatch,
                                                           case, composite):
    with_backbone(tiny_cfg, case, composite=composite)
    if case == "swin_t":
        tiny_cfg.model.backbone.drop_path_rate = 0.2  # recomputation must redraw the same masks
    torch.manual_seed(0)
    plain = build_model(tiny_cfg).train()
    tiny_cfg.model.backbone.checkpointing = True
    ckpt = build_model(tiny_cfg).train()
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    real = stages_module.checkpoint
    monkeypatch.setattr(stages_module, "checkpoint",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    want_losses, want_grads = train_step(plain, shapes_batch)
    assert not calls
    got_losses, got_grads = train_step(ckpt, shapes_batch)
    stages = 4 * (2 if composite else 1)
    assert len(calls) == stages and all(k == {"use_reentrant": False} for k in calls)
    assert want_losses.keys() == got_losses.keys() and want_grads.keys() == got_grads.keys()
    for k in want_losses:
        torch.testing.assert_close(got_losses[k], want_losses[k], rtol=1e-5, atol=1e-6)
    for k in want_grads:
        torch.testing.assert_close(got_grads[k], want_grads[k], rtol=1e-4, atol=1e-6)
    # Fewer activations kept for backward (the point of it), and none of it in evaluation.
    x = torch.rand(1, 3, 128, 160)
    body_plain, body_ckpt = plain.backbone.body, ckpt.backbone.body
    assert saved_bytes(lambda: body_ckpt(x)) < 0.5 * saved_bytes(lambda: body_plain(x))
    calls.clear()
    with torch.no_grad():
        ckpt.eval()(shapes_batch[0])
    assert not calls


def test_checkpointing_needs_stages(tiny_cfg):
    with_backbone(tiny_cfg, "hrnet_w18_small", checkpointing=True)
    with pytest.raises(ConfigError) as err:
        build_model(tiny_cfg)
    message = str(err.value)
    assert message.startswith("model.backbone.checkpointing: timm model 'hrnet_w18_small' "
                              "cannot be split into stem + stages")
    assert "\n" not in message
