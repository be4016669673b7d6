"""The training loop: epochs of AMP steps, validation, checkpoints, resume, DDP.

:func:`train` maps a ``Config`` onto the pieces (datasets, model, optimizer, schedule, run
folder) and runs a :class:`Trainer`. One process trains on its own; under
``torchrun --nproc_per_node=N -m vipseg train ...`` every process runs the same code on its
shard of each epoch (``DistributedSampler``) and rank 0 alone writes the run folder.

Batches come from one run-long :class:`~vipseg.engine.train_loader.TrainLoader` (persistent
workers, a seed per sample); progress is a bar on a terminal and one line per ``log_interval``
elsewhere (:mod:`vipseg.engine.progress`); ``train.time_budget`` re-plans the run's length
(:mod:`vipseg.engine.time_budget`). Every validation writes its predictions and every epoch
``results.csv`` (:mod:`vipseg.engine.run_history`); the end writes ``report.html``.

Checkpoints (``last.pth`` after every epoch and when ``train.max_iters`` stops the run,
``best.pth`` at the best validation ``segm/AP``, ``epoch_K.pth`` every
``train.checkpoint_interval`` epochs) hold the model, optimizer, scheduler, grad scaler,
``epoch`` (epochs completed), ``iteration`` (optimizer steps done), ``best_ap``, the time
budget's elapsed seconds and plan, the RNG states of every rank and the merged config; see
:mod:`vipseg.engine.checkpoint`.

A run may start from trained weights (``train.init_from``, model weights only) and carry
:class:`TrainHook` objects that act after steps and epochs, choose the model validation scores
and add entries to the checkpoints: the EMA of ``train.ema`` (:mod:`vipseg.engine.ema`) and
the averaged model of the SWA stage (:mod:`vipseg.engine.swa`) are such hooks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Sampler

from vipseg.config import Config, dump_config
from vipseg.config.schema import TrainConfig
from vipseg.config.duration import parse_duration
from vipseg.data.build import build_dataset
from vipseg.data.samplers import GroupedBatchSampler, aspect_groups
from vipseg.engine import distributed as ddp
from vipseg.engine.checkpoint import (capture_rng_state, checkpoint_weights, find_latest,
                                      load_checkpoint, load_weights, restore_rng_state,
                                      save_checkpoint)
from vipseg.engine.ema import EmaHook
from vipseg.engine.evaluation import evaluate_model, format_metrics_table
from vipseg.engine.hooks import TrainHook
from vipseg.engine.inference import AMP_DTYPES
from vipseg.engine.optim import build_optimizer, build_scheduler
from vipseg.engine.predict import predict_options
from vipseg.engine.progress import Progress
from vipseg.engine.report import write_report
from vipseg.engine.resume import plan_resume
from vipseg.engine.run_dir import RunLog, new_run_dir
from vipseg.engine.run_history import save_val_predictions, write_results_csv
from vipseg.engine.time_budget import ESTIMATE_AFTER, TimeBudget
from vipseg.engine.train_loader import TrainLoader
from vipseg.errors import ConfigError, DataError, TrainingError
from vipseg.models.build import build_model
from vipseg.utils.io import atomic_write_text, check_writable, remove_stale_temps

BEST_KEY = "segm/AP"


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
        options: the ``train`` section (epochs, max_iters, amp, clip_grad, intervals, seed,
            num_workers). config_text: the merged config, stored in every checkpoint.
        hooks: :class:`TrainHook` objects, called in order. save_best: write ``best.pth`` at
            each new best validation ``segm/AP``.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                 dataset: Dataset, index_sampler: DistributedSampler,
                 batch_sampler: Sampler[list[int]], ctx: ddp.DistContext, log: RunLog,
                 options: TrainConfig, evaluate: Callable[[nn.Module], dict] | None,
                 config_text: str, hooks: Sequence[TrainHook] = (),
                 save_best: bool = True) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.dataset, self.index_sampler, self.batch_sampler = dataset, index_sampler, batch_sampler
        # A copy: the time budget may shorten ``epochs`` without touching the config.
        self.ctx, self.log, self.opt = ctx, log, replace(options)
        self.evaluate, self.config_text = evaluate, config_text
        self.hooks, self.save_best = list(hooks), save_best
        self.iters_per_epoch = len(batch_sampler)  # type: ignore[arg-type]
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimizer steps done
        self.epoch_step = 0  # batches done in the current, unfinished epoch
        self.best_ap: float | None = None
        self.last_good: Path | None = None
        self.val_metrics: dict[str, float] = {}
        self.loader = TrainLoader(dataset, batch_sampler, index_sampler,
                                  num_workers=options.num_workers, seed=options.seed,
                                  rank=ctx.rank, pin_memory=ctx.device.type == "cuda")
        self.progress = Progress(log, ctx.device, options.log_interval)
        self.budget = (TimeBudget(parse_duration(options.time_budget), scheduler,
                                  options.epochs * self.iters_per_epoch)
                       if options.time_budget else None)
        self.val_seconds = 0.0  # duration of the last validation
        self.notes: list[str] = []  # messages for the log, from before it was opened

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint dict; call on every rank (the RNG states of all ranks are gathered)."""
        state = {
            "model": ddp.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "epoch_step": self.epoch_step,
            "best_ap": self.best_ap,
            "time_budget": self.budget.state_dict() if self.budget else None,
            "rng": ddp.all_gather_objects(capture_rng_state(), self.ctx),
            "config": self.config_text,
        }
        for hook in self.hooks:
            state.update(hook.state_dict(self))
        return state

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Restore everything :meth:`state_dict` saved but the RNG states
        (:meth:`restore_rng`, called last, right before :meth:`fit`)."""
        load_weights(ddp.unwrap(self.model), state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as e:
            detail = next((ln.strip() for ln in str(e).splitlines() if ln.strip()),
                          type(e).__name__)
            raise DataError(f"{source}: checkpoint does not fit this config's optimizer or "
                            f"schedule ({detail})") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.epoch_step = int(state.get("epoch_step", 0))
        self.best_ap = state.get("best_ap")
        self.last_good = source
        if self.budget is not None:
            self.budget.load_state_dict(state.get("time_budget"))
        for hook in self.hooks:
            hook.load_state_dict(self, state, source)

    def restore_rng(self, state: dict[str, Any], source: Path) -> None:
        """The RNG states of ``state`` if the world size matches (otherwise each rank is
        re-seeded from ``seed + rank + iteration``)."""
        rng = state.get("rng") or []
        if len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank])
        else:
            self.notes.append(f"{source}: saved by {len(rng)} process(es), resuming with "
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
        if self.budget is not None:
            self.budget.start(self.iteration)
        self._plan_budget()
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
                for hook in self.hooks:
                    hook.after_epoch(self)
            self._plan_budget()
            final = self.epoch >= o.epochs or self._should_stop()
            self._summary(self.epoch if completed else self.epoch + 1, means,
                          time.perf_counter() - start, completed)
            names = ["last.pth"]
            if self.evaluate is not None and o.val_interval > 0 and (
                    final or (completed and self.epoch % o.val_interval == 0)):
                if self._validate() and self.save_best:
                    names.append("best.pth")
            if completed and o.checkpoint_interval > 0 and self.epoch % o.checkpoint_interval == 0:
                names.append(f"epoch_{self.epoch}.pth")
            self._save(names)
            if self.log.run_dir is not None:
                write_results_csv(self.log.run_dir)
        self.loader.close()
        return TrainResult(self.log.run_dir, self.epoch, self.iteration, self.best_ap,
                           self.val_metrics)

    def _should_stop(self) -> bool:
        # Under DDP rank 0's clock decides, so that every rank stops at the same iteration.
        if self.budget is not None and ddp.broadcast_object(
                self.budget.exhausted(self.iteration), self.ctx):
            return True
        return self.opt.max_iters is not None and self.iteration >= self.opt.max_iters

    def _plan_budget(self) -> None:
        """Re-plan the run under ``train.time_budget`` (see :mod:`vipseg.engine.time_budget`):
        the schedule's length, the number of epochs and the progress total follow the plan."""
        planned = (ddp.broadcast_object(self.budget.plan(self.iteration, self.val_seconds),
                                        self.ctx) if self.budget is not None else None)
        if self.budget is not None and planned:  # rank 0's plan on every rank
            self.budget.set_plan(planned)
            self.opt.epochs = max(self.budget.planned_epochs(self.iters_per_epoch) or 1,
                                  self.epoch)
        total = self.opt.epochs * self.iters_per_epoch
        if self.opt.max_iters is not None:
            total = min(total, self.opt.max_iters)
        if self.budget is not None and self.budget.planned_iters is not None:
            total = min(total, self.budget.planned_iters)
        self.progress.total_iters = total

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One (possibly resumed, possibly truncated) epoch; returns the mean of each loss."""
        skip = self.epoch_step
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        self.progress.start_epoch(epoch, self.opt.epochs, self.iters_per_epoch, skip)
        mark = time.perf_counter()
        for images, targets in self.loader.epoch(epoch, skip):
            data_time = time.perf_counter() - mark
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            values = self._step(images, targets, epoch)
            steps += 1
            self.epoch_step += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            record = self.progress.step(self.iteration, values, lr, data_time,
                                        sums["loss"] / steps)
            if record is not None:
                self.log.record("train", self.iteration, {
                    "epoch": epoch + 1, "iteration": self.iteration, **record})
            if steps == ESTIMATE_AFTER and self.epoch_step < self.iters_per_epoch:
                self._plan_budget()  # a first plan within a long first epoch
            if self._should_stop() and self.epoch_step < self.iters_per_epoch:
                break
            mark = time.perf_counter()
        else:
            self.epoch_step = 0
        self.progress.end_epoch()
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def _step(self, images: list[torch.Tensor], targets: list[dict], epoch: int) -> dict[str, float]:
        """Forward, finite-loss check, backward, clip, optimizer and scheduler step."""
        dev = self.ctx.device
        images, targets = batch_to_device(images, targets, dev)
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
        for hook in self.hooks:
            hook.after_step(self)
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
        why = ("time budget" if self.budget is not None and self.budget.exhausted(self.iteration)
               else "max_iters")
        self.log.info(f"epoch {epoch}/{self.opt.epochs} iter {self.iteration} "
                      f"loss {means.get('loss', float('nan')):.4f} ({parts}) lr {lr:.3g} "
                      f"time {seconds:.1f}s" + ("" if completed else f" (stopped: {why})"))
        self.log.record("epoch", self.iteration, {"epoch": epoch, "iteration": self.iteration,
                                                  **means, "lr": lr, "seconds": seconds,
                                                  "completed": completed})

    def _validate(self) -> bool:
        """Evaluate, log the table and records; True if ``segm/AP`` is a new best."""
        assert self.evaluate is not None
        start = time.perf_counter()
        chosen = [m for m in (h.eval_model(self) for h in self.hooks) if m is not None]
        metrics = self.evaluate(chosen[-1] if chosen else ddp.unwrap(self.model))
        self.val_seconds = time.perf_counter() - start
        self.model.train()
        self.log.info(format_metrics_table(metrics))
        self.log.record("val", self.iteration, {"epoch": self.epoch, "iteration": self.iteration,
                                                **metrics, "seconds": self.val_seconds})
        ap = metrics.get(BEST_KEY)
        new_best = ap is not None and (self.best_ap is None or ap > self.best_ap)
        if new_best:
            self.best_ap = ap
        self.val_metrics = metrics
        self.log.info(f"val epoch {self.epoch} iter {self.iteration}: {BEST_KEY} {ap} "
                      f"(best {self.best_ap})")
        return new_best


# ----------------------------------------------------------------------------------- build
def batch_to_device(images: list[torch.Tensor], targets: list[dict],
                    device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """A collated training batch as plain tensors on ``device`` (other target values kept)."""
    images = [im.as_subclass(torch.Tensor).to(device, non_blocking=True) for im in images]
    targets = [{k: v.as_subclass(torch.Tensor).to(device, non_blocking=True)
                if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
    return images, targets


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


@dataclass(frozen=True)
class Stage:
    """How a run differs from plain training (the SWA stage is one).

    ``run_prefix``: run folders are ``<prefix>_<timestamp>``; ``hooks(model, cfg)``: the
    :class:`TrainHook` list for the built model (before any DDP wrapper); ``save_best``: keep
    ``best.pth``.
    """

    run_prefix: str = "exp"
    hooks: Callable[[nn.Module, Config], list[TrainHook]] = lambda model, cfg: []
    save_best: bool = True


def warm_start(model: nn.Module, checkpoint: str | os.PathLike, *, strict: bool) -> str:
    """Load a checkpoint's model weights (its EMA weights if it has them) into ``model``:
    those whose name and shape fit; ``strict``: any other is a one-line ``DataError``.
    Returns the one-line summary of what was loaded and skipped."""
    report = load_weights(model, checkpoint_weights(load_checkpoint(checkpoint)), checkpoint,
                          strict=strict)
    return f"init_from {checkpoint}: {report.summary()}"


def resolve_resume(resume: str | os.PathLike | bool | None, name_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``True`` → newest ``last.pth`` under ``name_dir``."""
    if resume is None or resume is False:
        return None
    return find_latest(name_dir) if resume is True else Path(resume)


def train(cfg: Config, name: str, *, work_dir: str | os.PathLike = "output",
          data_root: str | os.PathLike | None = None,
          resume: str | os.PathLike | bool | None = None, device: str | None = None,
          model: nn.Module | None = None, stage: Stage | None = None,
          resume_from_older: bool = False) -> TrainResult:
    """Train ``cfg`` as run ``name`` under ``work_dir/name/exp_<timestamp>/``.

    ``resume``: a checkpoint path, or ``True`` for the newest ``last.pth`` under
    ``work_dir/name``; the run then continues in that checkpoint's folder (its config.yaml is
    kept; this session's config goes to ``config_resume_<iteration>.yaml``); a checkpoint
    older than the run's newest, or config changes a resume cannot honour, are refused before
    anything is written (:mod:`vipseg.engine.resume`); ``resume_from_older`` continues from
    an older checkpoint in a new run folder instead. ``data_root``
    replaces ``cfg.dataset.root``, also in the saved config. ``device``: "cpu",
    "cuda" or None (CUDA if available). ``model`` replaces ``build_model(cfg)`` (tests).
    ``cfg.train.init_from`` starts a new run from a checkpoint's model weights (ignored on
    resume). ``stage``: how the run differs from plain training (see :class:`Stage`).
    Under torchrun each process calls this; only rank 0 writes files.
    """
    ctx = ddp.init_distributed(device)
    try:
        return _train(cfg, name, ctx, Path(work_dir), data_root, resume, model,
                      stage or Stage(), resume_from_older)
    finally:
        ddp.shutdown_distributed(ctx)


def _train(cfg: Config, name: str, ctx: ddp.DistContext, work_dir: Path,
           data_root: str | os.PathLike | None, resume: str | os.PathLike | bool | None,
           model: nn.Module | None, stage: Stage,
           resume_from_older: bool = False) -> TrainResult:
    t = cfg.train
    check_amp(t.amp, ctx.device)
    check_writable(work_dir / name / "exp")  # a file in the way is an error before the work
    if data_root is not None:  # recorded in config.yaml and the checkpoints
        cfg = replace(cfg, dataset=replace(cfg.dataset, root=str(data_root)))
    ddp.seed_everything(t.seed + ctx.rank)
    ckpt_path = ddp.broadcast_object(
        resolve_resume(resume, work_dir / name) if ctx.is_main else None, ctx)
    state = load_checkpoint(ckpt_path) if ckpt_path is not None else None
    plan = (plan_resume(ckpt_path, state, cfg, from_older=resume_from_older)
            if state is not None else None)

    # Everything a bad config, file or checkpoint can stop is checked before the run folder
    # is created or written to (images included: headers and truncation).
    train_set = build_dataset(cfg, "train", train=True)
    if len(train_set) == 0:
        raise DataError(f"{train_set.ann_file}: no training images")
    val_set = build_dataset(cfg, "val", train=False) if t.val_interval > 0 else None
    for dataset in (train_set, val_set):
        if dataset is not None:
            dataset.check_image_files()
    index_sampler, batch_sampler = build_batch_sampler(train_set, ctx, t.batch_size, t.seed,
                                                       t.aspect_ratio_grouping)
    model = (model if model is not None else build_model(cfg)).to(ctx.device)
    notes: list[str] = []
    if t.init_from and state is None:
        notes.append(warm_start(model, t.init_from, strict=t.init_strict))
    wants_sync = t.sync_bn or "SyncBN" in (cfg.model.backbone.norm, cfg.model.neck.norm,
                                           cfg.model.roi_heads.norm)
    if train_set.cache_note:
        notes.append(train_set.cache_note)
    model = ddp.sync_batchnorm(model, ctx, wants_sync, notes.append)
    hooks = stage.hooks(model, cfg)
    if t.ema.enabled:
        hooks.append(EmaHook(model, decay=t.ema.decay, warmup=t.ema.warmup))
    optimizer = build_optimizer(model, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, len(batch_sampler), t.epochs)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=t.amp == "fp16")
    config_text = dump_config(cfg)
    model = ddp.wrap_ddp(model, ctx, t.find_unused_parameters)

    val_options = predict_options(cfg, ctx.device)  # exactly what `vipseg test` uses
    run_dir: Path | None = None  # set below, before the first validation

    def evaluate(m: nn.Module) -> dict:
        metrics, results = evaluate_model(m, val_set, device=ctx.device, options=val_options,
                                          distributed=ctx.distributed, return_results=True)
        if run_dir is not None and ctx.is_main:  # what the report draws
            save_val_predictions(run_dir, results, ann_file=val_set.ann_file,
                                 images_dir=val_set.images_dir, classes=val_set.classes)
        return metrics

    trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                      dataset=train_set, index_sampler=index_sampler,
                      batch_sampler=batch_sampler, ctx=ctx, log=RunLog(None), options=t,
                      evaluate=evaluate if val_set is not None else None,
                      config_text=config_text, hooks=hooks, save_best=stage.save_best)
    if state is not None:  # a checkpoint that does not fit fails here, before any write
        trainer.load_state_dict(state, ckpt_path)

    if ctx.is_main:
        if plan is None or plan.run_dir is None:  # a new run, or a branch of an older one
            run_dir = new_run_dir(work_dir / name, prefix=stage.run_prefix)
            atomic_write_text(run_dir / "config.yaml", config_text)
        else:  # the run's config.yaml stays as it started; each session records its own
            run_dir = plan.run_dir
            remove_stale_temps(run_dir)  # left by a killed session
            atomic_write_text(run_dir / f"config_resume_{int(state['iteration'])}.yaml",
                              config_text)
    run_dir = ddp.broadcast_object(run_dir, ctx)
    log = RunLog(run_dir if ctx.is_main else None,
                 purge_step=int(state["iteration"]) + 1 if plan and plan.run_dir else None)
    trainer.log = trainer.progress.log = log
    try:
        log.info(f"run folder: {run_dir}" + (f" ({plan.describe(ckpt_path)})" if plan else ""))
        if state is not None:  # last: nothing between here and the first step draws numbers
            trainer.restore_rng(state, ckpt_path)
        for note in notes + trainer.notes:
            log.info(note)
        result = trainer.fit()
        if ctx.is_main:
            write_final_report(run_dir, log)
        return result
    finally:
        log.close()


def write_final_report(run_dir: Path, log: RunLog) -> None:
    """``run_dir/report.html`` at the end of training (replacing an earlier session's). The
    run's results are all saved by then, so a report that cannot be written is a warning."""
    try:
        log.info(f"report: {write_report([run_dir], force=True)}")
    except Exception as e:  # noqa: BLE001 - the checkpoints and metrics are already safe
        log.info(f"warning: report not written ({type(e).__name__}: {e}); "
                 f"retry with: vipseg report {run_dir} --force")
