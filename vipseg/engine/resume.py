"""What ``train --resume`` may do, decided before anything is written.

:func:`plan_resume` checks a loaded checkpoint against its run folder and this session's
config, and raises a one-line error instead of losing results:

- **Never overwrite newer results.** A checkpoint older than the newest one of its run folder
  (fewer optimizer steps than ``last.pth``, ``epoch_K.pth``, ...) is refused: continuing there
  would overwrite them. With ``from_older`` the run continues in a *new* run folder (a branch),
  and the original run is left untouched.
- **Honour the config or refuse it.** This session's config is compared with the one stored
  in the checkpoint. Keys in :data:`HONOURED` act when resumed (how long to train, the SWA
  stage's ``swa.epochs`` included; when to validate and save, data locations, augmentation,
  the schedule's shape, evaluation settings); they are applied and the session's config is
  recorded as ``config_resume_<iteration>.yaml``.
  Any other difference (optimizer settings, whose state the checkpoint restores; model, seed,
  batch size) is a ``ConfigError`` naming the keys.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vipseg.config import Config, config_from_yaml_text
from vipseg.config.typed import to_dict
from vipseg.errors import ConfigError, OutputError, OutputExistsError

#: config keys (dotted prefixes) that a resumed session applies; every other difference
#: between the checkpoint's config and this session's is refused.
HONOURED = (
    "train.epochs", "train.max_iters", "train.val_interval", "train.checkpoint_interval",
    "train.log_interval", "train.num_workers", "train.find_unused_parameters",
    "dataset.root", "dataset.train.", "dataset.val.", "dataset.test.", "dataset.test_scale",
    "augment.", "schedule.", "test.", "swa.epochs",
)
_MAX_LISTED = 3


@dataclass
class ResumePlan:
    """Where a resumed session writes and what it changes.

    ``run_dir``: the checkpoint's run folder, or None for a new one (``branch``: resuming from
    an older checkpoint). ``changes``: ``key -> (checkpoint value, session value)``.
    """

    run_dir: Path | None
    branch: bool
    newest: tuple[Path, int] | None = None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self, source: Path) -> str:
        """One log line: where the session resumes from and what it changes."""
        line = f"resumed from {source}"
        if self.branch and self.newest is not None:
            line += (f", older than {self.newest[0]} (iteration {self.newest[1]}): "
                     "continuing in a new run folder")
        if self.changes:
            line += "; changed: " + ", ".join(f"{k} {a!r} -> {b!r}"
                                              for k, (a, b) in self.changes.items())
        return line


def checkpoint_iteration(path: Path) -> int | None:
    """The ``iteration`` stored in a checkpoint, read without loading its tensors (None if
    the file is not a readable vipseg checkpoint)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["iteration"])
    except Exception:  # a foreign or damaged file does not count as a newer result
        return None


def newest_checkpoint(run_dir: Path, exclude: Path | None = None) -> tuple[Path, int] | None:
    """(path, iteration) of the checkpoint of ``run_dir`` with the most steps."""
    best: tuple[Path, int] | None = None
    for p in sorted(run_dir.glob("*.pth")):
        if exclude is not None and p.resolve() == exclude.resolve():
            continue
        it = checkpoint_iteration(p)
        if it is not None and (best is None or it > best[1]):
            best = (p, it)
    return best


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def config_changes(saved: Config, now: Config) -> dict[str, tuple[Any, Any]]:
    """``key -> (saved value, value now)`` for every leaf key that differs."""
    a, b = _flatten(to_dict(saved)), _flatten(to_dict(now))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _honoured(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HONOURED)


def plan_resume(source: Path, state: dict[str, Any], cfg: Config, *,
                from_older: bool = False) -> ResumePlan:
    """Check resuming ``state`` (loaded from ``source``) with ``cfg``; raise before any write.

    Raises ``ConfigError`` for config changes a resume cannot honour and
    ``OutputExistsError`` for a checkpoint older than its run's newest (unless
    ``from_older``: then the plan is a new run folder).
    """
    saved_text = state.get("config")
    if not isinstance(saved_text, str):
        raise ConfigError(f"{source}: the checkpoint holds no config, so what this session "
                          "changes cannot be checked; it cannot be resumed")
    saved = config_from_yaml_text(saved_text, origin=f"{source} (its saved config)")
    changes = config_changes(saved, cfg)
    refused = [k for k in changes if not _honoured(k)]
    if refused:
        shown = "; ".join(f"{k}: {changes[k][0]!r} in the checkpoint, {changes[k][1]!r} now"
                          for k in refused[:_MAX_LISTED])
        more = f" (and {len(refused) - _MAX_LISTED} more)" if len(refused) > _MAX_LISTED else ""
        raise ConfigError(f"{source}: resume cannot honour {shown}{more}: a resumed run keeps "
                          "the checkpoint's model, optimizer state, seed and batch size; drop "
                          "the change or start a new run")
    iteration = int(state.get("iteration", 0))
    newest = newest_checkpoint(source.parent, exclude=source)
    if newest is not None and newest[1] > iteration:
        if not from_older:
            raise OutputExistsError(
                f"{source}: iteration {iteration} is older than {newest[0]} (iteration "
                f"{newest[1]}); resuming here would overwrite the run's newer results: use "
                "--resume-from-older to continue from it in a new run folder")
        return ResumePlan(None, True, newest, {k: changes[k] for k in changes})
    if not os.access(source.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{source.parent}: the run folder is not writable, so the "
                                "resumed run cannot continue in it")
    return ResumePlan(source.parent, False, newest, {k: changes[k] for k in changes})
