"""``kill -9`` of ``vipseg train``, then ``--resume``: the outputs equal an uninterrupted run's,
and no temporary file of the killed process survives the next run.

The child process SIGKILLs itself at an exact point (half-way through writing a checkpoint's
temp file, or at an iteration inside an epoch), so the test is deterministic; SIGKILL cannot be
caught, so this is what ``kill -9`` from outside does at that moment.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import os, signal, sys
import torch
import vipseg.engine.trainer as trainer
from vipseg.cli.main import main

mode, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if mode == "checkpoint":  # die half-way through the n-th checkpoint write
    calls, save = [0], torch.save
    def dying_save(obj, f, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            f.write(b"\\0" * 4096); f.flush(); os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *a, **k)
    torch.save = dying_save
elif mode == "epoch":  # die before optimizer step n + 1 (inside an epoch)
    step = trainer.Trainer._step
    def dying_step(self, *a, **k):
        if self.iteration == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, *a, **k)
    trainer.Trainer._step = dying_step
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    root = base / "data"
    make_shapes_dataset(root, "train", n_images=4, size=(64, 64), max_objects=2)
    (base / "child.py").write_text(CHILD)
    (base / "config.yaml").write_text(
        f"_base_: [{REPO / 'configs/exp/mask_rcnn/tiny_cpu.yaml'}]\n"
        "dataset: {test_scale: [64, 64]}\naugment: {scales: [[64, 64]]}\n"
        "train: {epochs: 2, batch_size: 2, val_interval: 0, checkpoint_interval: 1, "
        "num_workers: 0, log_interval: 1}\n")
    return base


def train(base: Path, work: str, *extra: str, mode: str = "none", n: int = 0) -> int:
    argv = [sys.executable, str(base / "child.py"), mode, str(n), "train",
            str(base / "config.yaml"), "run", "--work-dir", str(base / work), "--data-root",
            str(base / "data"), "--device", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    old = os.umask(0o022)
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    finally:
        os.umask(old)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def run_dir(base: Path, work: str) -> Path:
    (folder,) = (base / work / "run").iterdir()
    return folder


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    assert train(setup, "ref") == 0
    return run_dir(setup, "ref")


def _same_outputs(ours: Path, ref: Path) -> None:
    for name in ("last.pth", "epoch_1.pth", "epoch_2.pth"):
        a, b = weights(ours / name), weights(ref / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not [p for p in ours.iterdir() if p.name.endswith((".tmp", ".old"))]
    for p in ours.rglob("*"):  # umask 022: every output readable by group and others
        assert stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044, p


@pytest.mark.parametrize("mode, n, work", [("checkpoint", 3, "ckpt"), ("epoch", 3, "epoch")])
def test_kill_9_then_resume_equals_an_uninterrupted_run(setup, reference, mode, n, work):
    assert train(setup, work, mode=mode, n=n) == -9
    killed = run_dir(setup, work)
    temps = [p for p in killed.iterdir() if p.name.endswith(".tmp")]
    if mode == "checkpoint":  # the write of epoch 2's last.pth was cut short
        assert [p.name.split(".")[1:3] for p in temps] == [["last", "pth"]]
        assert torch.load(killed / "last.pth", weights_only=True)["iteration"] == 2
    assert train(setup, work, "--resume") == 0
    assert run_dir(setup, work) == killed  # continued in the same folder
    _same_outputs(killed, reference)
