"""Backbones run stage by stage: a stem, then stages, with optional activation checkpointing.

:class:`StagedBackbone` holds a network as ``stem`` + ``stages`` (torchvision ResNet's
``conv1..maxpool`` + ``layer1..4``; timm Swin's ``patch_embed`` + ``layers``; timm ConvNeXt
and ConvNeXt-V2's ``stem`` + ``stages``), so that a composite backbone (CBNetV2,
:mod:`vipseg.models.backbones.composite`) can add features before each stage and each stage
can be checkpointed on its own. No timm code is copied: the modules timm built are called in
the order of timm's own ``forward_features``, read from the model's structure:

- ``stem(x [B, 3, H, W])`` -> the first stage's input, in the network's layout;
- stage ``i`` = ``entry_i`` then ``body_i``. For timm stages (``downsample`` then ``blocks``,
  exactly what timm's stage ``forward`` runs) the entry is the downsampling and the body the
  blocks; for ResNet the entry is the identity and the body the whole ``layer{i}`` (its first
  block downsamples). A composite backbone adds its features between the two: at the entry's
  output ``[B, entry_channels[i], h_i, w_i]``.

Layouts: Swin keeps ``NHWC`` between stages (``channels_last``); :meth:`to_nchw` and
:meth:`from_nchw` convert. Outputs are always ``NCHW``.

Checkpointing (``checkpointing=True``): in training with gradients enabled each stage runs
under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``, so only stage inputs are
kept and a stage's activations are recomputed during backward (RNG state restored: drop path
draws the same masks). The stem is not checkpointed. BatchNorm layers inside a checkpointed
stage see the recomputation as a second forward and update their running statistics twice per
step (losses and gradients are unchanged); GroupNorm and LayerNorm have no such state.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from vipseg.errors import ConfigError


def run_maybe_checkpointed(enabled: bool, fn: Callable[..., torch.Tensor],
                           *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, under non-reentrant activation checkpointing when ``enabled`` and a
    backward pass can follow (gradients enabled)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class StagedBackbone(nn.Module):
    """``stem`` + ``stages`` run one by one (module doc); returns the stages in ``out_indices``.

    Args:
        stem: input ``[B, 3, H, W]`` -> stage 0's input (network layout).
        stages: the stages in order; stage ``i`` (0-based) is out index ``i + 1``.
        stage_channels: output channels of each stage.
        stage_strides: output stride of each stage (input pixels per output pixel).
        entry_channels: channels at each stage's entry output (module doc).
        split_stages: stages have ``downsample`` and ``blocks`` (timm) rather than being one
            module whose input is the entry point (ResNet).
        channels_last: stages exchange ``NHWC`` tensors (timm Swin).
        out_indices: stages to return, ``i`` -> stride ``2 ** (i + 1)`` (1..4 = 1/4..1/32);
            stages after the last one are dropped.
        checkpointing: checkpoint each stage in training (module doc).
        name: how config errors name the network.

    ``forward(x [B, 3, H, W]) -> OrderedDict`` of ``str(k) -> [B, C_k, H / s_k, W / s_k]``
    (sizes rounded up) in the order of ``out_indices``; ``out_channels`` lists the ``C_k``.
    """

    def __init__(self, *, stem: nn.Module, stages: Sequence[nn.Module],
                 stage_channels: Sequence[int], stage_strides: Sequence[int],
                 entry_channels: Sequence[int], split_stages: bool, channels_last: bool,
                 out_indices: Sequence[int], checkpointing: bool, name: str) -> None:
        super().__init__()
        have = [s.bit_length() - 2 for s in stage_strides]  # stride 2^(i+1) -> i
        if not out_indices or any(i not in have for i in out_indices):
            raise ConfigError(f"model.backbone.out_indices {list(out_indices)}: {name!r} has "
                              f"stages {have} (stage i has stride 2^(i+1))")
        picked = [have.index(i) for i in out_indices]
        keep = max(picked) + 1
        self.stem: Optional[nn.Module] = stem
        self.stages = nn.ModuleList(list(stages)[:keep])
        self.stage_channels = list(stage_channels[:keep])
        self.stage_strides = list(stage_strides[:keep])
        self.entry_channels = list(entry_channels[:keep])
        self.split_stages = split_stages
        self.channels_last = channels_last
        self.picked = picked
        self.out_channels = [self.stage_channels[p] for p in picked]
        self.checkpointing = checkpointing
        self.name = name

    # ------------------------------------------------------------------------------ layouts
    def to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor in the network's layout as ``[B, C, h, w]``."""
        return x.permute(0, 3, 1, 2) if self.channels_last else x

    def from_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` in the network's layout."""
        return x.permute(0, 2, 3, 1) if self.channels_last else x

    # ------------------------------------------------------------------------------- stages
    def entry(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i``'s entry (downsampling for timm stages, identity for ResNet)."""
        return self.stages[i].downsample(x) if self.split_stages else x

    def body(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` after its entry."""
        return self.stages[i].blocks(x) if self.split_stages else self.stages[i](x)

    def run_stage(self, i: int, x: torch.Tensor,
                  add: Optional[Callable[..., torch.Tensor]] = None,
                  *sources: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` on ``x`` (network layout); with ``add``, ``add(entry_out, *sources)``
        (network layout, same shape) is added between entry and body. Checkpointed as one
        unit when ``checkpointing`` is on and the module is training."""
        def stage(x: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
            if add is None:
                return self.stages[i](x)
            e = self.entry(i, x)
            return self.body(i, e + add(e, *sources))
        return run_maybe_checkpointed(self.checkpointing and self.training, stage, x, *sources)

    def run_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every kept stage's output (network layout), from the stem's output ``x``."""
        outs = []
        for i in range(len(self.stages)):
            x = self.run_stage(i, x)
            outs.append(x)
        return outs

    def select(self, stage_outputs: Sequence[torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        """The ``out_indices`` stages of ``stage_outputs`` as contiguous NCHW, keyed ``"0"..``."""
        return OrderedDict((str(k), self.to_nchw(stage_outputs[p]).contiguous())
                           for k, p in enumerate(self.picked))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        if self.stem is None:
            raise RuntimeError(f"{self.name}: this copy has no stem (a composite lead)")
        return self.select(self.run_stages(self.stem(x)))
