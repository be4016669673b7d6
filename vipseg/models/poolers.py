"""RoIAlign over a feature pyramid, with the half-pixel correction as an option.

:class:`PyramidRoIAlign` is torchvision's ``MultiScaleRoIAlign`` (same constructor, same level
assignment: level ``floor(4 + log2(sqrt(area) / 224))`` clamped to the pyramid, strides inferred
from the first batch as powers of two) plus ``aligned``:

- ``aligned=True`` (detectron2's ``ROIAlignV2``, vipseg's default): a box edge at continuous
  coordinate ``x`` lies at ``x`` on the feature map (pixel ``i`` covers ``[i, i + 1)`` and its
  centre is ``i + 0.5``), so features, mask targets (:func:`vipseg.models.mask_targets.mask_targets`
  with ``aligned=True``) and the paste of predicted masks
  (:func:`vipseg.engine.inference.paste_masks_to_rles`) all agree to the sub-pixel;
- ``aligned=False``: torchvision's sampling, shifted by half a feature cell (2 input pixels at
  stride 4), bit-equal to ``MultiScaleRoIAlign`` (tests/models/test_poolers.py).

Shapes: ``forward(x, boxes, image_shapes)`` with ``x`` an ordered mapping of level name ->
[B, C, H_l, W_l], ``boxes`` a list of [R_i, 4] XYXY input pixels per image and ``image_shapes``
the (H, W) of each image; returns [sum R_i, C, S, S].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align

LEVEL_EPS = 1e-6  # torchvision's LevelMapper epsilon


class PyramidRoIAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` with ``aligned`` (module doc). ``featmap_names``: the levels
    pooled, finest first; ``output_size``: S (or (S, S)); ``sampling_ratio``: samples per bin
    side (0 = adaptive)."""

    def __init__(self, featmap_names: Sequence[str], output_size: int | tuple[int, int],
                 sampling_ratio: int, *, aligned: bool = True, canonical_scale: int = 224,
                 canonical_level: int = 4) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio,
                         canonical_scale=canonical_scale, canonical_level=canonical_level)
        self.aligned = aligned

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, aligned={self.aligned}"

    def _level_scales(self, feats: list[Tensor], image_shapes: list[tuple[int, int]]
                      ) -> list[float]:
        """1 / stride of every level: feature size over the largest image, rounded to 2^k."""
        size = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = []
        for f in feats:
            approx = [2.0 ** round(math.log2(a / b)) for a, b in zip(f.shape[-2:], size)]
            if approx[0] != approx[1]:
                raise ValueError(f"RoIAlign: feature map {tuple(f.shape[-2:])} is not one "
                                 f"power-of-two stride of the images {size}")
            scales.append(approx[0])
        return scales

    def _levels(self, boxes: Tensor) -> Tensor:
        """Pyramid index (0 = finest pooled level) of every box [R, 4]."""
        k_min = -math.log2(self.scales[0])
        k_max = -math.log2(self.scales[-1])
        side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        level = torch.floor(self.canonical_level + torch.log2(side / self.canonical_scale)
                            + torch.tensor(LEVEL_EPS, dtype=side.dtype))
        return (level.clamp(min=k_min, max=k_max) - k_min).to(torch.int64)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = [x[name] for name in self.featmap_names]
        if self.scales is None:
            self.scales = self._level_scales(feats, image_shapes)
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1)
                          for i, b in enumerate(boxes)])
        out_size = tuple(self.output_size)
        if len(feats) == 1:
            return roi_align(feats[0], rois, out_size, self.scales[0], self.sampling_ratio,
                             self.aligned)
        levels = self._levels(rois[:, 1:])
        result = feats[0].new_zeros((len(rois), feats[0].shape[1], *out_size))
        for k, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == k)[0]
            pooled = roi_align(feat, rois[idx], out_size, scale, self.sampling_ratio, self.aligned)
            result[idx] = pooled.to(result.dtype)  # autocast may give levels other dtypes
        return result
