"""Checkpoints: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint holds ``model`` (state dict), and for training state ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``iteration``, ``rng`` and ``config`` (the merged config as YAML text);
with ``train.ema`` also ``ema`` (the EMA weights, which :func:`checkpoint_weights` prefers).
Everything loads with ``torch.load(weights_only=True)``: RNG states are stored as tensors, ints
and lists (:func:`capture_rng_state`), never as NumPy objects.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vipseg.errors import DataError
from vipseg.utils.io import atomic_open


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``DataError`` if missing or invalid.

    ``mmap``: map the file instead of reading it, so that only the tensors used are paged in
    (averaging reads ``model`` and skips the optimizer state).
    """
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
            state = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        raise DataError(f"{p}: not a valid vipseg checkpoint ({_load_failure(e)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(f"{p}: not a vipseg checkpoint (no 'model' entry)")
    return state


def checkpoint_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint: its ``ema`` weights when it has them (a run with
    ``train.ema.enabled``, whose validation and ``best.pth`` used them), else ``model``."""
    return state.get("ema") or state["model"]


@dataclass
class LoadReport:
    """What :func:`load_weights` did: tensors loaded, and the keys it could not use."""

    loaded: int
    # "key (checkpoint [3, 64] vs model [4, 64])"
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks

    @property
    def complete(self) -> bool:
        """True when every model tensor was loaded and every checkpoint tensor used."""
        return not (self.mismatched or self.missing or self.unexpected)

    def summary(self) -> str:
        """One line: how many loaded, which were skipped and why."""
        parts = [f"{self.loaded} tensors loaded"]
        for label, keys in (("shape differs", self.mismatched),
                            ("not in checkpoint, left as initialised", self.missing),
                            ("not in model, ignored", self.unexpected)):
            if keys:
                more = f", ... ({len(keys) - 4} more)" if len(keys) > 4 else ""
                shown = ", ".join(keys[:4]) + more
                parts.append(f"{len(keys)} skipped ({label}): {shown}")
        return "; ".join(parts)


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str | os.PathLike,
                 *, strict: bool = True) -> LoadReport:
    """Copy the tensors of ``weights`` whose name and shape fit into ``model``.

    ``strict``: any key that does not fit (shape differs, missing, unexpected) is a one-line
    ``DataError`` naming ``source`` and the first such key, and nothing is loaded. Otherwise
    the fitting tensors are loaded and the returned report lists the others.
    """
    upgrade = getattr(model, "upgrade_state_dict", None)  # older checkpoints' key names
    weights = upgrade(weights) if upgrade is not None else weights
    own = model.state_dict()
    fitting, mismatched = {}, []
    for key, value in weights.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            mismatched.append(f"{key} (checkpoint {list(value.shape)} vs model "
                              f"{list(own[key].shape)})")
        elif key in own:
            fitting[key] = value
    report = LoadReport(loaded=len(fitting), mismatched=mismatched,
                        missing=[k for k in own if k not in weights],
                        unexpected=[k for k in weights if k not in own])
    if strict and not report.complete:
        raise DataError(f"{source}: weights do not match the config's model ({report.summary()})")
    model.load_state_dict(fitting, strict=False)
    return report


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
