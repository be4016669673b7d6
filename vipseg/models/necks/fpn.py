"""Feature pyramid on top of any multi-scale backbone (torchvision ``FeaturePyramidNetwork``)."""

from __future__ import annotations

from typing import Optional, Sequence

from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vipseg.models.norms import NormFactory


class FPN(FeaturePyramidNetwork):
    """torchvision's FPN with one extra max-pooled level, and the attributes the heads read.

    Args:
        in_channels: channels of the ``L`` backbone maps, finest first.
        channels: output channels of every level.
        norm_layer: ``channels -> module`` after each conv, or ``None`` (convs with bias).

    ``forward(OrderedDict "0" .. str(L - 1) -> [B, C_k, h_k, w_k]) -> OrderedDict`` with keys
    ``"0" .. str(L - 1)`` and ``"pool"`` (stride of the last map x 2, size rounded up), each
    ``[B, channels, h, w]``; ``out_channels`` is ``channels``, ``level_names`` lists the keys
    of the non-pooled levels and ``num_levels`` counts all levels.
    """

    def __init__(self, in_channels: Sequence[int], *, channels: int = 256,
                 norm_layer: Optional[NormFactory] = None) -> None:
        super().__init__(list(in_channels), channels, extra_blocks=LastLevelMaxPool(),
                         norm_layer=norm_layer)
        self.out_channels = channels
        self.level_names = [str(i) for i in range(len(in_channels))]
        self.num_levels = len(self.level_names) + 1  # + the max-pooled level
