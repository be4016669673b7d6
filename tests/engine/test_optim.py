"""Optimizer parameter groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vipseg.config.schema import OptimizerConfig, ScheduleConfig
from vipseg.engine.optim import build_optimizer, build_scheduler, split_decay_params


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8), nn.Flatten(), nn.LazyLinear(4),
                         nn.LayerNorm(4))


def _model() -> nn.Module:
    net = _net()
    net(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    return net


def test_norms_and_biases_get_no_weight_decay():
    net = _model()
    decay, no_decay = split_decay_params(net)
    decay_ids = {id(p) for p in decay}
    no_decay_ids = {id(p) for p in no_decay}
    assert decay_ids == {id(net[0].weight), id(net[3].weight), id(net[6].weight)}
    expected = {id(net[1].weight), id(net[1].bias), id(net[3].bias), id(net[4].weight),
                id(net[4].bias), id(net[6].bias), id(net[7].weight), id(net[7].bias)}
    assert no_decay_ids == expected


@pytest.mark.parametrize("kind, cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_groups(kind, cls):
    net = _model()
    opt = build_optimizer(net, OptimizerConfig(type=kind, lr=0.1, weight_decay=0.05))
    assert isinstance(opt, cls)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 0.05
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert all(g["lr"] == 0.1 for g in opt.param_groups)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(net.parameters()))


def test_norm_bias_decay_and_frozen_parameters():
    net = _model()
    net[0].weight.requires_grad_(False)
    opt = build_optimizer(net, OptimizerConfig(type="sgd", weight_decay=0.01,
                                               norm_bias_decay=True))
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    assert all(p is not net[0].weight for g in opt.param_groups for p in g["params"])


def _lrs(cfg: ScheduleConfig, ipe: int, epochs: int, base: float = 1.0) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    sched = build_scheduler(opt, cfg, ipe, epochs)
    out = []
    for _ in range(ipe * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_with_warmup():
    cfg = ScheduleConfig(policy="step", warmup_iters=4, warmup_ratio=0.2, steps=[2, 3], gamma=0.1)
    lrs = _lrs(cfg, ipe=5, epochs=4)
    assert lrs[0] == pytest.approx(0.2)
    assert lrs[2] == pytest.approx(0.2 + 0.8 * 2 / 4)
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(1.0)  # last iteration of epoch 2 (index 1)
    assert lrs[10] == pytest.approx(0.1)  # epoch index 2 reached
    assert lrs[15] == pytest.approx(0.01)


def test_cosine_schedule_reaches_min_ratio_and_constant_is_flat():
    cfg = ScheduleConfig(policy="cosine", warmup_iters=0, min_lr_ratio=0.1)
    lrs = _lrs(cfg, ipe=10, epochs=2, base=2.0)
    assert lrs[0] == pytest.approx(2.0)
    assert lrs[10] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert lrs[-1] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19 / 20))))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    flat = _lrs(ScheduleConfig(policy="constant", warmup_iters=0), ipe=3, epochs=2, base=0.5)
    assert flat == [0.5] * 6


def test_scheduler_state_round_trip():
    cfg = ScheduleConfig(policy="cosine", warmup_iters=3)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, cfg, 4, 3)
    for _ in range(5):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_scheduler(opt2, cfg, 4, 3)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    for _ in range(3):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
