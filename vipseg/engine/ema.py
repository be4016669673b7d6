"""EMA of the weights during training (``train.ema``), as a :class:`TrainHook`.

After every optimizer step timm's ``ModelEmaV3`` moves a copy of the model towards the trained
weights: ``ema = d × ema + (1 - d) × weights`` for floating tensors (integer buffers such as
``num_batches_tracked`` are copied), with ``d = decay`` or, with ``warmup``,
``min(decay, 1 - (1 + t)^(-2/3))`` at iteration ``t`` (the first update copies the weights).
Validation scores the EMA copy, so ``best.pth`` is chosen on it; every checkpoint holds it as
``ema`` and ``--resume`` restores it, after which the same iterations give the same EMA weights
as an uninterrupted run (the decay depends only on the iteration, which is restored too).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from timm.utils import ModelEmaV3
from torch import nn

from vipseg.engine import distributed as ddp
from vipseg.engine.checkpoint import load_weights
from vipseg.engine.hooks import TrainHook

if TYPE_CHECKING:
    from vipseg.engine.trainer import Trainer


class EmaHook(TrainHook):
    """Keeps ``ModelEmaV3`` of ``model`` (the unwrapped model, on its device: one more copy)."""

    def __init__(self, model: nn.Module, *, decay: float, warmup: bool) -> None:
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=warmup)

    @property
    def module(self) -> nn.Module:
        """The averaged model (eval mode)."""
        return self.ema.module

    def after_step(self, trainer: Trainer) -> None:
        self.ema.update(ddp.unwrap(trainer.model), step=trainer.iteration)

    def eval_model(self, trainer: Trainer) -> nn.Module:
        return self.ema.module

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        return {"ema": self.ema.module.state_dict()}

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any], source: Path) -> None:
        if "ema" in state:
            load_weights(self.ema.module, state["ema"], source)
            return
        self.ema.set(ddp.unwrap(trainer.model))
        trainer.log.info(f"{source}: no EMA weights in the checkpoint: the EMA starts from "
                         "its model weights")
