"""Extension points of the training loop (:class:`vipseg.engine.trainer.Trainer`).

The EMA of ``train.ema`` (:mod:`vipseg.engine.ema`) and the averaged model of the SWA stage
(:mod:`vipseg.engine.swa`) are hooks: they act after steps and epochs, choose the model that
validation scores and add entries to every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from vipseg.engine.trainer import Trainer


class TrainHook:
    """Extension points of :class:`Trainer`; every method is a no-op here.

    A hook runs on every process (keep ranks in step: collective calls are allowed), and
    writes files only through ``trainer.log.run_dir`` (None on ranks other than 0).
    """

    def after_step(self, trainer: Trainer) -> None:
        """After each optimizer step (``trainer.iteration`` already counts it)."""

    def after_epoch(self, trainer: Trainer) -> None:
        """After each completed epoch (``trainer.epoch`` counts it), before validation and
        checkpoints."""

    def eval_model(self, trainer: Trainer) -> nn.Module | None:
        """The model validation scores instead of the trained one (None: the trained one)."""
        return None

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        """Entries added to every checkpoint."""
        return {}

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any], source: Path) -> None:
        """Restore from a checkpoint (called after the model and counters are restored)."""
