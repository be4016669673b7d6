"""Turn a detector's outputs into COCO results at full resolution, and load a checkpoint.

The prediction loop itself is ``vipseg.engine.predict.predict_dataset``.

The model (see docs/architecture.md, "Model") returns per image ``boxes`` [K, 4] XYXY in the
resized input's pixels, ``labels`` [K] in 0..C-1, ``scores`` [K] and soft ``masks`` [K, 1, M, M]
per box. Here boxes are mapped back to the original image (divided by the transform's
``scale_factor``), and masks are pasted at the original resolution and RLE-encoded in chunks:
each mask is resized only inside its own box, a chunk of ``paste_chunk`` binary uint8 masks is
the largest full-size buffer, so memory stays bounded however many detections an image has.
The paste follows detectron2's ``paste_masks_in_image`` (continuous box coordinates, bilinear
sampling at pixel centres), the inverse of the aligned mask targets; torchvision's paste (integer
boxes after a 1-pixel expansion) loses much of a small mask: on the demo's people a perfect
28x28 mask head pasted that way reaches mask AP 0.30, pasted this way 0.98
(``benchmarks/mask_roundtrip.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vipseg.data.masks import encode_many
from vipseg.engine.checkpoint import checkpoint_weights, load_checkpoint, load_weights
from vipseg.errors import DataError
from vipseg.models.build import build_model

EPS = 1e-6  # pixels: the least box side a mask is stretched over
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def paste_masks_to_rles(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                        *, mask_thresh: float = 0.5, chunk: int = 16) -> list[dict]:
    """Paste soft masks [K, 1, M, M] into boxes [K, 4] (XYXY, original-image pixels) on an
    image of ``image_size`` (H, W); threshold at ``mask_thresh`` and RLE-encode (str counts).

    Coordinates are continuous (pixel ``i`` spans ``[i, i + 1)``), as detectron2's
    ``paste_masks_in_image``: mask cell ``j`` of a box ``[x0, x1)`` spans ``x0 + j (x1 - x0) / M``
    to ``x0 + (j + 1) (x1 - x0) / M``, and each image pixel takes the mask's bilinear value at
    its centre (zero beyond the mask's edge cells' centres, fading to the box edge), so a box
    need not fall on pixel boundaries. This inverts the aligned mask targets
    (:func:`vipseg.models.mask_targets.mask_targets`): a mask cropped from an instance and
    pasted back gives the instance again. Only pixels within a box (and one pixel beyond)
    are computed, and never more than ``chunk`` full-size uint8 masks are held.
    """
    if chunk < 1:
        raise ValueError(f"paste chunk must be >= 1, got {chunk}")
    if len(masks) == 0:
        return []
    h, w = int(image_size[0]), int(image_size[1])
    soft = masks.float()
    coords = boxes.float().cpu().tolist()
    rles: list[dict] = []
    for start in range(0, len(soft), chunk):
        n = min(chunk, len(soft) - start)
        # Fortran [H, W, n]: what pycocotools encodes, so encode_many makes no copy of it.
        canvas = np.zeros((h, w, n), dtype=np.uint8, order="F")
        for j in range(n):
            local, (x0, y0) = paste_one(soft[start + j], coords[start + j], h, w)
            if local is not None:
                canvas[y0:y0 + local.shape[0], x0:x0 + local.shape[1], j] = (
                    (local > mask_thresh).cpu().numpy())
        rles.extend(encode_many(canvas.transpose(2, 0, 1)))
    return rles


def paste_one(mask: torch.Tensor, box: Sequence[float], h: int, w: int
              ) -> tuple[torch.Tensor | None, tuple[int, int]]:
    """One soft mask [1, M, M] resampled onto the image pixels around ``box`` (x0, y0, x1, y1):
    (values [h', w'], (x, y) of its top-left pixel), or (None, (0, 0)) when the box misses
    the image. See :func:`paste_masks_to_rles` for the coordinates."""
    x0, y0, x1, y1 = box
    px0, py0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
    px1, py1 = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
    if px1 <= px0 or py1 <= py0:
        return None, (0, 0)
    dev = mask.device
    xs = (torch.arange(px0, px1, device=dev, dtype=torch.float32) + 0.5 - x0) / max(x1 - x0, EPS)
    ys = (torch.arange(py0, py1, device=dev, dtype=torch.float32) + 0.5 - y0) / max(y1 - y0, EPS)
    gx, gy = torch.broadcast_tensors(xs[None, :] * 2 - 1, ys[:, None] * 2 - 1)
    grid = torch.stack([gx, gy], dim=-1)[None]
    local = F.grid_sample(mask[None], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)[0, 0]
    return local, (px0, py0)


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
