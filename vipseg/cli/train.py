"""``vipseg train`` (placeholder: filled in by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``train`` to the top-level commands."""
