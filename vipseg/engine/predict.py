"""The one prediction path: options built once from the config, then a dataset -> COCO results.

Every caller goes through here: ``vipseg test`` (val scoring and test submissions),
validation during training (``evaluate_model``), ``vipseg predict``, TTA and ensembles. So AMP,
workers, batch size, thresholds, the paste chunk, post-processing and TTA are the same
everywhere for one config.

Two ways to predict an image, chosen by the options and the model argument:

- plain: one model on the dataset's own input (``TestTransform`` to ``dataset.test_scale``),
  ``model(images)``, boxes mapped back by the transform's ``scale_factor``;
- multi-view (``--tta`` and/or an ensemble): the dataset's transform is swapped for
  ``OriginalImage`` and ``vipseg.engine.tta.MultiViewPredictor`` makes the views, merges boxes
  and averages masks (see that module).

Then per image: ``postprocess`` (one-ball prior, score threshold, per-class caps), masks pasted
at the original resolution in chunks and RLE-encoded (``output_to_results``). With
``distributed`` (and torch.distributed initialised) rank r predicts images r, r + world, ...
and every rank returns the full list, in dataset order.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from vipseg.data.dataset import collate
from vipseg.engine.inference import AMP_DTYPES, category_ids_of, output_to_results
from vipseg.engine.postprocess import PostOptions, post_options, postprocess
from vipseg.engine.progress import is_terminal
from vipseg.engine.tta import (MergeOptions, Member, MultiViewPredictor, OriginalImage, View,
                               merge_options, views_from_config)


@dataclass(frozen=True)
class PredictOptions:
    """Everything a prediction run needs besides the model and the data.

    ``amp``: none | bf16 | fp16 autocast; ``views``: the TTA views (None: plain prediction);
    ``merge``: how views and ensemble members are merged (used only for multi-view runs).
    """

    batch_size: int = 1
    num_workers: int = 0
    amp: str = "none"
    mask_thresh: float = 0.5
    paste_chunk: int = 16
    post: PostOptions = field(default_factory=PostOptions)
    views: Optional[tuple[View, ...]] = None
    merge: MergeOptions = field(default_factory=MergeOptions)


def predict_options(cfg: Any, device: str | torch.device, *, tta: bool = False) -> PredictOptions:
    """``PredictOptions`` from a config: ``test`` (batch, thresholds, paste chunk, ``post``),
    ``train.amp`` (on CUDA only; CPU runs without autocast) and ``train.num_workers``, and
    with ``tta`` the views of the ``tta:`` section. Validation during training uses the same."""
    amp = cfg.train.amp if torch.device(device).type == "cuda" else "none"
    t = cfg.test
    return PredictOptions(batch_size=t.batch_size, num_workers=cfg.train.num_workers, amp=amp,
                          mask_thresh=t.mask_thresh, paste_chunk=t.paste_chunk,
                          post=post_options(t, cfg.dataset.classes),
                          views=views_from_config(cfg.tta) if tta else None,
                          merge=merge_options(cfg.tta))


def _dist_info(distributed: bool) -> tuple[int, int]:
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _unwrap(model: nn.Module) -> nn.Module:
    # A DDP wrapper would sync buffers in every forward, and shards may differ by one image.
    return model.module if isinstance(model, DistributedDataParallel) else model


@torch.inference_mode()
def predict_dataset(model: Union[nn.Module, Sequence[Member]], dataset: Any, *,
                    device: str | torch.device, options: PredictOptions = PredictOptions(),
                    distributed: bool = False, progress: bool = True,
                    category_ids: Sequence[Any] | None = None) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, RLE ``segmentation``, ``score``, ``bbox``
    [x, y, w, h] float, original pixels) for every image of ``dataset``.

    ``dataset`` items are ``(image [3, H, W] uint8, target)`` from ``TestTransform`` (its
    ``transform`` attribute is replaced for multi-view runs). ``model``: one detector, or
    ensemble ``Member``s (each with its views and weight). One detector with
    ``options.views`` runs TTA. ``category_ids[label]`` overrides
    ``dataset.label_to_category_id(label)`` (for images-only files). The ``progress`` bar
    draws only on a terminal (a log file would get one redraw per image).
    """
    if options.amp not in ("none", *AMP_DTYPES):
        raise ValueError(f"amp must be none, bf16 or fp16, got {options.amp!r}")
    device = torch.device(device)
    ids = category_ids_of(dataset, category_ids)
    if isinstance(model, nn.Module) and options.views is None:
        models, predictor = [_unwrap(model)], None
    else:
        members = ([Member(_unwrap(model), options.views or ())] if isinstance(model, nn.Module)
                   else [Member(_unwrap(m.model), m.views, m.weight) for m in model])
        models, predictor = [m.model for m in members], MultiViewPredictor(members, options.merge)
        dataset = copy.copy(dataset)
        dataset.transform = OriginalImage()
    rank, world = _dist_info(distributed)
    indices = list(range(rank, len(dataset), world))
    loader = DataLoader(Subset(dataset, indices), batch_size=options.batch_size, shuffle=False,
                        num_workers=options.num_workers, collate_fn=collate)
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[options.amp])
                if options.amp != "none" else contextlib.nullcontext())
    per_image: list[tuple[int, list[dict]]] = []
    bar = tqdm(total=len(indices), desc="predict", unit="img", dynamic_ncols=True, leave=False,
               disable=not progress or rank != 0 or not is_terminal(sys.stderr))
    pos = 0
    for images, targets in loader:
        if predictor is None:  # multi-view makes its views from the CPU image
            images = [im.to(device, non_blocking=True) for im in images]
        with autocast:
            outputs = models[0](images) if predictor is None else predictor(images, targets)
        for out, tgt in zip(outputs, targets):
            out = postprocess(out, options.post)
            per_image.append((indices[pos], output_to_results(
                out, tgt, ids, mask_thresh=options.mask_thresh, paste_chunk=options.paste_chunk)))
            pos += 1
        bar.update(len(images))
    bar.close()
    for m, mode in zip(models, modes):
        m.train(mode)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, per_image)
        merged = {i: res for part in gathered for i, res in part}  # one entry per image
        per_image = sorted(merged.items())
    return [r for _, res in per_image for r in res]
