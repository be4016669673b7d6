"""Weight averaging of checkpoints: uniform averages, greedy model soups, BatchNorm refresh.

:func:`average_checkpoints` streams its inputs: it holds one running sum and the checkpoint
being read (loaded memory-mapped, so that the optimizer state it also holds is never read),
about two models' memory whatever the count. Floating tensors are summed in float32 (or
their own wider type) and divided at the end; integer buffers (``num_batches_tracked``) are
never averaged into floats: the last checkpoint's value is kept. Checkpoints that do not hold
the same model (another tensor name, shape or dtype, or another ``model`` / ``dataset.classes``
in their stored config) are refused with a one-line ``DataError`` naming the file and key.

:func:`greedy_soup` (Wortsman et al. 2022, "Model soups") ranks checkpoints by their val mask
AP and adds each to the soup only if the soup's AP does not drop. :func:`refresh_batchnorm`
recomputes BatchNorm running statistics of averaged weights (averaged statistics do not belong
to averaged weights) by a pass over training batches in train mode without gradients.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from vipseg.config import Config
from vipseg.data.build import build_dataset
from vipseg.data.dataset import collate
from vipseg.engine import distributed as ddp
from vipseg.engine.checkpoint import (checkpoint_weights, load_checkpoint, load_weights,
                                      save_checkpoint)
from vipseg.engine.evaluation import evaluate_model
from vipseg.engine.predict import predict_options
from vipseg.engine.trainer import BEST_KEY, batch_to_device, build_batch_sampler
from vipseg.errors import DataError
from vipseg.models.build import build_model
from vipseg.utils.io import ensure_new_output

Weights = dict[str, torch.Tensor]
EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")
# Config keys that decide the architecture: checkpoints to average must agree on them.
ARCHITECTURE_KEYS = ("model", "dataset.classes")


def checkpoint_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The checkpoint files named by ``inputs``: files as given, and for a folder its
    ``epoch_K.pth`` files in K order (not ``best``/``last``/``swa`` or an earlier average)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted((int(m.group(1)), f) for f in p.iterdir()
                           if (m := EPOCH_FILE.match(f.name)) and f.is_file())
            if not found:
                raise DataError(f"{p}: no epoch_K.pth checkpoints in this folder")
            paths.extend(f for _, f in found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p}: no such checkpoint file or folder")
    if not paths:
        raise DataError("no checkpoints given")
    return paths


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: tree}


def architecture(config_text: str | None) -> dict[str, Any]:
    """The ``ARCHITECTURE_KEYS`` of a checkpoint's stored config as dotted keys (empty when
    the checkpoint has no config)."""
    data = yaml.safe_load(config_text) if config_text else None
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ARCHITECTURE_KEYS:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.update(_flatten(node, key))
    return out


class Reference:
    """The first checkpoint read: what every other one must match."""

    def __init__(self, path: Path, weights: Weights, config_text: str | None) -> None:
        self.path, self.config_text = path, config_text
        self.arch = architecture(config_text)
        self.specs = {k: (tuple(v.shape), v.dtype) for k, v in weights.items()}

    def check(self, path: Path, weights: Weights, config_text: str | None) -> None:
        """One-line ``DataError`` naming ``path`` and the first key that differs."""
        for key in sorted(self.specs.keys() - weights.keys()):
            raise DataError(f"{path}: weight '{key}' of {self.path} is missing (another "
                            "architecture)")
        for key in sorted(weights.keys() - self.specs.keys()):
            raise DataError(f"{path}: weight '{key}' is not in {self.path} (another "
                            "architecture)")
        for key, value in weights.items():
            shape, dtype = self.specs[key]
            if (tuple(value.shape), value.dtype) != (shape, dtype):
                raise DataError(f"{path}: weight '{key}' is {list(value.shape)} {value.dtype}, "
                                f"{list(shape)} {dtype} in {self.path} (another architecture)")
        arch = architecture(config_text)
        if self.arch and arch:
            for key in sorted(self.arch.keys() | arch.keys()):
                if self.arch.get(key) != arch.get(key):
                    raise DataError(f"{path}: config key '{key}' is {arch.get(key)!r}, "
                                    f"{self.arch.get(key)!r} in {self.path}")


class WeightSum:
    """Running sum of state dicts: floating tensors summed (float32 at least), integer ones
    replaced by the latest added."""

    def __init__(self) -> None:
        self.sums: Weights = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.count = 0

    def add(self, weights: Weights) -> None:
        """Add ``weights`` in place (a copy is kept; ``weights`` may be memory-mapped)."""
        for key, value in weights.items():
            if not value.is_floating_point():
                self.sums[key] = value.clone()
            elif key in self.sums:
                self.sums[key].add_(value)
            else:
                self.dtypes[key] = value.dtype
                self.sums[key] = value.to(torch.promote_types(value.dtype, torch.float32),
                                          copy=True)
        self.count += 1

    def mean(self, extra: Weights | None = None) -> Weights:
        """The mean of the weights added (and of ``extra``, without adding it), in their dtypes."""
        n = self.count + (extra is not None)
        out: Weights = {}
        for key, total in self.sums.items():
            if key not in self.dtypes:
                out[key] = (extra[key] if extra is not None else total).clone()
                continue
            value = total + extra[key] if extra is not None else total.clone()
            out[key] = value.div_(n).to(self.dtypes[key])
        return out


def read_weights(path: Path) -> tuple[Weights, str | None]:
    """(model weights, stored config text) of a checkpoint, memory-mapped."""
    state = load_checkpoint(path, mmap=True)
    return checkpoint_weights(state), state.get("config")


def iter_checked(paths: Sequence[Path]) -> Iterator[tuple[Path, Weights, Reference]]:
    """Each checkpoint's weights, checked against the first one's."""
    ref: Reference | None = None
    for path in paths:
        weights, config_text = read_weights(path)
        if ref is None:
            ref = Reference(path, weights, config_text)
        else:
            ref.check(path, weights, config_text)
        yield path, weights, ref


def average_checkpoints(paths: Sequence[Path],
                        progress: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """The uniform average of the checkpoints' models, as a checkpoint dict: ``model``,
    ``config`` (the first one's) and ``averaged_from`` (the paths)."""
    total = WeightSum()
    ref = None
    for path, weights, ref in iter_checked(paths):
        total.add(weights)
        del weights
        if progress is not None:
            progress(path)
    assert ref is not None
    return {"model": total.mean(), "config": ref.config_text,
            "averaged_from": [str(p) for p in paths]}


def greedy_soup(paths: Sequence[Path], score: Callable[[Weights], float],
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Greedy model soup: checkpoints ranked by ``score`` (val mask AP) of each, then added in
    that order to the soup when the soup's score does not drop. Logs every step's score.
    Returns a checkpoint dict like :func:`average_checkpoints` (``averaged_from``: the kept
    paths), plus ``soup_ap``."""
    ranked = []
    for path, weights, ref in iter_checked(paths):
        ap = score(weights)
        log(f"{path}: segm/AP {ap:.4f}")
        ranked.append((ap, str(path)))
        del weights
    ranked.sort(key=lambda item: -item[0])
    best_ap, first = ranked[0]
    soup = WeightSum()
    soup.add(read_weights(Path(first))[0])
    kept = [first]
    log(f"soup 1: {first} segm/AP {best_ap:.4f}")
    for _, path in ranked[1:]:
        candidate = soup.mean(extra=read_weights(Path(path))[0])
        ap = score(candidate)
        keep = ap >= best_ap
        log(f"soup + {path}: segm/AP {ap:.4f} ({'kept' if keep else 'dropped'}; "
            f"soup {max(ap, best_ap):.4f})")
        if keep:
            soup.add(read_weights(Path(path))[0])
            kept.append(path)
            best_ap = ap
        del candidate
    return {"model": soup.mean(), "config": ref.config_text, "averaged_from": kept,
            "soup_ap": best_ap}


# ------------------------------------------------------------------------- BatchNorm refresh
def batch_loader(dataset: Dataset, batch_sampler: Sampler[list[int]] | Iterable[list[int]],
                 *, num_workers: int, device: torch.device) -> DataLoader:
    """A loader of collated training batches (the trainer's dataset and batch sampler)."""
    return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate,
                      num_workers=num_workers, worker_init_fn=ddp.worker_init_fn,
                      pin_memory=device.type == "cuda")


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, batches: Iterable[tuple[list, list]], *,
                      device: torch.device, ctx: ddp.DistContext | None = None) -> int | None:
    """Recompute every BatchNorm's running mean and variance over ``batches`` of
    ``(images, targets)``: a forward pass in train mode without gradients, each layer's
    statistics the plain average over the batches (momentum None, as
    ``torch.optim.swa_utils.update_bn``). Under DDP the statistics are then averaged over
    processes. Returns the number of batches, or None (nothing done) for a model without
    BatchNorm (GroupNorm and LayerNorm normalise per sample and keep no statistics)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return None
    momenta = {}
    for layer in layers:
        layer.reset_running_stats()
        momenta[layer] = layer.momentum
        layer.momentum = None
    was_training = model.training
    model.train()
    count = 0
    for images, targets in batches:
        model(*batch_to_device(images, targets, device))
        count += 1
    for layer in layers:
        layer.momentum = momenta[layer]
    model.train(was_training)
    if ctx is not None and ctx.distributed:
        for layer in layers:
            for stat in (layer.running_mean, layer.running_var):
                dist.all_reduce(stat, op=dist.ReduceOp.SUM)
                stat.div_(ctx.world_size)
    return count


BN_SKIPPED = "BN refresh skipped: the model has no BatchNorm layers (GroupNorm/LayerNorm keep " \
             "no running statistics)"


# ------------------------------------------------------------------------------ the command
def _with_root(cfg: Config, data_root: str | os.PathLike | None) -> Config:
    if data_root is None:
        return cfg
    return replace(cfg, dataset=replace(cfg.dataset, root=str(data_root)))


def train_batches(cfg: Config, device: torch.device) -> DataLoader:
    """One epoch of ``cfg``'s training batches (its pipeline, batch size and grouping)."""
    dataset = build_dataset(cfg, "train", train=True)
    _, batch_sampler = build_batch_sampler(dataset, ddp.DistContext(device=device),
                                           cfg.train.batch_size, cfg.train.seed,
                                           cfg.train.aspect_ratio_grouping)
    return batch_loader(dataset, batch_sampler, num_workers=cfg.train.num_workers, device=device)


def average_to_file(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    force: bool = False, soup_cfg: Config | None = None,
                    bn_cfg: Config | None = None, data_root: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu",
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """``vipseg average``: average (or, with ``soup_cfg``, greedily soup on its val split)
    the checkpoints of ``inputs`` (see :func:`checkpoint_inputs`), refresh BatchNorm
    statistics over ``bn_cfg``'s training data if given, and write the checkpoint ``out``
    atomically (``OutputExistsError`` if it exists and not ``force``). Returns the dict."""
    paths = checkpoint_inputs(inputs)
    target = ensure_new_output(out, force, inputs=paths)  # never over an input checkpoint
    device = torch.device(device)
    bn_cfg = _with_root(bn_cfg, data_root) if bn_cfg is not None else None
    bn_model = build_model(bn_cfg).to(device) if bn_cfg is not None else None

    def refreshed(model: nn.Module, weights: Weights, source: str) -> Weights:
        load_weights(model, weights, source)
        used = refresh_batchnorm(model, train_batches(bn_cfg, device), device=device)
        if used is None:
            log(BN_SKIPPED)
            return weights
        log(f"{source}: BatchNorm statistics recomputed over {used} training batches")
        return {k: v.cpu() for k, v in model.state_dict().items()}

    if soup_cfg is not None:
        soup_cfg = _with_root(soup_cfg, data_root)
        model = build_model(soup_cfg).to(device)
        val_set = build_dataset(soup_cfg, "val", train=False)

        def score(weights: Weights) -> float:
            if bn_model is not None:
                weights = refreshed(bn_model, weights, "soup candidate")
            load_weights(model, weights, "soup candidate")
            return evaluate_model(model, val_set, device=device,
                                  options=predict_options(soup_cfg, device))[BEST_KEY]

        state = greedy_soup(paths, score, log)
        log(f"greedy soup of {len(state['averaged_from'])}/{len(paths)} checkpoints: "
            f"{BEST_KEY} {state['soup_ap']:.4f}")
    else:
        state = average_checkpoints(paths, progress=lambda p: log(f"read {p}"))
        log(f"average of {len(paths)} checkpoints")
    if bn_model is not None:
        state["model"] = refreshed(bn_model, state["model"], str(target))
    save_checkpoint(target, state)
    log(f"wrote {target}")
    return state
