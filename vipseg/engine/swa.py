"""The SWA stage: ``vipseg swa CONFIG CKPT NAME``, a second run that averages its weights.

A new run in ``WORK_DIR/NAME/exp_swa_<timestamp>/`` starts from CKPT's model weights (a warm
start: ``train.init_from``) and trains ``swa.epochs`` epochs with ``swa.optimizer`` (AdamW,
lr 1e-4, weight decay 0.02 by default) at a constant rate, or with ``swa.lr_policy: cyclic``
from lr down to ``lr × swa.cycle_ratio`` within every epoch. A
``torch.optim.swa_utils.AveragedModel`` (one more copy of the model) takes the weights every
``swa.update_every`` iterations, or with 0 at the end of every epoch (the cycle's low point).

Each epoch writes ``epoch_K.pth`` (the raw weights, full training state) and ``swa.pth`` (the
running average: ``model``, ``n_averaged``, ``iteration``, ``config``); ``last.pth`` as in
training, no ``best.pth``. A model with BatchNorm gets its averaged model's statistics
recomputed over the training data before each ``swa.pth`` (the log says when this is skipped
for GroupNorm/LayerNorm models). Validation scores the averaged weights. It is the ordinary
:class:`~vipseg.engine.trainer.Trainer` with a :class:`SwaHook`, so it runs under ``torchrun``
like training: every process keeps the (identical) average, rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch import nn
from torch.optim.swa_utils import AveragedModel

from vipseg.config import Config
from vipseg.config.schema import ScheduleConfig
from vipseg.engine import distributed as ddp
from vipseg.engine.averaging import BN_SKIPPED, batch_loader, refresh_batchnorm
from vipseg.engine.checkpoint import load_weights, save_checkpoint
from vipseg.engine.hooks import TrainHook
from vipseg.engine.trainer import Stage, TrainResult, train
from vipseg.errors import DataError

if TYPE_CHECKING:
    from vipseg.engine.trainer import Trainer

RUN_PREFIX = "exp_swa"
SWA_FILE = "swa.pth"
#: the checkpoint entry that holds the running average (``AveragedModel.state_dict()``)
STATE_KEY = "swa"
UpdateListener = Callable[[nn.Module, int], None]


class SwaHook(TrainHook):
    """Keeps the running uniform average of ``model``'s parameters (buffers: the latest,
    BatchNorm statistics recomputed before saving) and writes ``swa.pth`` after every epoch.

    ``on_update(model, iteration)`` is called with the trained model at each update.
    """

    def __init__(self, model: nn.Module, *, update_every: int,
                 on_update: UpdateListener | None = None) -> None:
        self.averaged = AveragedModel(model, use_buffers=False)
        self.update_every = update_every
        self.on_update = on_update
        self._bn_note = False

    @property
    def count(self) -> int:
        """How many weights the average holds."""
        return int(self.averaged.n_averaged)

    def _update(self, trainer: Trainer) -> None:
        model = ddp.unwrap(trainer.model)
        self.averaged.update_parameters(model)
        trainer.log.record("swa", trainer.iteration, {
            "epoch": trainer.epoch, "iteration": trainer.iteration, "n_averaged": self.count})
        if self.on_update is not None:
            self.on_update(model, trainer.iteration)

    def after_step(self, trainer: Trainer) -> None:
        if self.update_every and trainer.iteration % self.update_every == 0:
            self._update(trainer)

    def after_epoch(self, trainer: Trainer) -> None:
        if not self.update_every:
            self._update(trainer)
        if self.count == 0:
            return
        loader = batch_loader(trainer.dataset, trainer.batch_sampler,
                              num_workers=trainer.opt.num_workers, device=trainer.ctx.device)
        batches = refresh_batchnorm(self.averaged.module, loader, device=trainer.ctx.device,
                                    ctx=trainer.ctx)
        if batches is None and not self._bn_note:
            trainer.log.info(BN_SKIPPED)
            self._bn_note = True
        elif batches is not None:
            trainer.log.info(f"swa: BatchNorm statistics of the average recomputed over "
                             f"{batches} training batches")
        trainer.log.info(f"swa: epoch {trainer.epoch}, average of {self.count} weights "
                         f"(iteration {trainer.iteration}) -> {SWA_FILE}")
        if trainer.log.run_dir is not None:
            save_checkpoint(trainer.log.run_dir / SWA_FILE, self.checkpoint(trainer))

    def checkpoint(self, trainer: Trainer) -> dict[str, Any]:
        """The ``swa.pth`` dict."""
        return {"model": self.averaged.module.state_dict(), "n_averaged": self.count,
                "epoch": trainer.epoch, "iteration": trainer.iteration,
                "config": trainer.config_text}

    def eval_model(self, trainer: Trainer) -> nn.Module | None:
        return self.averaged.module if self.count else None

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        return {STATE_KEY: self.averaged.state_dict()}

    def load_state_dict(self, trainer: Trainer, state: dict[str, Any], source: Path) -> None:
        if STATE_KEY not in state:
            raise DataError(f"{source}: no SWA average in the checkpoint: resume a stage from "
                            "a checkpoint `vipseg swa` wrote")
        load_weights(self.averaged, state[STATE_KEY], source)


def swa_config(cfg: Config, checkpoint: str | os.PathLike) -> Config:
    """The training config of the SWA stage: ``swa.optimizer``, its LR policy without
    warm-up, ``swa.epochs``, ``epoch_K.pth`` every epoch, warm start from ``checkpoint``,
    no EMA (the stage averages its weights itself)."""
    s = cfg.swa
    schedule = ScheduleConfig(policy=s.lr_policy, warmup_iters=0, min_lr_ratio=s.cycle_ratio)
    t = replace(cfg.train, epochs=s.epochs, checkpoint_interval=1, init_from=str(checkpoint),
                ema=replace(cfg.train.ema, enabled=False))
    return replace(cfg, optimizer=s.optimizer, schedule=schedule, train=t)


def run_swa(cfg: Config, checkpoint: str | os.PathLike, name: str, *,
            work_dir: str | os.PathLike = "output", data_root: str | os.PathLike | None = None,
            device: str | None = None, model: nn.Module | None = None,
            on_update: UpdateListener | None = None,
            resume: str | os.PathLike | bool | None = None,
            resume_from_older: bool = False) -> TrainResult:
    """Run the SWA stage of ``cfg`` from ``checkpoint`` as ``work_dir/name/exp_swa_<ts>/``
    (see the module doc); ``model`` replaces ``build_model`` (tests). ``resume`` and
    ``resume_from_older`` continue a stopped stage as in :func:`~vipseg.engine.trainer.train`
    (``True``: the newest ``last.pth`` under ``work_dir/name``; the same ``cfg`` and
    ``checkpoint`` as the stage started with). Returns the run's result; ``swa.pth`` is in
    ``result.run_dir``."""
    if not Path(checkpoint).is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    stage = Stage(run_prefix=RUN_PREFIX, save_best=False,
                  hooks=lambda m, c: [SwaHook(m, update_every=c.swa.update_every,
                                              on_update=on_update)])
    return train(swa_config(cfg, checkpoint), name, work_dir=work_dir, data_root=data_root,
                 device=device, model=model, stage=stage, resume=resume,
                 resume_from_older=resume_from_older)
