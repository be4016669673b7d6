"""The run folder of a training job and what is logged into it.

``<work-dir>/<name>/exp_<YYYYmmdd_HHMMSS>/`` holds ``config.yaml``, ``log.txt`` (every message
printed), ``metrics.jsonl`` (one JSON object per logged training iteration or validation),
TensorBoard event files and the checkpoints. A new run never reuses an existing folder: a
``_1``, ``_2``, ... suffix is added when the timestamped name is taken. Only rank 0 creates and
writes it; other ranks hold a silent :class:`RunLog`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vipseg.errors import OutputError, OutputExistsError
from vipseg.utils.io import check_writable

MAX_SUFFIX = 1000


def new_run_dir(parent: str | os.PathLike, now: datetime | None = None,
                prefix: str = "exp") -> Path:
    """Create and return a fresh ``parent/<prefix>_<timestamp>[_k]`` folder (never an existing
    one); ``prefix`` is ``exp`` for training runs, ``exp_swa`` for SWA stages."""
    parent = Path(parent)
    base = f"{prefix}_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"
    check_writable(parent / base)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{parent}: cannot create the run folder there ({e.strerror or e})") from None
    for k in range(MAX_SUFFIX):
        candidate = parent / (base if k == 0 else f"{base}_{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise OutputError(f"{candidate}: cannot create the run folder ({e.strerror or e})") from None
        return candidate
    raise OutputExistsError(f"{parent / base}: {MAX_SUFFIX} run folders with this name exist")


class RunLog:
    """Messages to stdout + ``log.txt``, records to ``metrics.jsonl`` + TensorBoard.

    Args:
        run_dir: the run folder, or None for a silent logger (ranks other than 0).
        purge_step: on resume, TensorBoard drops events at or after this iteration.
    """

    def __init__(self, run_dir: Path | None, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        self._log = self._metrics = self._tb = None
        if run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self._log = open(run_dir / "log.txt", "a", encoding="utf-8")
        self._metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._tb = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    @property
    def enabled(self) -> bool:
        """True on the process that writes (rank 0)."""
        return self.run_dir is not None

    def info(self, message: str, echo: bool = True) -> None:
        """Print ``message`` (without breaking a progress bar; not when ``echo`` is false)
        and append it to log.txt."""
        if self._log is None:
            return
        if echo:
            tqdm.write(message, file=sys.stdout)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in message.splitlines() or [""]:
            self._log.write(f"{stamp} {line}\n")
        self._log.flush()

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append ``{"type": kind, **values}`` to metrics.jsonl; numbers go to TensorBoard
        as ``<kind>/<key>`` at ``step`` (the global iteration)."""
        if self._metrics is None or self._tb is None:
            return
        row = {"type": kind, **{k: _jsonable(v) for k, v in values.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and key not in ("epoch", "iteration"):
                self._tb.add_scalar(f"{kind}/{key}", value, step)
        self._tb.flush()

    def close(self) -> None:
        """Flush and close every file."""
        for f in (self._log, self._metrics):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()
        self._log = self._metrics = self._tb = None


def _jsonable(value: Any) -> Any:
    """Floats that JSON can hold (NaN / inf become None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
