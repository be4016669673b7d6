"""A detector that implements only the stage API (``extract_features``, ``detect``,
``predict_masks``) and is flip-equivariant by construction, for TTA and ensemble tests.

It finds the bright-red shapes of ``tests.helpers.make_shapes_dataset`` images: ``detect``
returns one box per 8-connected component of ``red > 170`` (pixel-exact [x0, y0, x1 + 1,
y1 + 1] boxes), label 1 (ball) when the component's mean red is above 220 else 0 (human),
score = the component's fill ratio of its box; ``predict_masks`` is RoIAlign (``aligned``,
so mirrored boxes sample mirrored points) of a smooth "redness" map, and ``mask_iou`` the
mean of each mask. Mirroring the image mirrors every output.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
import torch
from torchvision.ops import roi_align

from vipseg.models.detector import FeatureBatch


class StageDetector(torch.nn.Module):
    def __init__(self, mask_size: int = 14, with_mask_iou: bool = True) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device
        self.mask_size, self.with_mask_iou = mask_size, with_mask_iou

    def extract_features(self, images: list[torch.Tensor]) -> FeatureBatch:
        assert len(images) == 1, "one image per call keeps the map unpadded (flip-exact)"
        red = images[0].as_subclass(torch.Tensor)[0].float()
        return FeatureBatch(OrderedDict(red=red[None, None]), [tuple(red.shape)],
                            tuple(red.shape))

    def detect(self, features: FeatureBatch) -> list[dict]:
        red = features.maps["red"][0, 0].cpu().numpy()
        n, labels, stats, _ = cv2.connectedComponentsWithStats((red > 170).astype(np.uint8),
                                                               connectivity=8)
        boxes, classes, scores = [], [], []
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            boxes.append([x, y, x + w, y + h])
            classes.append(1 if red[labels == k].mean() > 220 else 0)
            scores.append(area / (w * h))
        dev = features.maps["red"].device
        return [{"boxes": torch.tensor(boxes, dtype=torch.float32, device=dev).reshape(-1, 4),
                 "labels": torch.tensor(classes, dtype=torch.int64, device=dev),
                 "scores": torch.tensor(scores, dtype=torch.float32, device=dev)}]

    def predict_masks(self, features: FeatureBatch, boxes: list[torch.Tensor],
                      labels: list[torch.Tensor]) -> list[dict]:
        redness = torch.sigmoid((features.maps["red"] - 170.0) / 10.0)
        out = []
        for b in boxes:
            rois = torch.cat([b.new_zeros((len(b), 1)), b.float()], 1)
            m = roi_align(redness, rois, self.mask_size, spatial_scale=1.0, sampling_ratio=2,
                          aligned=True)
            res = {"masks": m}
            if self.with_mask_iou:
                res["mask_iou"] = m.mean((1, 2, 3))
            out.append(res)
        return out

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        """Eval forward as the model contract: detect + predict_masks, scores x mask_iou."""
        outs = []
        for im in images:
            f = self.extract_features([im])
            det = self.detect(f)[0]
            m = self.predict_masks(f, [det["boxes"]], [det["labels"]])[0]
            det["masks"] = m["masks"]
            if "mask_iou" in m:
                det["scores"] = det["scores"] * m["mask_iou"]
            outs.append(det)
        return outs
