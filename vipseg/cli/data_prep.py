"""``vipseg data`` preparation tools: check, rle2poly, poly2rle, merge, extract-objects,
images-json, norm. Argument parsing only; the work is done in :mod:`vipseg.data.tools`."""

from __future__ import annotations

import argparse
import sys
import textwrap


def _wrap(text: str) -> str:
    return textwrap.fill(text, 92)


def _warn(report: dict) -> None:
    for w in report.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def _help_formatter(base: type) -> type:
    """``base`` without the "(default: ...)" it would append to a required option, a flag,
    an option whose default is None or a help text that already states its default."""

    class Formatter(base):
        def _get_help_string(self, action: argparse.Action) -> str | None:
            if (action.required or action.nargs == 0 or action.default is None
                    or "default" in (action.help or "")):
                return action.help
            return super()._get_help_string(action)

    return Formatter


def _force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="replace existing outputs (never an input, and a folder only if the "
                   "same command wrote it)")


def _check(args: argparse.Namespace) -> int:
    from vipseg.data.tools.check import check, format_summary

    s = check(args.ann, args.images, json_out=args.json, force=args.force)
    print(format_summary(s))
    if args.json:
        print(f"summary written to {args.json}")
    _warn(s)
    return 0


def _convert(to: str):
    def run(args: argparse.Namespace) -> int:
        from vipseg.data.tools.convert import convert, format_report

        r = convert(args.input, args.output, to, force=args.force, tolerance=args.tolerance)
        print(format_report(r))
        _warn(r)
        return 0
    return run


def _merge(args: argparse.Namespace) -> int:
    from vipseg.data.tools.merge import format_report, merge

    r = merge(args.inputs, args.out, images_out=args.images_out, images_dirs=args.images,
              copy=args.copy, force=args.force, keep_ids=args.keep_ids)
    print(format_report(r))
    _warn(r)
    return 0


def _extract(args: argparse.Namespace) -> int:
    from vipseg.data.tools.extract_objects import extract_objects, format_report

    r = extract_objects(args.ann, args.images, args.out, force=args.force,
                        progress=not args.no_progress)
    print(format_report(r))
    _warn(r)
    return 0


def _images_json(args: argparse.Namespace) -> int:
    from vipseg.data.tools.images_json import format_report, images_json

    r = images_json(args.source, args.out, ids_from=args.ids_from, images_dir=args.images,
                    force=args.force)
    print(format_report(r))
    return 0


def _norm(args: argparse.Namespace) -> int:
    from vipseg.data.tools.norm import channel_stats, yaml_snippet
    from vipseg.utils.io import atomic_write_json, ensure_new_output

    if args.json:
        ensure_new_output(args.json, args.force, inputs=[args.ann, args.images])
    s = channel_stats(args.ann, args.images, progress=not args.no_progress)
    print(f"{s['images']} images, {s['pixels']} pixels; paste into the dataset config:")
    print(yaml_snippet(s))
    if args.json:
        atomic_write_json(args.json, s, indent=2)
    return 0


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add this module's tools to the ``vipseg data`` group."""
    formatter = _help_formatter(formatter)
    p = sub.add_parser(
        "check", formatter_class=formatter, help="validate a COCO file and print a summary",
        description=_wrap("Validate a COCO instance file (and, with --images, that every image exists, "
        "decodes in full and has the size the JSON says), then print: images, image sizes, "
        "instances per class, instances per image (min/mean/max), mask area quantiles and the "
        "instances whose mask has several connected parts (their ids go to --json). An "
        "images-only file (no annotations, e.g. a test set) gets the image summary. Problems "
        "are one-line errors (exit 2); empty masks and images without annotations are "
        "warnings."))
    p.add_argument("ann", metavar="ANN.json", help="COCO annotation file")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="image folder to check too (default: check the JSON alone)")
    p.add_argument("--json", metavar="OUT.json", default=None,
                   help="also write the summary as JSON")
    _force(p)
    p.set_defaults(func=_check)

    for name, to, desc in (
        ("rle2poly", "polygon", "RLE masks to polygons. Polygons follow the pixel edges, one per "
         "connected part, holes kept (joined by a zero-width cut), so the round trip is exact "
         "unless --tolerance simplifies them. Empty masks and crowd regions cannot be or are not "
         "written as polygons: they are KEPT AS RLE and listed; no annotation is dropped."),
        ("poly2rle", "rle", "polygon (and list-counts RLE) masks to compressed RLE with string "
         "counts. The report's round trip converts the RLE back to polygons."),
    ):
        p = sub.add_parser(name, formatter_class=formatter, help=f"convert {desc.split('.')[0]}",
                           description=_wrap(f"Convert {desc} Reports the mean and worst "
                                             "round-trip mask IoU. Other fields (bbox, area, "
                                             "...) are copied unchanged."))
        p.add_argument("input", metavar="IN.json", help="COCO annotation file")
        p.add_argument("output", metavar="OUT.json", help="converted file to write")
        p.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                       help="simplify polygon outlines by up to PX pixels; 0 keeps them exact")
        _force(p)
        p.set_defaults(func=_convert(to))

    p = sub.add_parser(
        "merge", formatter_class=formatter, help="merge COCO splits (e.g. train + val)",
        description=_wrap("Merge COCO files into one with fresh image and annotation ids (1..N in "
        "input order). Every file must have the same category names; category ids are mapped "
        "by name to the first file's (e.g. 0-based and 1-based files merge). With --images-out the images are "
        "hard-linked (copied where that fails, or with --copy) into one folder; clashing file "
        "names are renamed (name__2.png) and file_name updated."))
    p.add_argument("inputs", nargs="+", metavar="ANN.json", help="files to merge (two or more)")
    p.add_argument("--out", required=True, metavar="OUT.json", help="merged file to write")
    p.add_argument("--images-out", default=None, metavar="DIR",
                   help="folder to gather every input's images in")
    p.add_argument("--images", nargs="+", default=None, metavar="DIR",
                   help="image folder of each input, in order (default: the folder named like "
                   "the JSON next to it, e.g. train.json -> train/)")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking")
    p.add_argument("--keep-ids", action="store_true",
                   help="keep every image's id and file name (an id or name in two inputs is "
                   "an error); annotation ids are still renumbered")
    _force(p)
    p.set_defaults(func=_merge)

    p = sub.add_parser(
        "extract-objects", formatter_class=formatter,
        help="write every instance as crop + mask (object bank for copy-paste)",
        description=_wrap("Write every ground-truth instance as a cropped RGB PNG of its mask's box "
        "and a 0/255 mask PNG in per-category folders, plus OUT/index.json (categories; objects "
        "with id, image_id, source_image, category_id, category, integer bbox [x, y, w, h], "
        "crop, mask_file, mask RLE of the crop, area). Crowd regions and empty masks are "
        "skipped and listed."))
    p.add_argument("ann", metavar="ANN.json", help="COCO annotation file")
    p.add_argument("--images", required=True, metavar="DIR", help="image folder of ANN.json")
    p.add_argument("--out", required=True, metavar="DIR", help="object bank folder to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _force(p)
    p.set_defaults(func=_extract)

    p = sub.add_parser(
        "images-json", formatter_class=formatter, help="images-only COCO file for a test set",
        description=_wrap("Write an images-only COCO file (no annotations) for the images of a folder "
        "(searched recursively) or of a text file of names (one per line, '#' comments). Sizes "
        "are read from the files, each decoded in full (the check of `data check --images`). Ids are 1..N over the sorted names, or taken (with the "
        "categories) from --ids-from, matching by file_name (or unique base name)."))
    p.add_argument("source", metavar="DIR_OR_LIST", help="image folder or text file of names")
    p.add_argument("--out", required=True, metavar="OUT.json", help="file to write")
    p.add_argument("--ids-from", default=None, metavar="EXISTING.json",
                   help="take image ids and categories from this COCO file")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder the listed names are relative to (default: the list's folder)")
    _force(p)
    p.set_defaults(func=_images_json)

    p = sub.add_parser(
        "norm", formatter_class=formatter, help="per-channel RGB mean/std of the images",
        description=_wrap("Compute the per-channel RGB mean and std (0..255) over all images of "
        "ANN.json, one image at a time, and print the dataset.mean/std YAML lines."))
    p.add_argument("ann", metavar="ANN.json", help="COCO file listing the images")
    p.add_argument("--images", required=True, metavar="DIR", help="image folder of ANN.json")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _force(p)
    p.set_defaults(func=_norm)
