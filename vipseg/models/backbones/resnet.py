"""torchvision ResNet as a multi-scale feature extractor, initialised from scratch.

Stage ``i`` (1..4, torchvision's ``layer{i}``) has stride ``2 ** (i + 1)``: stage 1 is 1/4 of
the input, stage 4 is 1/32. The stem is ``conv1, bn1, relu, maxpool``; the network runs stage
by stage (:class:`~vipseg.models.backbones.stages.StagedBackbone`), so it can be checkpointed
per stage and composed (CBNetV2).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from torchvision.models import resnet

from vipseg.errors import ConfigError
from vipseg.models.backbones.stages import StagedBackbone
from vipseg.models.norms import NormFactory

RESNETS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}


class ResNetFeatures(StagedBackbone):
    """Stem and stages of a torchvision ResNet; returns the stages in ``out_indices``.

    Args:
        depth_name: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        norm_layer: ``channels -> module`` used for every norm of the network.
        out_indices: stages to return, 1..4 (stride ``2 ** (i + 1)``).
        zero_init_residual: start each residual block's last norm at gamma 0 (the block is the
            identity at init, which helps from-scratch training); leave it off for frozen norms.
        checkpointing: checkpoint each stage in training (see ``StagedBackbone``).

    ``forward(x [B, 3, H, W]) -> OrderedDict`` of ``str(k) -> [B, C_k, H / s_k, W / s_k]`` in
    the order of ``out_indices``; ``out_channels`` lists the ``C_k``.
    """

    def __init__(self, *, depth_name: str, norm_layer: NormFactory,
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 zero_init_residual: bool = True, checkpointing: bool = False) -> None:
        if depth_name not in RESNETS:
            raise ConfigError(f"unknown backbone {depth_name!r}; expected one of "
                              f"{', '.join(RESNETS)} or timm:<name>")
        net = RESNETS[depth_name](weights=None, norm_layer=norm_layer,
                                  zero_init_residual=zero_init_residual)
        width = 512 if depth_name in ("resnet18", "resnet34") else 2048
        channels = [width >> (3 - k) for k in range(4)]
        super().__init__(stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
                         stages=[getattr(net, f"layer{i}") for i in range(1, 5)],
                         stage_channels=channels, stage_strides=[4, 8, 16, 32],
                         entry_channels=[net.conv1.out_channels, *channels[:3]],
                         split_stages=False, channels_last=False, out_indices=out_indices,
                         checkpointing=checkpointing, name=depth_name)
