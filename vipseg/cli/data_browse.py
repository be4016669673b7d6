"""``vipseg data browse``: look at training samples as the loader yields them (parsing only)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Render N training samples of CONFIG exactly as the training loader yields them (the whole
augmentation pipeline of the config's `augment` section, copy-paste included) with instance
masks, boxes and class names drawn, as OUT/NNNN_<image_id>.png. The same --seed gives the
same samples. The folder appears complete or not at all; an existing one is replaced only
with --force, and only if an earlier `vipseg data browse` wrote it.

examples:
  vipseg data browse configs/exp/mask_rcnn/tiny_cpu.yaml --data-root data/demo --output-dir browse --num 8
  vipseg data browse CONFIG --output-dir browse --num 4 augment.copy_paste.enabled=false
"""


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``browse`` to the ``vipseg data`` group."""
    parser = sub.add_parser("browse", help="render augmented training samples to PNG files",
                            description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("config", metavar="CONFIG", help="YAML config file (with _base_ files)")
    parser.add_argument("overrides", metavar="key=value", nargs="*", default=[],
                        help="config overrides, e.g. augment.hflip_prob=1.0")
    parser.add_argument("--split", choices=["train", "val", "test"], default="train",
                        help="dataset split to draw images from (always with the training pipeline)")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument("--num", type=int, default=8, metavar="N", help="number of samples to render")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the sample order and augmentations")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="dataset root folder (default: the config's dataset.root)")
    parser.add_argument("--show", action="store_true",
                        help="also show each sample in a window (needs an OpenCV build with GUI "
                             "support; without one the PNG files are still written)")
    parser.add_argument("--force", action="store_true",
                        help="replace an output folder an earlier browse wrote")
    parser.set_defaults(func=run_browse)


def run_browse(args: argparse.Namespace) -> int:
    """Build the training dataset of the config and write the rendered samples."""
    from vipseg.config import load_config
    from vipseg.data.build import build_dataset
    from vipseg.config.loader import REQUIRED_SECTIONS
    from vipseg.data.tools.browse import COMMAND, browse, has_gui
    from vipseg.utils.io import ensure_new_output
    from vipseg.errors import ConfigError

    if args.num < 1:
        raise ConfigError(f"--num {args.num}: must be at least 1")
    cfg = load_config(args.config, args.overrides, require=REQUIRED_SECTIONS)
    root = args.data_root if args.data_root is not None else cfg.dataset.root
    ensure_new_output(args.output_dir, args.force, folder=True, inputs=[args.config, root],
                      command=COMMAND)
    dataset = build_dataset(cfg, args.split, train=True, root=args.data_root)
    show = args.show and has_gui()
    if args.show and not show:
        print("note: --show: this OpenCV build has no window support; writing the PNG files only",
              file=sys.stderr)
    paths = browse(dataset, cfg.dataset.classes, args.output_dir, args.num, seed=args.seed,
                   force=args.force, show=show, inputs=[args.config, root])
    print(f"{args.output_dir}: wrote {len(paths)} samples")
    return 0
