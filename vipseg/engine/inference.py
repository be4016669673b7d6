"""Run a detector over a dataset and turn its outputs into COCO results at full resolution.

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

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from tqdm import tqdm

from vipseg.data.dataset import collate
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


def _category_ids(dataset: Any, category_ids: Sequence[Any] | None) -> list[Any]:
    if category_ids is not None:
        return list(category_ids)
    ids = [dataset.label_to_category_id(i) for i in range(len(dataset.classes))]
    missing = [c for c, i in zip(dataset.classes, ids) if i is None]
    if missing:
        raise DataError(f"{getattr(dataset, 'ann_file', 'dataset')}: no category id for classes "
                        f"{missing} (the file has no such categories); pass category_ids")
    return ids


def _dist_info(distributed: bool) -> tuple[int, int]:
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.inference_mode()
def predict_dataset(model: torch.nn.Module, dataset: Any, *, device: str | torch.device,
                    mask_thresh: float = 0.5, score_thresh: float = 0.0, paste_chunk: int = 16,
                    batch_size: int = 1, num_workers: int = 0, amp: str = "none",
                    distributed: bool = False, progress: bool = True,
                    category_ids: Sequence[Any] | None = None) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, RLE ``segmentation``, ``score``, ``bbox``
    [x, y, w, h] float, original pixels) for every image of ``dataset`` (built with
    ``train=False``: items are ``(image [3, H, W] uint8, target)`` from ``TestTransform``).

    ``category_ids[label]`` overrides ``dataset.label_to_category_id(label)`` (for images-only
    files). ``amp``: ``none``, ``bf16`` or ``fp16`` autocast. With ``distributed`` (and
    torch.distributed initialised) rank r predicts images r, r + world, ... and every rank
    returns the full list, in dataset order. A DDP-wrapped model is run unwrapped.
    """
    if amp not in ("none", *AMP_DTYPES):
        raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
    device = torch.device(device)
    ids = _category_ids(dataset, category_ids)
    rank, world = _dist_info(distributed)
    indices = list(range(rank, len(dataset), world))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate)
    # A DDP wrapper would sync buffers in every forward, and shards may differ by one image.
    if isinstance(model, DistributedDataParallel):
        model = model.module
    was_training = model.training
    model.eval()
    autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp != "none"
                else contextlib.nullcontext())
    per_image: list[tuple[int, list[dict]]] = []
    bar = tqdm(total=len(indices), desc="predict", unit="img", disable=not progress or rank != 0,
               dynamic_ncols=True, leave=False)
    pos = 0
    for images, targets in loader:
        with autocast:
            outputs = model([im.to(device, non_blocking=True) for im in images])
        for out, tgt in zip(outputs, targets):
            per_image.append((indices[pos], output_to_results(
                out, tgt, ids, mask_thresh=mask_thresh, score_thresh=score_thresh,
                paste_chunk=paste_chunk)))
            pos += 1
        bar.update(len(images))
    bar.close()
    model.train(was_training)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, per_image)
        merged = {i: res for part in gathered for i, res in part}  # one entry per image
        per_image = sorted(merged.items())
    return [r for _, res in per_image for r in res]


def load_model(cfg: Any, checkpoint: str | Path, device: str | torch.device) -> torch.nn.Module:
    """``build_model(cfg)`` with the weights of ``checkpoint`` (loaded ``weights_only``; its EMA
    weights when it has them), in eval mode on ``device``; ``DataError`` if the weights do not
    fit the config's model."""
    model = build_model(cfg)
    load_weights(model, checkpoint_weights(load_checkpoint(checkpoint)), checkpoint)
    return model.to(device).eval()
