"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint holds ``model`` (state dict), and for training state ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``iteration``, ``rng`` and ``config`` (the merged config as YAML text).
Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vipseg.errors import DataError
from vipseg.utils.io import atomic_open


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``DataError`` if missing or invalid."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: not a valid vipseg checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(f"{p}: not a vipseg checkpoint (no 'model' entry)")
    return state
