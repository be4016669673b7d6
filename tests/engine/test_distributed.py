"""DDP helpers in one process, and a real 2-process gloo ``torchrun`` training job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.helpers import make_shapes_dataset
from vipseg.engine import distributed as ddp


def test_single_process_helpers_are_no_ops():
    ctx = ddp.DistContext()
    assert not ctx.distributed and ctx.is_main
    assert ddp.broadcast_object({"a": 1}, ctx) == {"a": 1}
    assert ddp.all_gather_objects(3, ctx) == [3]
    out = ddp.reduce_mean({"b": torch.tensor(2.0), "a": torch.tensor([1.5])}, ctx)
    assert out == {"a": 1.5, "b": 2.0}


def test_sync_bn_is_kept_as_batchnorm_on_cpu_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    warnings: list[str] = []
    ctx = ddp.DistContext(rank=0, world_size=2)
    assert ddp.sync_batchnorm(model, ctx, True, warnings.append) is model
    assert isinstance(model[1], nn.BatchNorm2d) and "SyncBN" in warnings[0]
    # Nothing to convert or not wanted: silent.
    gn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    assert ddp.sync_batchnorm(gn, ctx, True, warnings.append) is gn
    assert ddp.sync_batchnorm(model, ctx, False, warnings.append) is model
    assert len(warnings) == 1


def test_loader_generator_seeds_differ_per_run_seed_and_rank():
    a = ddp.loader_generator(0, 0).initial_seed()
    assert a == ddp.loader_generator(0, 0).initial_seed()
    assert len({a, ddp.loader_generator(0, 1).initial_seed(),
                ddp.loader_generator(1, 0).initial_seed()}) == 3


def test_torchrun_two_process_gloo_job_writes_one_run(repo, tmp_path):
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=4)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vipseg", "train", str(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"), "ddp",
           "--work-dir", str(out), "--data-root", str(root), "--device", "cpu",
           "dataset.val.ann=train.json", "dataset.val.images=train",
           "augment.scales=[[160,128]]", "dataset.test_scale=[160,128]", "train.batch_size=2",
           "train.epochs=2", "train.val_interval=2", "train.checkpoint_interval=1",
           "train.log_interval=1", "model.backbone.norm=BN"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "ddp").iterdir())
    assert len(runs) == 1
    run = runs[0]
    names = sorted(p.name for p in run.iterdir())
    assert [n for n in names if n.endswith(".pth")] == ["best.pth", "epoch_1.pth",
                                                          "epoch_2.pth", "last.pth"]
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == 1
    assert {"config.yaml", "log.txt", "metrics.jsonl"} <= set(names)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["type"] == "train"] == [1, 2]  # rank 0 only
    assert len([r for r in rows if r["type"] == "val"]) == 1
    log = (run / "log.txt").read_text()
    assert "2 process(es)" in log and "SyncBN needs CUDA" in log
    ckpt = torch.load(run / "last.pth", weights_only=True)
    assert ckpt["iteration"] == 2 and len(ckpt["rng"]) == 2


def test_sync_bn_keeps_the_activation_of_timm_batchnorm_act():
    # efficientnet/mobilenet blocks use timm's BatchNormAct2d (BN + activation in one module);
    # torch's converter would turn it into a plain SyncBatchNorm and drop the activation.
    from timm import create_model
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    model = create_model("mobilenetv3_small_050", pretrained=False, features_only=True).eval()
    acts = [type(m.act) for m in model.modules()
            if isinstance(m, BatchNormAct2d) and not isinstance(m.act, nn.Identity)]
    assert acts  # the model does hold BatchNormAct2d layers with an activation
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    # A CUDA context is only a description here: conversion itself runs on CPU, and in eval
    # mode SyncBatchNorm normalises with its running statistics like BatchNorm.
    ctx = ddp.DistContext(rank=0, world_size=2, device=torch.device("cuda", 0))
    converted = ddp.sync_batchnorm(model, ctx, True, pytest.fail)
    assert not any(type(m) in (nn.BatchNorm2d, BatchNormAct2d) for m in converted.modules())
    assert [type(m.act) for m in converted.modules()
            if isinstance(m, nn.SyncBatchNorm) and hasattr(m, "act")
            and not isinstance(m.act, nn.Identity)] == acts
    with torch.no_grad():
        after = converted(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
