"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint holds ``model`` (state dict), and for training state ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``iteration``, ``rng`` and ``config`` (the merged config as YAML text).
Everything loads with ``torch.load(weights_only=True)``: RNG states are stored as tensors, ints
and lists (:func:`capture_rng_state`), never as NumPy objects.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
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
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected a checkpoint file (e.g. {p / 'last.pth'})")
    if not p.is_file():
        raise DataError(f"{p}: checkpoint not found")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DataError(f"{p}: cannot read the checkpoint ({e.strerror or e})") from None
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise DataError(f"{p}: not a PyTorch checkpoint file (neither a zip archive nor a "
                        "pickle; the file may be truncated or something else named .pth)")
    try:
        with warnings.catch_warnings():  # torch warns about what the error below reports
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        raise DataError(f"{p}: not a valid vipseg checkpoint ({_load_failure(e)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(f"{p}: not a vipseg checkpoint (no 'model' entry)")
    return state


def _load_failure(error: Exception) -> str:
    """The first sentence of why ``torch.load`` failed, without torch's advice to retry with
    ``weights_only=False`` (unsafe, and no vipseg checkpoint needs it)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(error).__name__)
    return line.split(". ")[0].rstrip(".")


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA RNG states as tensors, ints and lists (weights_only-safe)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states restored when the device count fits)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def find_latest(folder: str | os.PathLike, name: str = "last.pth") -> Path:
    """The most recently written ``name`` anywhere under ``folder``; ``DataError`` if none."""
    found = sorted(Path(folder).rglob(name), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"{folder}: no {name} found to resume from")
    return found[-1]
