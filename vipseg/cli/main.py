"""``vipseg`` console script: grouped subcommands, one-line errors, ``--debug`` tracebacks."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vipseg import __version__
from vipseg.cli import data, test, train
from vipseg.errors import VipsegError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps description line breaks."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vipseg",
        description="Train instance-segmentation models from scratch on small COCO datasets "
        "and turn them into scored submissions.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"vipseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (data, train, test):
        module.register(sub, _Formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 1 failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a trailing `key=value ...` positional before later options are seen, so
    # overrides given after an option (`test CFG CKPT --valid a=1`) come back as extras.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result = args.func(args)
    except VipsegError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
