"""Training progress: a tqdm bar on a terminal, one text line per ``log_interval`` elsewhere.

Written to a file or a CI log a redrawn bar repeats itself hundreds of times per epoch, so
when the stream (stderr by default) is not a terminal the bar is off and every
``log_interval`` iterations one line is printed instead (and appended to ``log.txt``)::

    epoch 2/12 iter 40/240 loss 1.2345 (loss_box_reg 0.2210 ...) lr 0.002 0.512 s/it
    data 0.012 s eta 0:01:42 mem 812 MB

On a terminal the same line goes to ``log.txt`` only and the bar shows the running loss.
Times are wall-clock seconds averaged over the iterations since the previous line; ``data``
is the time the loop waited for the next batch; ``eta`` is the remaining iterations of the
planned run times the mean s/iter of this session; ``mem`` is the peak CUDA memory allocated
on a GPU, the peak resident set size of the process on CPU (MiB).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import IO, Any

import torch
from tqdm import tqdm

from vipseg.engine.run_dir import RunLog


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far in MiB: CUDA memory allocated on ``device``, else the process's
    peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``-`` for an unknown or negative duration)."""
    if not seconds >= 0:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of the training loop for one process.

    Args:
        log: where lines go (``log.info``); a disabled log (ranks other than 0) shows nothing.
        device: for :func:`peak_memory_mb`.
        log_interval: iterations between lines (and records).
        bar: show the tqdm bar; None: when ``stream`` is a terminal.
        stream: where the bar is drawn (stderr).
    """

    def __init__(self, log: RunLog, device: torch.device, log_interval: int,
                 bar: bool | None = None, stream: IO[str] | None = None) -> None:
        self.log, self.device = log, device
        self.interval = max(1, log_interval)
        self.stream = stream if stream is not None else sys.stderr
        self.bar_mode = bool(bar) if bar is not None else is_terminal(self.stream)
        self.total_iters = 0  # the planned length of the run (may change: time budget)
        self._bar: tqdm | None = None
        self._session_start: float | None = None
        self._session_iters = 0
        self._last_time = 0.0
        self._window: dict[str, float] = {"iters": 0, "data": 0.0}
        self._epoch_text = ""

    def start_epoch(self, epoch: int, epochs: int, iters_per_epoch: int, done: int) -> None:
        """Begin epoch ``epoch`` (0-based) of ``epochs``; ``done`` batches already run."""
        now = time.perf_counter()
        if self._session_start is None:
            self._session_start = now
        self._last_time = now
        self._window = {"iters": 0, "data": 0.0}
        self._epoch_text = f"epoch {epoch + 1}/{epochs}"
        if self.bar_mode and self.log.enabled:
            self._bar = tqdm(total=iters_per_epoch, initial=done, desc=self._epoch_text,
                             dynamic_ncols=True, leave=False, file=self.stream)

    def step(self, iteration: int, values: dict[str, float], lr: float,
             data_time: float, running_loss: float) -> dict[str, Any] | None:
        """After optimizer step ``iteration`` (1-based, global): update the bar; every
        ``log_interval`` iterations print the line and return the record to log
        (``lr``, the losses, ``sec_per_iter``, ``data_time``, ``eta_s``, ``memory_mb``)."""
        self._session_iters += 1
        self._window["iters"] += 1
        self._window["data"] += data_time
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{running_loss:.4f}", lr=f"{lr:.3g}")
            self._bar.update()
        if iteration % self.interval:
            return None
        now = time.perf_counter()
        n = self._window["iters"]
        sec_per_iter = (now - self._last_time) / n
        mean_iter = (now - (self._session_start or now)) / max(self._session_iters, 1)
        eta = max(self.total_iters - iteration, 0) * mean_iter
        record = {"lr": lr, **values, "sec_per_iter": sec_per_iter,
                  "data_time": self._window["data"] / n, "eta_s": eta,
                  "memory_mb": peak_memory_mb(self.device)}
        self._last_time = now
        self._window = {"iters": 0, "data": 0.0}
        self.log.info(self.format_line(iteration, record), echo=not self.bar_mode)
        return record

    def format_line(self, iteration: int, record: dict[str, Any]) -> str:
        """The one-line progress message of ``record`` (see the module docstring)."""
        losses = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                          if k.startswith("loss_"))
        total = f"/{self.total_iters}" if self.total_iters else ""
        return (f"{self._epoch_text} iter {iteration}{total} loss {record.get('loss', float('nan')):.4f}"
                f" ({losses}) lr {record['lr']:.3g} {record['sec_per_iter']:.3f} s/it "
                f"data {record['data_time']:.3f} s eta {format_duration(record['eta_s'])} "
                f"mem {record['memory_mb']:.0f} MB")

    def end_epoch(self) -> None:
        """Close the epoch's bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an open terminal (progress bars only draw on one)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False
