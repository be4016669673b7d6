"""``vipseg test``, ``vipseg eval``, ``vipseg predict`` (placeholder: filled in by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``test``, ``eval`` and ``predict`` to the top-level commands."""
