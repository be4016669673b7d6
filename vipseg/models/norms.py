"""Normalisation layers by name, for training from scratch.

``BN`` and ``SyncBN`` both build ``nn.BatchNorm2d`` (the trainer converts every BatchNorm to
``SyncBatchNorm`` under DDP), ``GN`` builds ``nn.GroupNorm`` with the largest group count
<= 32 that divides the channels, ``FrozenBN`` torchvision's ``FrozenBatchNorm2d`` (fixed
statistics and affine; only sensible with pretrained weights) and ``none`` no layer at all.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from vipseg.errors import ConfigError

NormFactory = Callable[[int], nn.Module]
NORMS = ("BN", "SyncBN", "GN", "FrozenBN", "none")


def group_count(channels: int, max_groups: int = 32) -> int:
    """Largest number of groups <= ``max_groups`` that divides ``channels``."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with :func:`group_count` groups."""
    return nn.GroupNorm(group_count(channels), channels)


def norm_factory(kind: str) -> Optional[NormFactory]:
    """``channels -> nn.Module`` for norm ``kind`` (see module doc); ``None`` for ``none``."""
    factories: dict[str, Optional[NormFactory]] = {
        "BN": nn.BatchNorm2d,
        "SyncBN": nn.BatchNorm2d,
        "GN": group_norm,
        "FrozenBN": FrozenBatchNorm2d,
        "none": None,
    }
    if kind not in factories:
        raise ConfigError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")
    return factories[kind]

