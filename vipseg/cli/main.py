"""``vipseg`` console script: grouped subcommands, one-line errors, ``--debug`` tracebacks."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

from vipseg import __version__
from vipseg.cli import data, report, swa, test, train
from vipseg.errors import VipsegError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps description line breaks."""


class _Parser(argparse.ArgumentParser):
    """Usage errors end, like every vipseg error, with one line starting ``error:``."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vipseg",
        description="Train instance-segmentation models from scratch on small COCO datasets "
        "and turn them into scored submissions.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"vipseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (data, train, swa, test, report):
        module.register(sub, _Formatter)
    return parser


def command_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ``args`` runs, e.g. the one of ``vipseg data check``,
    so that errors show that command's usage line."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or getattr(args, subs[0].dest, None) is None:
            return parser
        parser = subs[0].choices[getattr(args, subs[0].dest)]


class _LineTracker:
    """Wraps stderr and remembers whether the last character written ended a line, so an
    error printed after a progress bar's ``\\r`` still starts its own line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _quiet_libraries() -> None:
    """Silence library log lines that only repeat what a vipseg error then says (OpenCV's
    ``[ WARN ]`` on a truncated image)."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input, 1 failure).

    Every user error is one line ``error: ...`` on stderr, starting its own line."""
    stderr = sys.stderr
    sys.stderr = tracker = _LineTracker(stderr)
    try:
        return _main(argv, tracker)
    finally:
        sys.stderr = stderr


def _main(argv: Sequence[str] | None, tracker: _LineTracker) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a trailing `key=value ...` positional before later options are seen, so
    # overrides given after an option (`test CFG CKPT --valid a=1`) come back as extras.
    is_override = [hasattr(args, "overrides") and "=" in e and not e.startswith("-")
                   for e in extra]
    if any(is_override):
        args.overrides = list(args.overrides or []) + [e for e, o in zip(extra, is_override) if o]
    unknown = [e for e, o in zip(extra, is_override) if not o]
    if unknown:
        command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        result = args.func(args)
    except VipsegError as e:
        if args.debug:
            raise
        _close_bars()
        start = "" if tracker.at_line_start else "\n"
        message = " ".join(str(e).split("\n"))  # one line, whatever the message holds
        print(f"{start}error: {message}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        _close_bars()
        print(("" if tracker.at_line_start else "\n") + "interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def _close_bars() -> None:
    """Close progress bars an error left open (they would redraw over the message)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
