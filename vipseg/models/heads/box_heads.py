"""RoI box heads: a ConvFC feature head and the classification/regression predictor.

:class:`ConvFCBoxHead` covers the box heads the reference configs use: "shared 2 FC"
(``num_convs=0, num_fcs=2``), "4 conv + 1 FC" (``num_convs=4, num_fcs=1``) and "2 shared conv
+ 2 shared FC" (``num_convs=2, num_fcs=2``), each with an optional norm (GN) and weight-
standardised convs. :class:`BoxPredictor` turns its features into class logits (layout
decided by the :class:`~vipseg.models.losses.ClsLoss`) and box deltas.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vipseg.models.layers import conv_norm_act, xavier_fill
from vipseg.models.losses import ClsLoss
from vipseg.models.norms import NormFactory

COSINE_EPS = 1e-6  # added to the norms of the normalised-linear classifier


class ConvFCBoxHead(nn.Module):
    """``num_convs`` 3x3 conv-norm-ReLU of ``conv_channels``, flatten, ``num_fcs`` FC-ReLU of
    ``fc_dim``.

    forward: RoI features [R, in_channels, pool_size, pool_size] (and, with ``pixel_channels``
    > 0, ``pixels`` [R, 3, 2 pool_size, 2 pool_size]: the input image around each RoI) ->
    [R, out_features], where ``out_features`` is ``fc_dim`` (or the flattened size when
    ``num_fcs == 0``). The pixels pass through a 3x3 conv-norm-ReLU and a stride-2 one of
    ``pixel_channels`` and join the conv features as extra channels before the FCs. FCs have
    no norm (as detectron2/mmdetection); convs are MSRA-, FCs Xavier-filled.
    """

    def __init__(self, *, in_channels: int, pool_size: int = 7, num_convs: int, conv_channels: int,
                 num_fcs: int, fc_dim: int, norm_layer: Optional[NormFactory] = None,
                 ws: bool = False, pixel_channels: int = 0) -> None:
        super().__init__()
        if num_convs + num_fcs == 0:
            raise ValueError("a box head needs at least one conv or FC layer")
        channels = in_channels
        convs = []
        for _ in range(num_convs):
            convs.append(conv_norm_act(channels, conv_channels, norm_layer=norm_layer, ws=ws))
            channels = conv_channels
        self.convs = nn.Sequential(*convs)
        self.pixel_channels = pixel_channels
        self.pixel_convs = None
        if pixel_channels > 0:
            self.pixel_convs = nn.Sequential(
                conv_norm_act(3, pixel_channels, norm_layer=norm_layer, ws=ws),
                conv_norm_act(pixel_channels, pixel_channels, stride=2, norm_layer=norm_layer,
                              ws=ws))
        features = (channels + pixel_channels) * pool_size * pool_size
        fcs: list[nn.Module] = []
        for _ in range(num_fcs):
            fc = nn.Linear(features, fc_dim)
            xavier_fill(fc)
            fcs += [fc, nn.ReLU(inplace=True)]
            features = fc_dim
        self.fcs = nn.Sequential(*fcs)
        self.out_features = features

    def forward(self, x: torch.Tensor, pixels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (pixels is not None) != (self.pixel_convs is not None):
            raise ValueError("pixels must be given exactly when the head has pixel_channels")
        x = self.convs(x)
        if self.pixel_convs is not None:
            x = torch.cat([x, self.pixel_convs(pixels)], dim=1)
        return self.fcs(x.flatten(1))


class CosineLinear(nn.Linear):
    """Normalised-linear classifier: ``scale * <x / |x|, w / |w|> + b`` (mmdetection's
    ``NormedLinear`` with temperature ``scale``). [R, in_features] -> [R, out_features]."""

    def __init__(self, in_features: int, out_features: int, *, scale: float) -> None:
        super().__init__(in_features, out_features)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (x.norm(dim=1, keepdim=True) + COSINE_EPS)
        w = self.weight / (self.weight.norm(dim=1, keepdim=True) + COSINE_EPS)
        return F.linear(x * self.scale, w, self.bias)


class BoxPredictor(nn.Module):
    """Class logits and box deltas from box-head features.

    forward: x [R, in_features] -> (logits [R, cls_loss.num_outputs(num_classes)], deltas
    [R, 4] if ``class_agnostic`` else [R, 4 * (num_classes + 1)], column block k for class k,
    block 0 the background's, unused). ``num_classes`` counts the foreground classes. The
    classifier is a :class:`CosineLinear` of ``cls_loss.scale`` when ``cls_loss.cosine``,
    else linear. Initialisation as detectron2: classifier weights N(0, 0.01), deltas
    N(0, 0.001), biases 0.
    """

    def __init__(self, *, in_features: int, num_classes: int, class_agnostic: bool,
                 cls_loss: ClsLoss) -> None:
        super().__init__()
        outputs = cls_loss.num_outputs(num_classes)
        if cls_loss.cosine:
            self.cls_score: nn.Linear = CosineLinear(in_features, outputs, scale=cls_loss.scale)
        else:
            self.cls_score = nn.Linear(in_features, outputs)
        self.bbox_pred = nn.Linear(in_features, 4 if class_agnostic else 4 * (num_classes + 1))
        self.class_agnostic = class_agnostic
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)
