"""Turn a detector's outputs into COCO results at full resolution, and load a checkpoint.

The prediction loop itself is ``vipseg.engine.predict.predict_dataset``.

The model (see docs/architecture.md, "Model") returns per image ``boxes`` [K, 4] XYXY in the
resized input's pixels, ``labels`` [K] in 0..C-1, ``scores`` [K] and soft ``masks`` [K, 1, M, M]
per box. Here boxes are mapped back to the original image (divided by the transform's
``scale_factor``), and masks are pasted at the original resolution and RLE-encoded in chunks:
each mask is resized only inside its own box, a chunk of ``paste_chunk`` binary uint8 masks is
the largest full-size buffer, so memory stays bounded however many detections an image has.
The paste reproduces torchvision's ``paste_masks_in_image`` (1-pixel mask padding, box
expansion, bilinear resize) exactly, thresholded at ``mask_thresh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

from vipseg.data.masks import encode_many
from vipseg.engine.checkpoint import checkpoint_weights, load_checkpoint, load_weights
from vipseg.errors import DataError
from vipseg.models.build import build_model

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def paste_masks_to_rles(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                        *, mask_thresh: float = 0.5, chunk: int = 16) -> list[dict]:
    """Paste soft masks [K, 1, M, M] into boxes [K, 4] (XYXY, original-image pixels) on an
    image of ``image_size`` (H, W); threshold at ``mask_thresh`` and RLE-encode (str counts).

    Equals thresholding torchvision's ``paste_masks_in_image(masks, boxes, image_size)``, but
    never holds more than ``chunk`` full-size uint8 masks (no full-size float mask at all).
    """
    if chunk < 1:
        raise ValueError(f"paste chunk must be >= 1, got {chunk}")
    if len(masks) == 0:
        return []
    h, w = int(image_size[0]), int(image_size[1])
    padded, scale = expand_masks(masks.float(), padding=1)
    int_boxes = expand_boxes(boxes.float(), scale).to(torch.int64).tolist()
    rles: list[dict] = []
    for start in range(0, len(padded), chunk):
        n = min(chunk, len(padded) - start)
        # Fortran [H, W, n]: what pycocotools encodes, so encode_many makes no copy of it.
        canvas = np.zeros((h, w, n), dtype=np.uint8, order="F")
        for j in range(n):
            x0, y0, x1, y1 = int_boxes[start + j]
            cx0, cx1, cy0, cy1 = max(x0, 0), min(x1 + 1, w), max(y0, 0), min(y1 + 1, h)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            size = (max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1))
            local = F.interpolate(padded[start + j][None], size=size, mode="bilinear",
                                  align_corners=False)[0, 0]
            crop = local[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] > mask_thresh
            canvas[cy0:cy1, cx0:cx1, j] = crop.cpu().numpy()
        rles.extend(encode_many(canvas.transpose(2, 0, 1)))
    return rles


def output_to_results(output: dict[str, torch.Tensor], target: dict, category_ids: Sequence[Any],
                      *, mask_thresh: float = 0.5, score_thresh: float = 0.0,
                      paste_chunk: int = 16) -> list[dict]:
    """One image's model output → COCO results in original-image pixels.

    ``target`` carries ``image_id``, ``orig_size`` (H, W) and ``scale_factor`` (sy, sx) from
    ``TestTransform``; ``category_ids[label]`` is the file's category id of each label.
    Detections scoring below ``score_thresh`` are dropped. Boxes are clipped to the image.
    """
    keep = output["scores"] >= score_thresh
    scores = output["scores"][keep].float()
    labels = output["labels"][keep]
    h, w = (int(v) for v in target["orig_size"])
    sy, sx = (float(v) for v in target.get("scale_factor", (1.0, 1.0)))
    boxes = output["boxes"][keep].float()
    boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    rles = paste_masks_to_rles(output["masks"][keep], boxes, (h, w), mask_thresh=mask_thresh,
                               chunk=paste_chunk)
    results = []
    for box, label, score, rle in zip(boxes.tolist(), labels.tolist(), scores.tolist(), rles):
        results.append({"image_id": target["image_id"], "category_id": category_ids[label],
                        "segmentation": rle, "score": float(score),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    return results


def category_ids_of(dataset: Any, category_ids: Sequence[Any] | None = None) -> list[Any]:
    """``category_ids`` if given, else the file's category id of each of ``dataset.classes``;
    ``DataError`` if the file lacks one (pass ``category_ids`` for images-only files)."""
    if category_ids is not None:
        return list(category_ids)
    ids = [dataset.label_to_category_id(i) for i in range(len(dataset.classes))]
    missing = [c for c, i in zip(dataset.classes, ids) if i is None]
    if missing:
        raise DataError(f"{getattr(dataset, 'ann_file', 'dataset')}: no category id for classes "
                        f"{missing} (the file has no such categories); pass category_ids")
    return ids


def load_model(cfg: Any, checkpoint: str | Path, device: str | torch.device) -> torch.nn.Module:
    """``build_model(cfg)`` with the weights of ``checkpoint`` (loaded ``weights_only``; its EMA
    weights when it has them), in eval mode on ``device``; ``DataError`` if the weights do not
    fit the config's model."""
    model = build_model(cfg)
    load_weights(model, checkpoint_weights(load_checkpoint(checkpoint)), checkpoint)
    return model.to(device).eval()
