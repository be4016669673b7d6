"""train.time_budget: the schedule compressed to the plan, and a run that stops in time."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from tests.engine.test_trainer import records, shapes, tiny_cfg  # noqa: F401 (fixture)
from tests.helpers import one_torch_thread  # noqa: F401 (fixture)
from vipseg.config.duration import parse_duration
from vipseg.engine.checkpoint import load_checkpoint
from vipseg.engine.optim import lr_factor_fn
from vipseg.engine.time_budget import TimeBudget
from vipseg.engine.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cosine(total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    fn = lr_factor_fn(policy="cosine", total_iters=total, iters_per_epoch=10, warmup_iters=10,
                      min_lr_ratio=0.1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, fn)


def test_the_plan_rescales_the_schedule_to_its_length():
    opt, sched = cosine(100)
    budget = TimeBudget(60, sched, original_iters=100)
    for _ in range(5):
        opt.step(), sched.step()
    budget.set_plan(25)  # a quarter of the original length
    assert opt.param_groups[0]["lr"] == pytest.approx(cosine_lr(20))  # 5 * 4 original steps
    lrs = []
    for _ in range(20):
        opt.step(), sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(0.1)  # the end of the cosine at the planned length
    state = budget.state_dict()
    assert state["planned_iters"] == 25 and 0 <= state["elapsed"] < 60

    opt2, sched2 = cosine(100)  # resume: scheduler state first, then the budget's
    sched2.load_state_dict(sched.state_dict())
    again = TimeBudget(60, sched2, original_iters=100)
    again.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[-1])
    assert again.elapsed() >= state["elapsed"]


def cosine_lr(original_step: int) -> float:
    opt, sched = cosine(100)
    for _ in range(original_step):
        opt.step(), sched.step()
    return opt.param_groups[0]["lr"]


def test_durations():
    assert [parse_duration(v) for v in (600, "90s", "10m", "1.5h", "1h30m", "45")] == \
        [600, 90, 600, 5400, 5400, 45]
    for bad in ("10x", "m10", "30m1h", "0s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


class Slow(nn.Module):
    """A one-parameter 'detector' whose training step takes about ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.seconds = seconds

    def forward(self, images, targets=None):
        time.sleep(self.seconds)
        x = torch.stack([im.float().mean() / 255 for im in images]).mean()
        return {"loss_fake": ((self.w * x - 1.0) ** 2).sum()}


def test_time_budget_stops_in_time_and_leaves_a_complete_run(shapes, tmp_path, monkeypatch):
    val_s, step_s, budget = 0.3, 0.15, 4.0

    def slow_evaluate(model, dataset, return_results=False, **kwargs):
        time.sleep(val_s)
        metrics = {"segm/AP": 0.1, "bbox/AP": 0.1}
        return (metrics, []) if return_results else metrics

    monkeypatch.setattr("vipseg.engine.trainer.evaluate_model", slow_evaluate)
    # 1000 epochs of 2 iterations would take ~5 min: the budget cuts them to what fits.
    cfg = tiny_cfg(shapes, "train.epochs=1000", "train.batch_size=2", "train.val_interval=5",
                   "train.checkpoint_interval=0", f"train.time_budget={budget}s",
                   "schedule.warmup_iters=0")
    result = train(cfg, "budget", work_dir=tmp_path, device="cpu", model=Slow(step_s))
    run = result.run_dir
    ckpt = load_checkpoint(run / "last.pth")
    spent = ckpt["time_budget"]["elapsed"]  # at the last save, after the final validation
    planned = ckpt["time_budget"]["planned_iters"]
    assert spent <= budget + step_s + val_s + 1.5, spent  # margin for the writes (busy CPU)
    assert spent >= 0.6 * budget, spent  # the budget was used, not stopped at once
    assert 0 < result.iteration <= planned < 1000 * 2
    for name in ("last.pth", "config.yaml", "metrics.jsonl", "results.csv", "report.html",
                 "val_predictions.segm.json"):
        assert (run / name).is_file(), name
    val = records(run, "val")
    assert val and val[-1]["iteration"] == result.iteration  # the final validation
    # The schedule was compressed to the plan: near the end the cosine is near its floor.
    lrs = [r["lr"] for r in records(run, "train")]
    assert lrs[-1] < 0.35 * cfg.optimizer.lr, lrs
