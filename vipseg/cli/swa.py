"""``vipseg swa`` (the SWA stage) and ``vipseg average`` (checkpoint averages and soups)."""

from __future__ import annotations

import argparse

from vipseg.cli.train import add_resume_arguments, resume_request

SWA_DESCRIPTION = """\
Second training stage with stochastic weight averaging: a new run in
WORK_DIR/NAME/exp_swa_<timestamp>/ starts from CKPT's model weights and trains the config's
swa.epochs (default 12) with swa.optimizer (default AdamW, lr 1e-4, weight decay 0.02) at a
constant rate, or swa.lr_policy=cyclic (each epoch from lr down to lr x swa.cycle_ratio). The
average takes the weights every swa.update_every iterations (0: at the end of every epoch).
Writes epoch_K.pth (raw weights) every epoch, swa.pth (the average; BatchNorm statistics
recomputed over the training data), last.pth, config.yaml, log.txt, metrics.jsonl;
validation scores the average. Under torchrun like `vipseg train`. --resume continues a
stopped stage in its own folder (the same CONFIG, CKPT and NAME as it started with), the
average included: every checkpoint of the stage holds it.

examples:
  vipseg swa CONFIG output/NAME/exp_20260101_120000/last.pth NAME_swa
  vipseg swa CONFIG CKPT NAME_swa swa.epochs=6 swa.lr_policy=cyclic swa.cycle_ratio=0.05
  vipseg swa CONFIG CKPT NAME_swa --resume           # newest last.pth under output/NAME_swa/
"""

AVERAGE_DESCRIPTION = """\
Uniform average of the models of several checkpoints, written as one checkpoint (use it with
`vipseg test`). A folder contributes its epoch_K.pth files only. Memory stays at about two
models however many checkpoints; integer buffers are kept, not averaged. Checkpoints of
another architecture or model config are refused.

examples:
  vipseg average output/NAME_swa/exp_swa_20260102_090000 --out avg.pth
  vipseg average a/epoch_10.pth a/epoch_11.pth a/epoch_12.pth --out avg.pth
  vipseg average DIR --out soup.pth --greedy-soup CONFIG     # keep what helps val mask AP
  vipseg average DIR --out avg_bn.pth --bn-refresh CONFIG    # BatchNorm models
"""


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``swa`` and ``average`` to the top-level commands."""
    p = sub.add_parser("swa", help="SWA stage: train on from a checkpoint, averaging weights",
                       description=SWA_DESCRIPTION, formatter_class=formatter)
    p.add_argument("config", metavar="CONFIG", help="YAML config (its swa: section applies)")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint whose weights start the stage")
    p.add_argument("name", metavar="NAME", help="run name: outputs go to WORK_DIR/NAME/")
    p.add_argument("overrides", metavar="key=value", nargs="*", default=[],
                   help="config overrides, e.g. swa.epochs=6 swa.optimizer.lr=5e-5")
    p.add_argument("--work-dir", default="output", help="parent folder of all runs")
    p.add_argument("--data-root", default=None, help="dataset root folder, recorded as "
                   "dataset.root (default: the config's dataset.root)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="device (default: cuda if available, else cpu)")
    add_resume_arguments(p)
    p.set_defaults(func=run_swa_command)

    p = sub.add_parser("average", help="average checkpoints (uniform, or a greedy soup)",
                       description=AVERAGE_DESCRIPTION, formatter_class=formatter)
    p.add_argument("inputs", metavar="CKPT_OR_DIR", nargs="+",
                   help="checkpoint files, or folders (their epoch_K.pth files)")
    p.add_argument("--out", metavar="FILE", required=True, help="the averaged checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--bn-refresh", metavar="CONFIG", default=None,
                   help="recompute BatchNorm statistics over this config's training data")
    p.add_argument("--greedy-soup", metavar="CONFIG", default=None,
                   help="greedy soup on this config's val split: add checkpoints by val mask "
                   "AP, keep each only if the soup's AP does not drop")
    p.add_argument("--data-root", default=None, help="dataset root of the CONFIGs")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="device for --bn-refresh / --greedy-soup (default: cuda if available)")
    p.set_defaults(func=run_average_command)


def run_swa_command(args: argparse.Namespace) -> int:
    """Load the config with overrides and run the SWA stage."""
    from vipseg.config import load_config
    from vipseg.engine.swa import SWA_FILE, run_swa

    overrides = list(args.overrides)
    resume = resume_request(args, overrides)
    cfg = load_config(args.config, overrides)
    result = run_swa(cfg, args.checkpoint, args.name, work_dir=args.work_dir,
                     data_root=args.data_root, device=args.device, resume=resume,
                     resume_from_older=args.resume_from_older)
    if result.run_dir is not None:
        ap = result.val_metrics.get("segm/AP")
        shown = "n/a" if ap is None else f"{ap:.4f}"
        print(f"done: {result.epoch} SWA epochs, iteration {result.iteration}, segm/AP of the "
              f"average {shown}; {result.run_dir / SWA_FILE}")
    return 0


def run_average_command(args: argparse.Namespace) -> int:
    """Average, soup and/or BN-refresh the given checkpoints into ``--out``."""
    from vipseg.config import load_config
    from vipseg.engine.averaging import average_to_file
    from vipseg.engine.distributed import resolve_device

    soup = load_config(args.greedy_soup) if args.greedy_soup else None
    bn = load_config(args.bn_refresh) if args.bn_refresh else None
    device = resolve_device(args.device) if soup is not None or bn is not None else "cpu"
    average_to_file(args.inputs, args.out, force=args.force, soup_cfg=soup, bn_cfg=bn,
                    data_root=args.data_root, device=device)
    return 0
