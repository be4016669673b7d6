"""Process-group set-up, rank-aware helpers and seeding for single-process and DDP training.

``torchrun --nproc_per_node=N -m vipseg train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and joins the process group with NCCL on
CUDA and gloo on CPU. Without those variables everything runs in one process and the helpers
below are no-ops.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from timm.layers import convert_sync_batchnorm
from torch import nn

from vipseg.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints progress and writes files."""
        return self.rank == 0


def resolve_device(device: str | None) -> str:
    """``"cuda"`` if available when ``device`` is None; ``ConfigError`` for CUDA without GPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    return device


def init_distributed(device: str | None = None, timeout_s: int = 1800) -> DistContext:
    """Join the process group described by torchrun's env vars (if any) and pick the device.

    Under torchrun on CUDA each process uses ``cuda:LOCAL_RANK`` and NCCL; on CPU, gloo.
    """
    kind = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s),
                                device_id=dev if kind == "cuda" else None)
    return DistContext(rank, world_size, local_rank, dev)


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (any picklable value)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Mean of each scalar over all ranks, as Python floats (one all-reduce for the dict)."""
    if not values:
        return {}
    names = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in names])
    if ctx.distributed:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= ctx.world_size
    return dict(zip(names, stacked.tolist()))


def has_batchnorm(model: nn.Module) -> bool:
    """True if ``model`` holds any (non-frozen) BatchNorm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sync_batchnorm(model: nn.Module, ctx: DistContext, want: bool,
                   warn: Callable[[str], None]) -> nn.Module:
    """Convert BatchNorm to SyncBatchNorm when ``want``, under DDP and on CUDA.

    timm's ``BatchNormAct2d`` (BN + activation in one module) becomes ``SyncBatchNormAct`` and
    keeps its activation. SyncBatchNorm needs NCCL; on CPU (gloo) the model keeps per-process BatchNorm and ``warn``
    is called with an explanation.
    """
    if not (want and ctx.distributed and has_batchnorm(model)):
        return model
    if ctx.device.type != "cuda":
        warn("SyncBN needs CUDA: keeping per-process BatchNorm on CPU (gloo)")
        return model
    return convert_sync_batchnorm(model)


def wrap_ddp(model: nn.Module, ctx: DistContext, find_unused_parameters: bool) -> nn.Module:
    """``DistributedDataParallel(model)`` under DDP, else ``model`` itself."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: NumPy and ``random`` from the worker's torch seed.

    torch gives each worker ``base_seed + worker_id`` (``base_seed`` drawn from the loader's
    generator), so workers differ from each other, between epochs and between ranks.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def loader_generator(seed: int, rank: int) -> torch.Generator:
    """The generator of a rank's (persistent) DataLoader: it seeds the workers' base seed and
    keeps the global torch RNG untouched. Samples draw from per-sample seeds, not from it."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + rank * 10_007)
    return g
