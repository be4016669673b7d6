"""The SWA stage (warm start, averaged model, its files, torchrun) and warm starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import (SHAPES_128x96, TINY_CONFIG, one_torch_thread,  # noqa: F401
                           shapes_train_root)
from vipseg.config import Config, load_config
from vipseg.engine.checkpoint import load_checkpoint, save_checkpoint
from vipseg.engine.optim import lr_factor_fn
from vipseg.engine.swa import run_swa
from vipseg.engine.trainer import warm_start
from vipseg.errors import DataError
from vipseg.models.build import build_model

REPO = Path(__file__).resolve().parents[2]
TINY = TINY_CONFIG
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = [*SHAPES_128x96, "train.log_interval=1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shapes_train_root(tmp_path_factory, size=(128, 96))


def tiny_cfg(root: Path, *overrides: str) -> Config:
    return load_config(TINY, [f"dataset.root={root}", *SMALL, *overrides])


@pytest.fixture(scope="module")
def start(shapes, tmp_path_factory) -> Path:
    """A checkpoint of the tiny model (as initialised) to start the SWA stage from."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("start") / "last.pth"
    save_checkpoint(path, {"model": build_model(tiny_cfg(shapes)).state_dict()})
    return path


def rows(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_swa_stage_writes_its_files_and_swa_pth_is_the_mean_of_its_updates(shapes, start,
                                                                          tmp_path,
                                                                          monkeypatch):
    updates: list[dict[str, torch.Tensor]] = []
    validated: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(model, dataset, return_results=False, **kwargs):
        validated.append({k: v.clone() for k, v in model.state_dict().items()})
        metrics = {"segm/AP": 0.25}
        return (metrics, []) if return_results else metrics

    monkeypatch.setattr("vipseg.engine.trainer.evaluate_model", fake_evaluate)

    def record(model, iteration):
        updates.append({k: p.detach().clone() for k, p in model.named_parameters()})

    cfg = tiny_cfg(shapes, "swa.epochs=2", "swa.update_every=1", "train.val_interval=2")
    result = run_swa(cfg, start, "stage", work_dir=tmp_path, device="cpu", on_update=record)
    run = result.run_dir
    assert run.parent == tmp_path / "stage" and run.name.startswith("exp_swa_")
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "log.txt", "metrics.jsonl", "epoch_1.pth", "epoch_2.pth",
            "last.pth", "swa.pth"} <= names and "best.pth" not in names
    assert len(updates) == 4 == result.iteration  # 2 epochs x 2 iterations, every iteration
    assert [r["n_averaged"] for r in rows(run, "swa")] == [1, 2, 3, 4]
    swa = load_checkpoint(run / "swa.pth")
    assert swa["n_averaged"] == 4
    for key in updates[0]:
        mean = torch.stack([u[key] for u in updates]).mean(0)
        torch.testing.assert_close(swa["model"][key], mean, rtol=1e-5, atol=1e-6)
    # epoch_2.pth holds the raw weights of the last update, not the average.
    raw = load_checkpoint(run / "epoch_2.pth")["model"]
    assert torch.equal(raw["roi_heads.box_predictor.cls_score.weight"],
                       updates[-1]["roi_heads.box_predictor.cls_score.weight"])
    saved = load_config(run / "config.yaml")
    assert saved.train.init_from == str(start) and saved.optimizer.type == "adamw"
    assert (saved.optimizer.lr, saved.optimizer.weight_decay) == (1e-4, 0.02)
    assert saved.schedule.policy == "constant" and saved.train.epochs == 2
    log = (run / "log.txt").read_text()
    assert f"init_from {start}: " in log and "BN refresh skipped" in log  # GN model
    # Validation (once, at the end) scored the average, not the trained weights.
    assert len(validated) == 1 and result.val_metrics == {"segm/AP": 0.25}
    assert all(torch.equal(validated[0][k], v) for k, v in swa["model"].items())
    assert {r["lr"] for r in rows(run, "train")} == {1e-4}


def test_cyclic_lr_falls_within_each_epoch():
    f = lr_factor_fn(policy="cyclic", total_iters=8, iters_per_epoch=4, min_lr_ratio=0.1)
    assert [round(f(i), 6) for i in range(8)] == [1.0, 0.7, 0.4, 0.1] * 2


def test_missing_checkpoint_is_a_one_line_error(shapes, tmp_path):
    with pytest.raises(DataError, match="none.pth: checkpoint not found"):
        run_swa(tiny_cfg(shapes), tmp_path / "none.pth", "x", work_dir=tmp_path, device="cpu")
    assert not (tmp_path / "x").exists()


def test_init_from_another_class_count_loads_all_but_the_class_layers(shapes, tmp_path):
    three = tiny_cfg(shapes, "dataset.classes=[human,ball,referee]")
    torch.manual_seed(1)
    source = build_model(three)
    path = tmp_path / "three.pth"
    save_checkpoint(path, {"model": source.state_dict()})
    target = build_model(tiny_cfg(shapes))
    line = warm_start(target, path, strict=False)
    skipped = {f"roi_heads.{layer}.{kind}" for kind in ("weight", "bias") for layer in (
        "box_predictor.cls_score", "box_predictor.bbox_pred", "mask_head.logits")}
    total = len(source.state_dict())
    assert line.startswith(f"init_from {path}: {total - 6} tensors loaded; 6 skipped "
                           "(shape differs): ") and "\n" not in line
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]) == (key not in skipped), key
    with pytest.raises(DataError) as err:
        warm_start(build_model(tiny_cfg(shapes)), path, strict=True)
    assert str(err.value).startswith(f"{path}: weights do not match the config's model (")
    assert "cls_score.weight (checkpoint [4, 128] vs model [3, 128])" in str(err.value)


def test_swa_under_two_process_gloo_torchrun_writes_one_set_of_outputs(shapes, start,
                                                                       tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vipseg", "swa", str(TINY), str(start), "ddp", "--work-dir", str(out),
           "--data-root", str(shapes), "--device", "cpu", *SMALL, "swa.epochs=2",
           "train.val_interval=0", "model.backbone.norm=BN", "train.init_strict=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "ddp").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("exp_swa_")
    run = runs[0]
    names = sorted(p.name for p in run.iterdir())
    assert [n for n in names if n.endswith(".pth")] == ["epoch_1.pth", "epoch_2.pth",
                                                          "last.pth", "swa.pth"]
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == 1
    assert [r["n_averaged"] for r in rows(run, "swa")] == [1, 2]  # rank 0 only, per epoch
    log = (run / "log.txt").read_text()
    assert "BatchNorm statistics of the average recomputed over 1 training batches" in log
    swa = load_checkpoint(run / "swa.pth")
    assert swa["n_averaged"] == 2
    # Refreshed statistics, not the reset ones (mean 0, variance 1) nor the initial model's.
    stem = swa["model"]["backbone.body.stem.1.running_var"]
    assert not torch.allclose(stem, torch.ones_like(stem))
