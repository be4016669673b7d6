"""The training loop: epochs of AMP steps, validation, checkpoints, resume, DDP.

:func:`train` maps a ``Config`` onto the pieces (datasets, model, optimizer, schedule, run
folder) and runs a :class:`Trainer`. One process trains on its own; under
``torchrun --nproc_per_node=N -m vipseg train ...`` every process runs the same code on its
shard of each epoch (``DistributedSampler``) and rank 0 alone writes the run folder.

Checkpoints (``last.pth`` after every epoch and when ``train.max_iters`` stops the run,
``best.pth`` at the best validation ``segm/AP``, ``epoch_K.pth`` every
``train.checkpoint_interval`` epochs) hold the model, optimizer, scheduler, grad scaler,
``epoch`` (epochs completed), ``iteration`` (optimizer steps done), ``best_ap``, the RNG states
of every rank and the merged config; see :mod:`vipseg.engine.checkpoint`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from vipseg.config import Config, dump_config
from vipseg.data.build import build_dataset
from vipseg.data.dataset import collate
from vipseg.data.samplers import GroupedBatchSampler, aspect_groups
from vipseg.engine import distributed as ddp
from vipseg.engine.checkpoint import (capture_rng_state, find_latest, load_checkpoint,
                                      restore_rng_state, save_checkpoint)
from vipseg.engine.evaluation import evaluate_model, format_metrics_table
from vipseg.engine.optim import build_optimizer, build_scheduler
from vipseg.engine.run_dir import RunLog, new_run_dir
from vipseg.errors import ConfigError, DataError, TrainingError
from vipseg.models.build import build_model
from vipseg.utils.io import atomic_write_text

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BEST_KEY = "segm/AP"


@dataclass
class LoopOptions:
    """Loop settings (from ``cfg.train``): lengths in epochs / iterations, AMP mode."""

    epochs: int
    max_iters: int | None = None
    amp: str = "none"
    clip_grad: float | None = None
    val_interval: int = 1
    checkpoint_interval: int = 1
    log_interval: int = 20
    seed: int = 0
    num_workers: int = 0


@dataclass
class TrainResult:
    """What a finished run leaves: its folder (rank 0 only), counters and the last val metrics."""

    run_dir: Path | None
    epoch: int
    iteration: int
    best_ap: float | None
    val_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Runs epochs of training steps on ``dataset`` batches from ``batch_sampler``.

    Args:
        model: the detector, already on ``ctx.device`` (DDP-wrapped under DDP); training mode
            returns a dict of scalar losses.
        optimizer, scheduler: stepped once per iteration; scaler: ``GradScaler`` (fp16 only).
        dataset: ``(image, target)`` samples; index_sampler: the ``DistributedSampler`` that
            ``batch_sampler`` draws from (re-seeded every epoch).
        evaluate: ``model -> metrics`` on the validation set (None: no validation).
        log: where messages and records go (silent on ranks other than 0).
        config_text: the merged config, stored in every checkpoint.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                 dataset: Dataset, index_sampler: DistributedSampler,
                 batch_sampler: Sampler[list[int]], ctx: ddp.DistContext, log: RunLog,
                 options: LoopOptions, evaluate: Callable[[nn.Module], dict] | None,
                 config_text: str) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.dataset, self.index_sampler, self.batch_sampler = dataset, index_sampler, batch_sampler
        self.ctx, self.log, self.opt = ctx, log, options
        self.evaluate, self.config_text = evaluate, config_text
        self.iters_per_epoch = len(batch_sampler)  # type: ignore[arg-type]
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimizer steps done
        self.epoch_step = 0  # batches done in the current, unfinished epoch
        self.best_ap: float | None = None
        self.last_good: Path | None = None
        self.val_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint dict; call on every rank (the RNG states of all ranks are gathered)."""
        return {
            "model": ddp.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "epoch_step": self.epoch_step,
            "best_ap": self.best_ap,
            "rng": ddp.all_gather_objects(capture_rng_state(), self.ctx),
            "config": self.config_text,
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Restore everything :meth:`state_dict` saved; RNG states only if the world size
        matches (otherwise each rank is re-seeded from ``seed + rank + iteration``)."""
        try:
            ddp.unwrap(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
            raise DataError(f"{source}: checkpoint does not fit this config's model or "
                            f"optimizer ({detail})") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.epoch_step = int(state.get("epoch_step", 0))
        self.best_ap = state.get("best_ap")
        self.last_good = source
        rng = state.get("rng") or []
        if len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank])
        else:
            self.log.info(f"{source}: saved by {len(rng)} process(es), resuming with "
                          f"{self.ctx.world_size}: random states re-seeded")
            ddp.seed_everything(self.opt.seed + self.ctx.rank + self.iteration)

    def _save(self, names: list[str]) -> None:
        state = self.state_dict()
        if self.log.run_dir is None:
            return
        for name in names:
            save_checkpoint(self.log.run_dir / name, state)
        self.last_good = self.log.run_dir / names[0]

    # ------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train until ``epochs`` are done or ``max_iters`` steps; returns the result."""
        o = self.opt
        if self.epoch >= o.epochs or self._should_stop():
            self.log.info(f"nothing to do: already at epoch {self.epoch}, iteration "
                          f"{self.iteration}")
        else:
            self.log.info(f"training: {len(self.dataset)} images, {self.iters_per_epoch} "
                          f"iterations/epoch x {o.epochs} epochs, {self.ctx.world_size} "
                          f"process(es) on {self.ctx.device}")
        while self.epoch < o.epochs and not self._should_stop():
            start = time.perf_counter()
            means = self._train_epoch(self.epoch)
            completed = self.epoch_step == 0
            if completed:
                self.epoch += 1
            final = self.epoch >= o.epochs or self._should_stop()
            self._summary(self.epoch if completed else self.epoch + 1, means,
                          time.perf_counter() - start, completed)
            names = ["last.pth"]
            if self.evaluate is not None and o.val_interval > 0 and (
                    final or (completed and self.epoch % o.val_interval == 0)):
                if self._validate():
                    names.append("best.pth")
            if completed and o.checkpoint_interval > 0 and self.epoch % o.checkpoint_interval == 0:
                names.append(f"epoch_{self.epoch}.pth")
            self._save(names)
        return TrainResult(self.log.run_dir, self.epoch, self.iteration, self.best_ap,
                           self.val_metrics)

    def _should_stop(self) -> bool:
        return self.opt.max_iters is not None and self.iteration >= self.opt.max_iters

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One (possibly resumed, possibly truncated) epoch; returns the mean of each loss."""
        self.index_sampler.set_epoch(epoch)
        skip = self.epoch_step
        batches = list(self.batch_sampler)[skip:]
        loader = DataLoader(
            self.dataset, batch_sampler=batches, collate_fn=collate,
            num_workers=self.opt.num_workers, worker_init_fn=ddp.worker_init_fn,
            generator=ddp.loader_generator(self.opt.seed, self.ctx.rank, epoch),
            pin_memory=self.ctx.device.type == "cuda")
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(total=self.iters_per_epoch, initial=skip, disable=not self.log.enabled,
                   desc=f"epoch {epoch + 1}/{self.opt.epochs}", dynamic_ncols=True, leave=False)
        tic, logged = time.perf_counter(), 0
        for images, targets in loader:
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            values = self._step(images, targets, epoch)
            steps += 1
            self.epoch_step += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}", lr=f"{lr:.3g}")
            bar.update()
            if self.iteration % self.opt.log_interval == 0:
                toc = time.perf_counter()
                self.log.record("train", self.iteration, {
                    "epoch": epoch + 1, "iteration": self.iteration, "lr": lr, **values,
                    "sec_per_iter": (toc - tic) / (steps - logged)})
                tic, logged = toc, steps
            if self._should_stop() and self.epoch_step < len(batches) + skip:
                break
        else:
            self.epoch_step = 0
        bar.close()
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def _step(self, images: list[torch.Tensor], targets: list[dict], epoch: int) -> dict[str, float]:
        """Forward, finite-loss check, backward, clip, optimizer and scheduler step."""
        dev = self.ctx.device
        images = [im.as_subclass(torch.Tensor).to(dev, non_blocking=True) for im in images]
        targets = [{k: v.as_subclass(torch.Tensor).to(dev, non_blocking=True)
                    if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        amp = self.opt.amp
        with torch.autocast(dev.type, dtype=AMP_DTYPES.get(amp), enabled=amp != "none"):
            losses = self.model(images, targets)
        total = sum(v.float() for v in losses.values())
        values = ddp.reduce_mean({**losses, "loss": total}, self.ctx)
        if not all(math.isfinite(v) for v in values.values()):
            self._fail_non_finite(epoch, values)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.opt.clip_grad:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            values["grad_norm"] = float(nn.utils.clip_grad_norm_(params, self.opt.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return values

    def _fail_non_finite(self, epoch: int, values: dict[str, float]) -> None:
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        last = str(self.last_good) if self.last_good else "none written yet"
        message = (f"non-finite loss at epoch {epoch + 1} iter {self.iteration + 1}: {parts}; "
                   f"last good checkpoint: {last}")
        self.log.info(f"error: {message}")
        raise TrainingError(message)

    def _summary(self, epoch: int, means: dict[str, float], seconds: float,
                 completed: bool) -> None:
        parts = " ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "loss")
        lr = self.optimizer.param_groups[0]["lr"]
        self.log.info(f"epoch {epoch}/{self.opt.epochs} iter {self.iteration} "
                      f"loss {means.get('loss', float('nan')):.4f} ({parts}) lr {lr:.3g} "
                      f"time {seconds:.1f}s" + ("" if completed else " (stopped: max_iters)"))

    def _validate(self) -> bool:
        """Evaluate, log the table and records; True if ``segm/AP`` is a new best."""
        assert self.evaluate is not None
        metrics = self.evaluate(ddp.unwrap(self.model))
        self.model.train()
        self.log.info(format_metrics_table(metrics))
        self.log.record("val", self.iteration, {"epoch": self.epoch, "iteration": self.iteration,
                                                **metrics})
        ap = metrics.get(BEST_KEY)
        new_best = ap is not None and (self.best_ap is None or ap > self.best_ap)
        if new_best:
            self.best_ap = ap
        self.val_metrics = metrics
        self.log.info(f"val epoch {self.epoch} iter {self.iteration}: {BEST_KEY} {ap} "
                      f"(best {self.best_ap})")
        return new_best


# ----------------------------------------------------------------------------------- build
def check_amp(amp: str, device: torch.device) -> None:
    """``ConfigError`` for fp16 autocast without CUDA (bf16 works on CPU)."""
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("config key 'train.amp': fp16 needs a CUDA device; use bf16 or none "
                          "on CPU")


def build_batch_sampler(dataset: Any, ctx: ddp.DistContext, batch_size: int, seed: int,
                        group_by_aspect: bool) -> tuple[DistributedSampler, Sampler[list[int]]]:
    """(index sampler, batch sampler): this rank's shuffled shard, batched (aspect-grouped)."""
    index = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                               shuffle=True, seed=seed, drop_last=False)
    if group_by_aspect:
        return index, GroupedBatchSampler(index, aspect_groups(dataset.image_sizes()), batch_size)
    return index, BatchSampler(index, batch_size, drop_last=False)


def resolve_resume(resume: str | os.PathLike | bool | None, name_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``True`` → newest ``last.pth`` under ``name_dir``."""
    if resume is None or resume is False:
        return None
    return find_latest(name_dir) if resume is True else Path(resume)


def train(cfg: Config, name: str, *, work_dir: str | os.PathLike = "output",
          data_root: str | os.PathLike | None = None,
          resume: str | os.PathLike | bool | None = None, device: str | None = None,
          model: nn.Module | None = None) -> TrainResult:
    """Train ``cfg`` as run ``name`` under ``work_dir/name/exp_<timestamp>/``.

    ``resume``: a checkpoint path, or ``True`` for the newest ``last.pth`` under
    ``work_dir/name``; the run then continues in that checkpoint's folder (its config.yaml is
    kept; this session's config goes to ``config_resume_<iteration>.yaml``). ``data_root``
    replaces ``cfg.dataset.root``, also in the saved config. ``device``: "cpu",
    "cuda" or None (CUDA if available). ``model`` replaces ``build_model(cfg)`` (tests).
    Under torchrun each process calls this; only rank 0 writes files.
    """
    ctx = ddp.init_distributed(device)
    try:
        return _train(cfg, name, ctx, Path(work_dir), data_root, resume, model)
    finally:
        ddp.shutdown_distributed(ctx)


def _train(cfg: Config, name: str, ctx: ddp.DistContext, work_dir: Path,
           data_root: str | os.PathLike | None, resume: str | os.PathLike | bool | None,
           model: nn.Module | None) -> TrainResult:
    t = cfg.train
    check_amp(t.amp, ctx.device)
    if data_root is not None:  # recorded in config.yaml and the checkpoints
        cfg = replace(cfg, dataset=replace(cfg.dataset, root=str(data_root)))
    ddp.seed_everything(t.seed + ctx.rank)
    ckpt_path = ddp.broadcast_object(
        resolve_resume(resume, work_dir / name) if ctx.is_main else None, ctx)
    state = load_checkpoint(ckpt_path) if ckpt_path is not None else None

    # Everything a config error can stop is built before the run folder exists.
    train_set = build_dataset(cfg, "train", train=True)
    if len(train_set) == 0:
        raise DataError(f"{train_set.ann_file}: no training images")
    val_set = build_dataset(cfg, "val", train=False) if t.val_interval > 0 else None
    index_sampler, batch_sampler = build_batch_sampler(train_set, ctx, t.batch_size, t.seed,
                                                       t.aspect_ratio_grouping)
    model = (model if model is not None else build_model(cfg)).to(ctx.device)
    wants_sync = t.sync_bn or "SyncBN" in (cfg.model.backbone.norm, cfg.model.neck.norm,
                                           cfg.model.roi_heads.norm)
    notes: list[str] = [train_set.cache_note] if train_set.cache_note else []
    model = ddp.sync_batchnorm(model, ctx, wants_sync, notes.append)
    optimizer = build_optimizer(model, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, len(batch_sampler), t.epochs)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=t.amp == "fp16")
    config_text = dump_config(cfg)

    run_dir = None
    if ctx.is_main:
        if state is None:
            run_dir = new_run_dir(work_dir / name)
            atomic_write_text(run_dir / "config.yaml", config_text)
        else:  # the run's config.yaml stays as it started; each session records its own
            run_dir = ckpt_path.parent
            atomic_write_text(run_dir / f"config_resume_{int(state['iteration'])}.yaml",
                              config_text)
    run_dir = ddp.broadcast_object(run_dir, ctx)
    log = RunLog(run_dir if ctx.is_main else None,
                 purge_step=int(state["iteration"]) + 1 if state else None)
    try:
        log.info(f"run folder: {run_dir}" + (f" (resumed from {ckpt_path})" if state else ""))
        for note in notes:
            log.info(note)
        model = ddp.wrap_ddp(model, ctx, t.find_unused_parameters)

        def evaluate(m: nn.Module) -> dict:
            return evaluate_model(m, val_set, device=ctx.device, test_cfg=cfg.test,
                                  distributed=ctx.distributed)

        options = LoopOptions(epochs=t.epochs, max_iters=t.max_iters, amp=t.amp,
                              clip_grad=t.clip_grad, val_interval=t.val_interval,
                              checkpoint_interval=t.checkpoint_interval,
                              log_interval=max(1, t.log_interval), seed=t.seed,
                              num_workers=t.num_workers)
        trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                          dataset=train_set, index_sampler=index_sampler,
                          batch_sampler=batch_sampler, ctx=ctx, log=log, options=options,
                          evaluate=evaluate if val_set is not None else None,
                          config_text=config_text)
        if state is not None:
            trainer.load_state_dict(state, ckpt_path)
        return trainer.fit()
    finally:
        log.close()
