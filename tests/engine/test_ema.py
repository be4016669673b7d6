"""EMA of the weights during training: saved, validated (best.pth on it), resumed exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import one_torch_thread, shapes_train_root  # noqa: F401 (fixture)
from vipseg.config import Config, load_config
from vipseg.engine.checkpoint import checkpoint_weights, load_checkpoint
from vipseg.engine.trainer import train

TINY = Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Toy(nn.Module):
    """A two-parameter 'detector' whose loss depends on the (augmented) images."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        x = torch.stack([im.float().mean(dim=(1, 2)) / 255 for im in images])  # [B, 3]
        return {"loss_fit": ((x * self.w).sum(1) + self.bias - 1.0).pow(2).mean()}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shapes_train_root(tmp_path_factory, size=(96, 64))


def cfg_for(root: Path, *overrides: str) -> Config:
    return load_config(TINY, [f"dataset.root={root}", "dataset.val.ann=train.json",
                              "dataset.val.images=train", "augment.scales=[[96,64]]",
                              "train.batch_size=1", "train.log_interval=1",
                              "train.checkpoint_interval=0", "train.ema.enabled=true",
                              "train.ema.decay=0.8", "optimizer.lr=0.05", *overrides])


def test_ema_resume_gives_the_weights_of_an_uninterrupted_run(shapes, tmp_path):
    common = ("train.epochs=2", "train.val_interval=0")
    full = train(cfg_for(shapes, *common), "full", work_dir=tmp_path, device="cpu",
                 model=Toy())
    cut = train(cfg_for(shapes, *common, "train.max_iters=5"), "cut", work_dir=tmp_path,
                device="cpu", model=Toy())
    assert cut.iteration == 5
    resumed = train(cfg_for(shapes, *common), "cut", work_dir=tmp_path, resume=True,
                    device="cpu", model=Toy())
    assert resumed.iteration == full.iteration == 8
    a = load_checkpoint(full.run_dir / "last.pth")
    b = load_checkpoint(resumed.run_dir / "last.pth")
    for key in ("w", "bias"):
        assert torch.equal(a["ema"][key], b["ema"][key]), key
        assert torch.equal(a["model"][key], b["model"][key]), key
        # The EMA lags behind the trained weights: it is not a copy of them.
        assert not torch.equal(a["ema"][key], a["model"][key]), key
    assert checkpoint_weights(a) is a["ema"]


def test_validation_and_best_checkpoint_use_the_ema_weights(shapes, tmp_path, monkeypatch):
    seen: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(model, dataset, return_results=False, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        metrics = {"segm/AP": [0.2, 0.6, 0.4][len(seen) - 1]}
        return (metrics, []) if return_results else metrics

    monkeypatch.setattr("vipseg.engine.trainer.evaluate_model", fake_evaluate)
    result = train(cfg_for(shapes, "train.epochs=3", "train.val_interval=1"), "best",
                   work_dir=tmp_path, device="cpu", model=Toy())
    best = load_checkpoint(result.run_dir / "best.pth")
    last = load_checkpoint(result.run_dir / "last.pth")
    assert best["epoch"] == 2 and result.best_ap == 0.6
    assert torch.equal(seen[1]["w"], best["ema"]["w"])  # validated: the EMA weights
    assert torch.equal(seen[2]["w"], last["ema"]["w"])
    assert not torch.equal(seen[2]["w"], last["model"]["w"])


def test_ema_decay_is_range_checked():
    from vipseg.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ema.decay must be in"):
        load_config(TINY, ["train.ema.decay=1.5"])
