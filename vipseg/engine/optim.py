"""Optimizer with decay / no-decay parameter groups and the per-iteration learning-rate schedule.

``build_optimizer(model, cfg.optimizer)`` splits trainable parameters into two groups:
``decay`` (conv / linear weights) and ``no_decay`` (biases, normalisation weights and any other
1-D parameter such as layer scales), the latter with ``weight_decay=0`` unless
``norm_bias_decay`` is set. ``build_scheduler(optimizer, cfg.schedule, iters_per_epoch, epochs)``
returns a ``LambdaLR`` stepped once per iteration: a linear warm-up from ``warmup_ratio`` to 1
over ``warmup_iters`` iterations, multiplied by a step, cosine, constant or cyclic decay.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vipseg.config.schema import OptimizerConfig, ScheduleConfig

# Normalisation layers whose affine parameters get no weight decay (timm's LayerNorm2d,
# GroupNorm1 etc. subclass these; any other 1-D parameter is caught by its shape).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
)


def split_decay_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decay, no_decay) trainable parameters of ``model``; shared parameters appear once.

    No decay: biases, parameters of normalisation layers and every parameter with ndim <= 1.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, NORM_TYPES) or name.endswith("bias") or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return decay, no_decay


def make_optimizer(model: nn.Module, *, kind: str, lr: float, weight_decay: float,
                   momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                   norm_bias_decay: bool = False) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW over the decay / no-decay groups of ``model``.

    Each group carries a ``name`` ("decay" or "no_decay"); empty groups are left out.
    """
    decay, no_decay = split_decay_params(model)
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay},
              {"name": "no_decay", "params": no_decay,
               "weight_decay": weight_decay if norm_bias_decay else 0.0}]
    groups = [g for g in groups if g["params"]]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer type {kind!r} (expected 'sgd' or 'adamw')")


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Map ``cfg.optimizer`` onto :func:`make_optimizer`."""
    return make_optimizer(model, kind=cfg.type, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          momentum=cfg.momentum, betas=(cfg.betas[0], cfg.betas[1]),
                          norm_bias_decay=cfg.norm_bias_decay)


def lr_factor_fn(*, policy: str, total_iters: int, iters_per_epoch: int,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001,
                 steps: tuple[int, ...] = (), gamma: float = 0.1,
                 min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """The learning-rate multiplier as a function of the iteration (0-based).

    ``step``: ``gamma ** k`` where k counts the ``steps`` epochs already reached;
    ``cosine``: from 1 down to ``min_lr_ratio`` over ``total_iters``; ``constant``: 1;
    ``cyclic``: every epoch linearly from 1 at its first iteration to ``min_lr_ratio`` at its
    last (the SWA cycle; its low point ends the epoch).
    During the first ``warmup_iters`` iterations the factor is further multiplied by a
    linear ramp from ``warmup_ratio`` to 1.
    """
    if policy not in ("step", "cosine", "constant", "cyclic"):
        raise ValueError(f"unknown schedule policy {policy!r}")
    total = max(1, total_iters)
    ipe = max(1, iters_per_epoch)

    def factor(it: int) -> float:
        if policy == "step":
            epoch = it // ipe
            f = gamma ** sum(1 for s in steps if epoch >= s)
        elif policy == "cyclic":
            f = 1.0 - (1.0 - min_lr_ratio) * (it % ipe) / max(1, ipe - 1)
        elif policy == "cosine":
            t = min(it, total) / total
            f = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            f = 1.0
        if it < warmup_iters:
            f *= warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters
        return f

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    iters_per_epoch: int, epochs: int) -> LambdaLR:
    """Per-iteration ``LambdaLR`` for ``cfg.schedule`` over ``epochs * iters_per_epoch`` steps.

    ``train.max_iters`` does not shorten the schedule, so a run stopped early and resumed
    follows exactly the same learning rates as an uninterrupted one.
    """
    fn = lr_factor_fn(policy=cfg.policy, total_iters=epochs * iters_per_epoch,
                      iters_per_epoch=iters_per_epoch, warmup_iters=cfg.warmup_iters,
                      warmup_ratio=cfg.warmup_ratio, steps=tuple(cfg.steps), gamma=cfg.gamma,
                      min_lr_ratio=cfg.min_lr_ratio)
    return LambdaLR(optimizer, fn)
