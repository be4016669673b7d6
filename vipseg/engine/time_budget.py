"""``train.time_budget``: stop at a wall-clock budget, the LR schedule compressed to fit.

As ultralytics' ``time=``: the run's length is re-planned from what it has measured. After
``ESTIMATE_AFTER`` iterations of a session and at the end of every epoch, the planned number
of iterations becomes ``iteration + (budget - elapsed - last validation) / (s/iter)``, where
s/iter is the session's wall time (validations and checkpoints included) over its
iterations; the schedule built for ``train.epochs`` (``original_iters``) is rescaled to that
length: the LR at iteration ``i`` is the original schedule's at ``i * original / planned``
(warm-up and step epochs rescale with it), so cosine and step schedules end where they would
have ended. The plan may be shorter or longer than ``train.epochs``. The loop stops when the
plan is done or the budget is spent (checked after every iteration), then validates and
saves as at any end, so a run overshoots its budget by at most one iteration, one validation
and the final writes.

The clock starts when the training loop starts (set-up excluded); a resumed run continues
from the elapsed time and plan stored in its checkpoint (``time_budget`` entry).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from torch.optim.lr_scheduler import LambdaLR

ESTIMATE_AFTER = 20  # iterations of a session before the first plan (within the first epoch)


class TimeBudget:
    """A wall-clock budget for the training loop and the plan that fits in it.

    Args:
        seconds: the budget.
        scheduler: the per-iteration ``LambdaLR`` built for ``original_iters`` iterations.
        original_iters: ``train.epochs * iterations per epoch``.
    """

    def __init__(self, seconds: float, scheduler: LambdaLR, original_iters: int) -> None:
        self.seconds = float(seconds)
        self.scheduler = scheduler
        self.original_iters = max(1, int(original_iters))
        self._base: list[Callable[[int], float]] = list(scheduler.lr_lambdas)
        self.elapsed_before = 0.0  # spent by earlier sessions of a resumed run
        self.planned_iters: int | None = None
        self._start = time.perf_counter()
        self._start_iteration = 0

    def start(self, iteration: int) -> None:
        """Start the clock of this session at global ``iteration``."""
        self._start = time.perf_counter()
        self._start_iteration = iteration

    def elapsed(self) -> float:
        """Seconds spent so far, earlier sessions included."""
        return self.elapsed_before + time.perf_counter() - self._start

    def exhausted(self, iteration: int) -> bool:
        """True when the budget is spent or the plan is done at ``iteration``."""
        planned = self.planned_iters is not None and iteration >= self.planned_iters
        return planned or self.elapsed() >= self.seconds

    def plan(self, iteration: int, reserve_s: float = 0.0) -> int | None:
        """Re-plan the run's length at ``iteration`` keeping ``reserve_s`` seconds (the final
        validation) free; rescales the schedule. None until this session has iterated."""
        done = iteration - self._start_iteration
        if done <= 0:
            return self.planned_iters
        per_iter = (time.perf_counter() - self._start) / done
        left = self.seconds - self.elapsed() - reserve_s
        self.set_plan(iteration + max(0, int(left / per_iter)) if per_iter > 0 else iteration)
        return self.planned_iters

    def set_plan(self, planned_iters: int) -> None:
        """Plan ``planned_iters`` iterations: the schedule's length becomes that."""
        self.planned_iters = max(1, int(planned_iters))
        ratio = self.original_iters / self.planned_iters
        self.scheduler.lr_lambdas = [_rescaled(fn, ratio) for fn in self._base]
        step = self.scheduler.last_epoch
        lrs = [base * fn(step) for base, fn in zip(self.scheduler.base_lrs,
                                                    self.scheduler.lr_lambdas)]
        for group, lr in zip(self.scheduler.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs  # what get_last_lr() reports

    def planned_epochs(self, iters_per_epoch: int) -> int | None:
        """Epochs the plan spans (the last one may be cut short)."""
        if self.planned_iters is None:
            return None
        return math.ceil(self.planned_iters / max(1, iters_per_epoch))

    def state_dict(self) -> dict[str, Any]:
        """For the checkpoint: elapsed seconds and the plan."""
        return {"seconds": self.seconds, "elapsed": self.elapsed(),
                "planned_iters": self.planned_iters}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue a resumed run's clock and plan (nothing stored: a fresh budget)."""
        if not state:
            return
        self.elapsed_before = float(state.get("elapsed", 0.0))
        if state.get("planned_iters"):
            self.set_plan(int(state["planned_iters"]))


def _rescaled(fn: Callable[[int], float], ratio: float) -> Callable[[int], float]:
    """``fn`` on a time axis stretched by ``ratio`` (a plain function: ``LambdaLR`` does not
    put it in its state dict)."""
    def factor(it: int) -> float:
        return fn(int(it * ratio))
    return factor
