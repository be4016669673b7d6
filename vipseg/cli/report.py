"""``vipseg report RUN_DIR [RUN_DIR ...]``: the HTML report of a run, or a comparison."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write the HTML report of a training run: config, timings, training and validation curves,
the final AP table, precision-recall curves per class, the COCO error breakdown and the 8
worst and 8 best validation images (predictions beside ground truth). One file with every
image embedded (no network needed); the plots are also written as PNG files beside it.
`vipseg train` writes RUN_DIR/report.html at its end; a run still training, or not yet
validated, gets a report of what exists that says what is missing.

With several runs: one page comparing them (curves overlaid, AP tables side by side).

examples:
  vipseg report output/tiny/exp_20260101_120000            # -> .../report.html
  vipseg report output/tiny/exp_1 output/tiny/exp_2 --out compare.html
"""


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``report`` to the top-level commands."""
    parser = sub.add_parser("report", help="HTML report of a run (or compare runs)",
                            description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("runs", metavar="RUN_DIR", nargs="+",
                        help="run folder(s): WORK_DIR/NAME/exp_<timestamp>")
    parser.add_argument("--out", metavar="FILE", default=argparse.SUPPRESS,
                        help="HTML file to write (default: RUN_DIR/report.html; needed with "
                        "several runs); its plots go to a folder named after it")
    parser.add_argument("--force", action="store_true", help="replace an existing report")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from vipseg.engine.report import write_report

    path = write_report(args.runs, getattr(args, "out", None), force=args.force)
    print(f"report: {path}")
    return 0
