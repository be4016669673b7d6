"""``vipseg data`` tools (placeholder: filled in by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add this module's tools to the ``vipseg data`` group."""
