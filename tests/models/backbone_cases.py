"""Tiny backbones shared by the backbone, composite and HRFPN tests, and a no-download guard.

Each case is a ``model.backbone`` of the tiny CPU config, shrunk through timm kwargs so that a
training step takes well under a second on one core: ResNet-18 (torchvision, as is), Swin-T
and ConvNeXt-T with small widths and depths, HRNet-W18-small with its raw branches.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import timm.models._builder

from vipseg.config.schema import BackboneConfig, CompositeConfig, Config

TINY_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet18": {"name": "resnet18"},
    "swin_t": {"name": "timm:swin_tiny_patch4_window7_224",
               "kwargs": {"embed_dim": 24, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 3, 6]}},
    "convnext_t": {"name": "timm:convnext_tiny",
                   "kwargs": {"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}},
    "hrnet_w18_small": {"name": "timm:hrnet_w18_small", "kwargs": {"feature_location": ""}},
}
# Channels of strides 4, 8, 16, 32 of each case.
CHANNELS = {"resnet18": [64, 128, 256, 512], "swin_t": [24, 48, 96, 192],
            "convnext_t": [16, 32, 64, 128], "hrnet_w18_small": [16, 32, 64, 128]}
STAGED = ("resnet18", "swin_t", "convnext_t")  # split into stem + stages (composable)


def backbone_cfg(case: str, *, composite: bool = False, **changes: Any) -> BackboneConfig:
    """The ``model.backbone`` of ``case`` (GN norms), optionally composite (2 copies)."""
    spec = copy.deepcopy(TINY_BACKBONES[case])
    return BackboneConfig(**spec, norm="GN", composite=CompositeConfig() if composite else None,
                          **changes)


def with_backbone(cfg: Config, case: str, **kwargs: Any) -> Config:
    """``cfg`` (the tiny config) with the backbone of ``case``; HRNet gets the HRFPN neck."""
    cfg.model.backbone = backbone_cfg(case, **kwargs)
    if case.startswith("hrnet"):
        cfg.model.neck.type = "hrfpn"
    return cfg


@pytest.fixture
def no_downloads(monkeypatch):
    """Fail the test if timm tries to load pretrained weights."""
    def refuse(*args, **kwargs):
        raise AssertionError("a pretrained weight download was attempted")
    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
