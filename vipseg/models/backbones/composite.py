"""CBNetV2 composite backbones: assisting copies of a backbone feeding a lead copy.

``copies`` identical networks (:class:`~vipseg.models.backbones.stages.StagedBackbone`, each
with its own weights) run in a chain. The first runs alone from its stem. Every later copy has
no stem (CBNetV2 "deletes stage 1"): it starts from the first copy's stem output, and before
its stage ``i`` (at the stage's entry, see ``StagedBackbone``) it adds the dense higher-level
composition (DHLC) of the previous copy::

    x_i <- entry_i(x_{i-1}) + sum_{j >= i} up(norm(conv1x1(prev_j)))

where ``prev_j`` is the previous copy's stage-``j`` output, ``conv1x1`` maps its channels to
the entry's, ``norm`` is the backbone's norm and ``up`` is nearest resizing to the entry's
size. Each projection's norm (or, without a norm, the conv) starts at zero, so at step 0 the
later copies equal their plain stages run on the first copy's stem output (CBNetV2's
``cb_zero_init``). The last copy is the lead; the others assist. This is CBNetV2's
``CBResNet`` with ``cb_del_stages=0`` and its ``CBSwinTransformer`` (there the composition is
added after patch merging, as here for every timm stage), with the ResNet version's
conv + norm projections for every backbone.

Training: ``forward`` returns a list of out_indices dicts ``[lead, assisting...]`` (the
assisting copies from the one nearest the lead back to the first), all with the same keys and
shapes; evaluation returns only the lead's dict (assisting copies run, since the lead needs
them, but their maps are not returned). With ``checkpointing`` each stage of each copy,
composition included, is checkpointed as one unit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.backbones.stages import StagedBackbone
from vipseg.models.norms import NormFactory


def _projection(in_ch: int, out_ch: int, norm_layer: Optional[NormFactory]) -> nn.Module:
    """1x1 conv (+ norm) whose output starts at zero (module doc)."""
    conv = nn.Conv2d(in_ch, out_ch, 1, bias=norm_layer is None)
    if norm_layer is None:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv
    norm = norm_layer(out_ch)
    nn.init.zeros_(norm.weight)
    nn.init.zeros_(norm.bias)
    return nn.Sequential(conv, norm)


class Composition(nn.Module):
    """DHLC projections into one copy: ``proj[i][j - i]`` maps the previous copy's stage ``j``
    to stage ``i``'s entry channels.

    Args:
        stage_channels: output channels of each stage of the previous copy.
        entry_channels: channels at each stage's entry of the receiving copy.
        norm_layer: norm after each 1x1 conv, or ``None``.
    """

    def __init__(self, stage_channels: Sequence[int], entry_channels: Sequence[int],
                 norm_layer: Optional[NormFactory]) -> None:
        super().__init__()
        n = len(stage_channels)
        self.proj = nn.ModuleList([
            nn.ModuleList([_projection(stage_channels[j], entry_channels[i], norm_layer)
                           for j in range(i, n)])
            for i in range(n)])

    def feed(self, i: int, net: StagedBackbone, entry: torch.Tensor,
             *prev: torch.Tensor) -> torch.Tensor:
        """What stage ``i`` of ``net`` adds to its entry output ``entry`` (network layout),
        from the previous copy's stage outputs ``prev[j - i]`` for ``j >= i`` (network
        layout): same shape as ``entry``."""
        size = net.to_nchw(entry).shape[-2:]
        total = None
        for proj, p in zip(self.proj[i], prev):
            y = proj(net.to_nchw(p))
            y = F.interpolate(y, size=size, mode="nearest") if y.shape[-2:] != size else y
            total = y if total is None else total + y
        return net.from_nchw(total)


class CompositeBackbone(nn.Module):
    """``copies`` chained backbones, CBNetV2-style (module doc).

    Args:
        nets: the copies, built identically (fresh weights each); the first is the first
            assisting copy, the last the lead. The stems of all but the first are removed.
        norm_layer: norm of the composition projections, or ``None``.

    ``forward(x [B, 3, H, W])``: training -> ``[lead_dict, assisting dicts...]``; evaluation ->
    ``lead_dict``; each dict as the plain backbone's. ``out_channels`` as the plain backbone's;
    ``num_assisting`` = ``copies - 1``.
    """

    def __init__(self, nets: Sequence[StagedBackbone],
                 norm_layer: Optional[NormFactory]) -> None:
        super().__init__()
        if len(nets) < 2:
            raise ValueError("a composite backbone needs at least two copies")
        for net in nets[1:]:
            net.stem = None
        self.nets = nn.ModuleList(nets)
        first = nets[0]
        self.compositions = nn.ModuleList([
            Composition(first.stage_channels, first.entry_channels, norm_layer)
            for _ in nets[1:]])
        self.out_channels = list(first.out_channels)
        self.num_assisting = len(nets) - 1
        self.branches = False

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first copy's stem output, shared by every copy."""
        return self.nets[0].stem(x)

    def run_composed(self, k: int, start: torch.Tensor,
                     prev: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Stage outputs of copy ``k >= 1`` from the stem output ``start`` and the previous
        copy's stage outputs ``prev`` (network layout)."""
        net, comp = self.nets[k], self.compositions[k - 1]
        x, outs = start, []
        for i in range(len(net.stages)):
            x = net.run_stage(i, x, lambda e, *p, i=i: comp.feed(i, net, e, *p), *prev[i:])
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> Union["OrderedDict[str, torch.Tensor]",
                                               list["OrderedDict[str, torch.Tensor]"]]:
        start = self.stem(x)
        outs = [self.nets[0].run_stages(start)]
        for k in range(1, len(self.nets)):
            outs.append(self.run_composed(k, start, outs[-1]))
        if not self.training:
            return self.nets[-1].select(outs[-1])
        return [net.select(o) for net, o in zip(self.nets[::-1], outs[::-1])]
