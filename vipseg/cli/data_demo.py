"""``vipseg data demo`` and ``vipseg data render``: built-in demo and benchmark data."""

from __future__ import annotations

import argparse
import sys

from vipseg.data.tools.demo.render_annotations import render_annotations
from vipseg.data.tools.demo.writer import write_demo_dataset
from vipseg.errors import ConfigError

NATIVE_SIZES = "1624x1234,2336x1752,2456x2054"
MAX_LISTED = 5  # dropped instance ids a warning lists before "..."

DEMO_HELP = """\
Render procedural basketball scenes seen from a high side camera (wooden floor, court lines in
perspective, boards and crowd, two teams of articulated players, referees and a ball) with exact
instance masks: every mask holds exactly the visible pixels painted for that instance, and no
pixel belongs to two instances. Same --seed, same bytes.

Writes OUT/ in the VIPriors layout:
  train/ val/ test/     PNG images (train_00000.png, ...)
  train.json val.json   COCO: categories human (id 1) and ball (id 2), RLE masks
  test.json             the test images only (what a challenge gives you)
  test_gt.json          the test answers, to score a submission on the demo

The defaults train and score on a CPU in minutes; --native renders the challenge's sizes.

examples:
  vipseg data demo --out data/demo
  vipseg data demo --out data/native --native --train 200 --val 40 --test 40 --seed 1"""

RENDER_HELP = """\
Render an image behind every image entry of an existing COCO file (e.g. the real DeepSport
annotations): each annotated instance is painted as a person over its mask (far instances,
by the bottom of their box, first) on a rendered court, and a ball is added beside a hand or
in the air where it stays at least half visible (on background pixels only). Image sizes,
masks and instance counts come from the file.

Every output mask is exactly the pixels painted for its instance and still visible, so no
pixel belongs to two instances: where input masks overlap, the instance painted later keeps
the shared pixels and the earlier one is cut to what it still shows; an instance hidden
entirely is dropped (a warning lists its id). bbox and area are recomputed from the output
masks, never copied from the input. Disjoint input masks are kept exactly.

For ANN.json named STEM.json, writes OUT/ with:
  STEM/<file_name>   one PNG per image entry, sub-folders of file_name kept
  STEM.json          the input's images; its annotations with the masks above (same ids)
                     and category_id mapped by name (human 1, ball 2, other names 3, 4, ...);
                     plus one ball annotation per image (new ids after the largest input id)
so OUT can be used as a dataset root with ann STEM.json and images STEM/.

example:
  vipseg data render --annotations ../shared/data/deepsport/val.json --out data/deepsport_val"""


def parse_size(text: str, given: str | None = None) -> tuple[int, int]:
    """'WxH' -> (width, height) in pixels; ``ConfigError`` if malformed or too small.

    ``given`` is the whole --size value ``text`` came from (a list entry); messages name it.
    """
    where = f"--size {text!r}" if given in (None, text) else f"--size {given!r}: entry {text!r}"
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{where}: expected WIDTHxHEIGHT, e.g. 384x288, or a comma-separated "
                          "list of them") from None
    if w < 64 or h < 64:
        raise ConfigError(f"{where}: width and height must be at least 64 pixels")
    return w, h


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'WxH[,WxH...]' -> [(width, height), ...]; errors name the whole value."""
    return [parse_size(part, text) for part in text.split(",")]


def _progress(msg: str) -> None:
    print(f"\r{msg}   ", end="", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    sizes = parse_sizes(NATIVE_SIZES if args.native else args.size)
    counts = {"train": args.train, "val": args.val, "test": args.test}
    for split, n in counts.items():
        if n < 0:
            raise ConfigError(f"--{split} {n}: the number of images cannot be negative")
    summary = write_demo_dataset(args.out, counts, sizes, seed=args.seed, force=args.force,
                                 progress=None if args.quiet else _progress)
    if not args.quiet:
        print(file=sys.stderr)
    parts = ", ".join(f"{s} {counts[s]} images / {summary[s]} instances" for s in counts)
    print(f"wrote {args.out}: {parts}")
    return 0


def run_render(args: argparse.Namespace) -> int:
    summary = render_annotations(args.annotations, args.out, seed=args.seed, force=args.force,
                                 progress=None if args.quiet else _progress)
    if not args.quiet:
        print(file=sys.stderr)
    dropped = summary["dropped"]
    if dropped:
        ids = ", ".join(str(i) for i in dropped[:MAX_LISTED])
        ids += ", ..." if len(dropped) > MAX_LISTED else ""
        print(f"warning: {args.annotations}: {len(dropped)} input instances hidden entirely by "
              f"instances painted over them were dropped (ids {ids})", file=sys.stderr)
    print(f"wrote {args.out}: {summary['images']} images, {summary['annotations']} input "
          f"instances kept ({summary['cut']} cut to their visible pixels), "
          f"{len(dropped)} dropped, {summary['balls']} balls added")
    return 0


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``demo`` and ``render`` to the ``vipseg data`` group."""
    p = sub.add_parser("demo", help="render a small demo dataset with exact masks (VIPriors layout)",
                       description=DEMO_HELP, formatter_class=formatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    p.add_argument("--train", type=int, default=256, metavar="N", help="training images")
    p.add_argument("--val", type=int, default=40, metavar="N", help="validation images")
    p.add_argument("--test", type=int, default=8, metavar="N", help="test images")
    p.add_argument("--size", default="384x288", metavar="WxH",
                   help="image size in pixels; a comma-separated list cycles through sizes")
    p.add_argument("--native", action="store_true",
                   help=f"use the challenge's image sizes ({NATIVE_SIZES}) instead of --size")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--force", action="store_true", help="replace an --out folder an earlier `vipseg data demo` wrote")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_demo)

    r = sub.add_parser("render", help="render images behind an existing COCO file's masks",
                       description=RENDER_HELP, formatter_class=formatter)
    r.add_argument("--annotations", required=True, metavar="ANN.json",
                   help="COCO file whose images, sizes and masks are rendered")
    r.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    r.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    r.add_argument("--force", action="store_true", help="replace an --out folder an earlier `vipseg data render` wrote")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.set_defaults(func=run_render)
