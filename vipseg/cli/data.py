"""``vipseg data ...``: the data-preparation command group."""

from __future__ import annotations

import argparse

from vipseg.cli import data_browse, data_demo, data_prep


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    parser = sub.add_parser(
        "data", help="prepare and inspect datasets", formatter_class=formatter,
        description="Validate, convert, merge and inspect COCO datasets; render demo data.",
    )
    tools = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    for module in (data_prep, data_demo, data_browse):
        module.register(tools, formatter)
