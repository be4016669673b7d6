"""``vipseg train CONFIG NAME``: train a model from a config (argument parsing only)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

RESUME_LATEST = "__latest__"

DESCRIPTION = """\
Train the model of CONFIG from scratch. Outputs go to WORK_DIR/NAME/exp_<timestamp>/
(a new folder every run, never overwritten): config.yaml (merged config), log.txt,
metrics.jsonl (one JSON per logged iteration and validation), TensorBoard events,
last.pth, best.pth (best val segm/AP), epoch_K.pth (every train.checkpoint_interval
epochs), results.csv (one row per epoch), val_predictions.segm.json (the last validation's
predictions) and report.html (see `vipseg report`). --resume continues a run in its own folder
(config.yaml is kept; the resumed session's config goes to config_resume_<iteration>.yaml). A
checkpoint older than the run's newest is refused (it would overwrite newer results) unless
--resume-from-older, which continues in a new run folder; config changes a resume cannot
honour (optimizer, model, seed, batch size) are refused. Nothing is written before these
checks pass.

Distributed: torchrun --nproc_per_node=N -m vipseg train CONFIG NAME ...
(NCCL on GPUs, gloo on CPU; only rank 0 writes). See docs/training.md.

examples:
  vipseg train configs/exp/mask_rcnn/tiny_cpu.yaml tiny --data-root data/demo
  vipseg train CONFIG NAME train.epochs=24 optimizer.lr=0.01
  vipseg train CONFIG NAME --time-budget 10m       # schedule compressed to 10 minutes
  vipseg train CONFIG NAME --resume                 # newest last.pth under output/NAME/
  vipseg train CONFIG NAME --resume output/NAME/exp_20260101_120000/last.pth
  vipseg train CONFIG NAME --init-from other/best.pth   # warm start: model weights only
"""


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``train`` to the top-level commands."""
    parser = sub.add_parser("train", help="train a model from a config", description=DESCRIPTION,
                            formatter_class=formatter)
    parser.add_argument("config", metavar="CONFIG", help="YAML config file (with _base_ files)")
    parser.add_argument("name", metavar="NAME", help="run name: outputs go to WORK_DIR/NAME/")
    parser.add_argument("overrides", metavar="key=value", nargs="*", default=[],
                        help="config overrides, e.g. train.epochs=3 optimizer.lr=0.01")
    parser.add_argument("--work-dir", default="output", help="parent folder of all runs")
    parser.add_argument("--data-root", default=argparse.SUPPRESS,
                        help="dataset root folder, recorded as dataset.root in config.yaml "
                        "(default: the config's dataset.root)")
    add_resume_arguments(parser)
    parser.add_argument("--time-budget", metavar="DURATION", default=argparse.SUPPRESS,
                        help="stop at this wall-clock budget (600, 90s, 10m, 1h30m) with the "
                        "LR schedule compressed to fit; same as train.time_budget=DURATION")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=argparse.SUPPRESS,
                        help="device (default: cuda if available, else cpu)")
    parser.add_argument("--init-from", metavar="CKPT", default=argparse.SUPPRESS,
                        help="start from CKPT's model weights (train.init_from; weights that "
                        "do not fit are skipped and listed, unless train.init_strict=true)")
    parser.set_defaults(func=run_train)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume [CKPT]`` and ``--resume-from-older`` (``vipseg train`` and ``vipseg swa``)."""
    parser.add_argument("--resume", nargs="?", const=RESUME_LATEST, default=argparse.SUPPRESS,
                        metavar="CKPT",
                        help="resume from CKPT, or without a value from the newest last.pth "
                        "under WORK_DIR/NAME/; the run continues in the checkpoint's folder")
    parser.add_argument("--resume-from-older", action="store_true",
                        help="allow --resume from a checkpoint older than its run's newest "
                        "(e.g. epoch_1.pth of a finished run): the run continues in a NEW run "
                        "folder, the original is left untouched")


def resume_request(args: argparse.Namespace, overrides: list[str]) -> str | bool | None:
    """What ``--resume`` asks for: a checkpoint path, ``True`` (the newest ``last.pth``) or
    None. ``--resume key=value`` (argparse took an override as the path) puts the override
    back into ``overrides``."""
    from vipseg.errors import ConfigError

    resume = getattr(args, "resume", None)
    if resume not in (None, RESUME_LATEST) and "=" in resume and not Path(resume).exists():
        overrides.insert(0, resume)
        resume = RESUME_LATEST
    if args.resume_from_older and resume is None:
        raise ConfigError("--resume-from-older needs --resume CKPT")
    return True if resume == RESUME_LATEST else resume


def run_train(args: argparse.Namespace) -> int:
    """Load the config with overrides and train; prints the final validation AP if any."""
    from vipseg.config.loader import REQUIRED_SECTIONS, load_config
    from vipseg.engine.trainer import train

    overrides = list(args.overrides)
    resume = resume_request(args, overrides)
    if hasattr(args, "time_budget"):
        overrides.append(f"train.time_budget={args.time_budget}")
    cfg = load_config(args.config, overrides, require=REQUIRED_SECTIONS)
    if hasattr(args, "init_from"):  # recorded in config.yaml as train.init_from
        cfg = replace(cfg, train=replace(cfg.train, init_from=args.init_from))
    result = train(cfg, args.name, work_dir=args.work_dir,
                   data_root=getattr(args, "data_root", None),
                   resume=resume,
                   device=getattr(args, "device", None),
                   resume_from_older=args.resume_from_older)
    if result.run_dir is not None:
        best = "n/a" if result.best_ap is None else f"{result.best_ap:.4f}"
        print(f"done: epoch {result.epoch}, iteration {result.iteration}, best segm/AP {best}; "
              f"outputs in {result.run_dir}")
    return 0
