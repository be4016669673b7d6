"""The training loop: overfitting, exact resume, non-finite losses, AMP, run folders."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import one_torch_thread, shapes_train_root  # noqa: F401 (fixture)
from vipseg.config import Config, load_config
from vipseg.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from vipseg.engine.run_dir import RunLog, new_run_dir
from vipseg.engine.trainer import check_amp, train
from vipseg.errors import ConfigError, DataError, TrainingError

TINY = Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shapes_train_root(tmp_path_factory)


def tiny_cfg(root: Path, *overrides: str) -> Config:
    """The tiny CPU config on the 160×128 shapes data, validating on the training images."""
    return load_config(TINY, [f"dataset.root={root}", "dataset.val.ann=train.json",
                              "dataset.val.images=train", "augment.scales=[[160,128]]",
                              "dataset.test_scale=[160,128]", "train.log_interval=1",
                              *overrides])


def records(run_dir: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["type"] == kind]


class Flaky(nn.Module):
    """A one-parameter 'detector' whose loss turns NaN from call ``bad_call`` on."""

    def __init__(self, bad_call: int | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.bad_call, self.calls = bad_call, 0

    def forward(self, images, targets=None):
        self.calls += 1
        x = torch.stack([im.float().mean() / 255 for im in images]).mean()
        loss = ((self.w * x + self.bias - 1.0) ** 2).sum()
        if self.bad_call is not None and self.calls >= self.bad_call:
            loss = loss * float("nan")
        return {"loss_fake": loss, "loss_const": (self.bias ** 2).sum()}


def test_overfits_four_images(shapes, tmp_path):
    # 80 steps of 2 images; seeds 0, 1, 2 reached mask AP 0.70, 0.64, 0.64 (AP50 ~1.0).
    cfg = tiny_cfg(shapes, "train.epochs=40", "train.batch_size=2", "train.val_interval=40",
                   "augment.hflip_prob=0", "optimizer.lr=0.002", "schedule.warmup_iters=10",
                   "train.log_interval=20")
    result = train(cfg, "overfit", work_dir=tmp_path, device="cpu")
    assert result.val_metrics["segm/AP"] >= 0.5, result.val_metrics
    run = result.run_dir
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "log.txt", "metrics.jsonl", "last.pth", "best.pth"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert load_config(run / "config.yaml") == cfg
    val = records(run, "val")
    assert len(val) == 1 and val[0]["segm/AP"] == result.best_ap
    log = (run / "log.txt").read_text()
    assert "epoch 40/40 iter 80 loss" in log and "AP/human" in log


def test_resume_gives_the_same_next_step_loss(shapes, tmp_path):
    common = ("train.epochs=2", "train.batch_size=2", "train.val_interval=0",
              "train.checkpoint_interval=0")
    full = train(tiny_cfg(shapes, *common), "full", work_dir=tmp_path, device="cpu")
    cut = train(tiny_cfg(shapes, *common, "train.max_iters=3"), "cut", work_dir=tmp_path,
                device="cpu")
    assert (cut.epoch, cut.iteration) == (1, 3)
    ckpt = torch.load(cut.run_dir / "last.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng",
            "config"} <= set(ckpt)
    resumed = train(tiny_cfg(shapes, *common), "cut", work_dir=tmp_path, resume=True,
                    device="cpu")
    assert resumed.run_dir == cut.run_dir and (resumed.epoch, resumed.iteration) == (2, 4)
    # config.yaml stays the run's first config; the resumed session's is written beside it.
    assert load_config(cut.run_dir / "config.yaml").train.max_iters == 3
    assert load_config(cut.run_dir / "config_resume_3.yaml").train.max_iters is None
    a = {r["iteration"]: r["loss"] for r in records(full.run_dir, "train")}
    b = {r["iteration"]: r["loss"] for r in records(cut.run_dir, "train")}
    assert sorted(b) == [1, 2, 3, 4]
    for it in range(1, 5):
        assert b[it] == pytest.approx(a[it], abs=1e-6), it


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(shapes, tmp_path):
    cfg = tiny_cfg(shapes, "train.epochs=3", "train.batch_size=2", "train.val_interval=0",
                   "train.checkpoint_interval=1")
    with pytest.raises(TrainingError) as err:
        train(cfg, "nan", work_dir=tmp_path, device="cpu", model=Flaky(bad_call=4))
    run = next((tmp_path / "nan").iterdir())
    message = str(err.value)
    assert message.startswith("non-finite loss at epoch 2 iter 4: ")
    assert "loss_fake=nan" in message and "\n" not in message
    assert message.endswith(f"last good checkpoint: {run / 'last.pth'}")
    assert load_checkpoint(run / "last.pth")["iteration"] == 2
    assert (run / "epoch_1.pth").exists() and not (run / "epoch_2.pth").exists()
    assert "error: non-finite loss" in (run / "log.txt").read_text()


def test_best_checkpoint_keeps_the_best_validation(shapes, tmp_path, monkeypatch):
    aps = iter([0.3, 0.5, 0.2])  # validations after epochs 1, 2, 3: the best is epoch 2

    def fake_evaluate(model, dataset, return_results=False, **kwargs):
        metrics = {"segm/AP": next(aps), "bbox/AP": 0.0}
        return (metrics, []) if return_results else metrics

    monkeypatch.setattr("vipseg.engine.trainer.evaluate_model", fake_evaluate)
    cfg = tiny_cfg(shapes, "train.epochs=3", "train.batch_size=4", "train.val_interval=1",
                   "train.checkpoint_interval=0")
    result = train(cfg, "best", work_dir=tmp_path, device="cpu", model=Flaky())
    assert result.best_ap == 0.5 and result.val_metrics["segm/AP"] == 0.2
    best = load_checkpoint(result.run_dir / "best.pth")
    last = load_checkpoint(result.run_dir / "last.pth")
    assert (best["epoch"], best["best_ap"]) == (2, 0.5)
    assert (last["epoch"], last["best_ap"]) == (3, 0.5)
    assert not torch.equal(best["model"]["w"], last["model"]["w"])
    assert [r["segm/AP"] for r in records(result.run_dir, "val")] == [0.3, 0.5, 0.2]


def test_resume_with_another_model_is_a_one_line_error(shapes, tmp_path):
    first = train(tiny_cfg(shapes, "train.epochs=1", "train.batch_size=4", "train.val_interval=0"),
                  "mismatch", work_dir=tmp_path, device="cpu", model=Flaky())
    cfg = tiny_cfg(shapes, "train.epochs=2", "train.batch_size=4", "train.val_interval=0")
    with pytest.raises(DataError, match="weights do not match the config's model") as err:
        train(cfg, "mismatch", work_dir=tmp_path, resume=True, device="cpu",
              model=nn.Linear(2, 2))
    assert str(err.value).startswith(str(first.run_dir / "last.pth"))
    assert "\n" not in str(err.value)


def test_bf16_autocast_and_gradient_clipping_on_cpu(shapes, tmp_path):
    cfg = tiny_cfg(shapes, "train.epochs=1", "train.batch_size=2", "train.val_interval=0",
                   "train.amp=bf16", "train.clip_grad=0.5", "optimizer.type=sgd")
    result = train(cfg, "amp", work_dir=tmp_path, device="cpu", model=Flaky())
    rows = records(result.run_dir, "train")
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["grad_norm"] > 0 and np.isfinite(r["loss"]) for r in rows)


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="train.amp"):
        check_amp("fp16", torch.device("cpu"))
    check_amp("bf16", torch.device("cpu"))


def test_run_folders_are_never_reused(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5)
    first = new_run_dir(tmp_path / "name", now)
    (first / "keep.txt").write_text("x")
    second = new_run_dir(tmp_path / "name", now)
    assert first.name == "exp_20260102_030405" and second.name == "exp_20260102_030405_1"
    assert (first / "keep.txt").read_text() == "x"


def test_run_log_writes_json_lines_and_log(tmp_path):
    log = RunLog(tmp_path)
    log.info("hello\nworld")
    log.record("val", 3, {"epoch": 1, "iteration": 3, "segm/AP": float("nan"), "note": "x"})
    log.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
        "type": "val", "epoch": 1, "iteration": 3, "segm/AP": None, "note": "x"}
    assert (tmp_path / "log.txt").read_text().count("\n") == 2
    RunLog(None).info("silent")  # ranks other than 0


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    torch.save({"rng": capture_rng_state()}, tmp_path / "s.pth")
    expected = (random.random(), np.random.normal(), torch.rand(2))
    restore_rng_state(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    again = (random.random(), np.random.normal(), torch.rand(2))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


@pytest.mark.gpu
def test_fp16_with_grad_scaler_on_cuda(shapes, tmp_path):
    cfg = tiny_cfg(shapes, "train.epochs=1", "train.batch_size=2", "train.val_interval=0",
                   "train.amp=fp16", "train.clip_grad=1.0")
    result = train(cfg, "fp16", work_dir=tmp_path, device="cuda")
    ckpt = load_checkpoint(result.run_dir / "last.pth")
    assert ckpt["scaler"]["scale"] > 0 and result.iteration == 2
