"""Checkpoint averaging, greedy soups and the BatchNorm refresh."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vipseg.engine.averaging import (average_checkpoints, checkpoint_inputs, greedy_soup,
                                     refresh_batchnorm)
from vipseg.engine.checkpoint import save_checkpoint
from vipseg.errors import DataError

CONFIG = "model:\n  backbone: {name: resnet18, norm: %s}\ndataset:\n  classes: [human, ball]\n"


class ConvBN(nn.Module):
    """Conv + norm; called like a detector in training mode, ``(images, targets)``."""

    def __init__(self, norm: str = "BN", channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3)
        self.norm = nn.BatchNorm2d(channels) if norm == "BN" else nn.GroupNorm(2, channels)

    def forward(self, images, targets=None):
        return {"loss": self.norm(self.conv(torch.stack(images))).pow(2).mean()}


def write(path, model: nn.Module, norm: str = "BN", **extra) -> None:
    save_checkpoint(path, {"model": model.state_dict(), "config": CONFIG % norm,
                           "optimizer": {"state": {}}, **extra})


def three_checkpoints(tmp_path):
    paths, states = [], []
    for k in range(3):
        torch.manual_seed(k)
        model = ConvBN()
        model.norm.running_mean.uniform_()
        model.norm.num_batches_tracked.fill_(10 * (k + 1))
        paths.append(tmp_path / f"epoch_{k + 1}.pth")
        write(paths[-1], model)
        states.append(model.state_dict())
    return paths, states


def test_average_of_three_is_the_elementwise_mean_and_keeps_integer_buffers(tmp_path):
    paths, states = three_checkpoints(tmp_path)
    out = average_checkpoints(paths)
    avg = out["model"]
    assert set(avg) == set(states[0])
    for key, value in avg.items():
        if key.endswith("num_batches_tracked"):
            assert value.dtype == torch.int64 and int(value) == 30  # the last one's, not 20.0
            continue
        expected = (states[0][key] + states[1][key] + states[2][key]) / 3
        assert value.dtype == states[0][key].dtype
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert out["averaged_from"] == [str(p) for p in paths] and out["config"] == CONFIG % "BN"


def test_another_architecture_is_a_one_line_error_naming_file_and_key(tmp_path):
    paths, _ = three_checkpoints(tmp_path)
    wide = tmp_path / "wide.pth"
    write(wide, ConvBN(channels=6))
    with pytest.raises(DataError) as err:
        average_checkpoints([paths[0], wide])
    message = str(err.value)
    assert message.startswith(f"{wide}: weight 'conv.weight' is [6, 3, 3, 3]")
    assert "\n" not in message
    gn = tmp_path / "gn.pth"
    write(gn, ConvBN(norm="GN"), norm="GN")
    missing = "gn.pth: weight 'norm.num_batches_tracked' of .*epoch_1.pth is missing"
    with pytest.raises(DataError, match=missing):
        average_checkpoints([paths[0], gn])
    # Same tensors, another model config: refused too, naming the config key.
    other = tmp_path / "other.pth"
    write(other, ConvBN(), norm="SyncBN")
    with pytest.raises(DataError) as err:
        average_checkpoints([paths[0], other])
    assert str(err.value) == (f"{other}: config key 'model.backbone.norm' is 'SyncBN', 'BN' in "
                              f"{paths[0]}")


def test_a_folder_contributes_its_epoch_checkpoints_only_in_epoch_order(tmp_path):
    paths, _ = three_checkpoints(tmp_path)
    (tmp_path / "epoch_10.pth").write_bytes(paths[0].read_bytes())
    for name in ("best.pth", "last.pth", "swa.pth", "avg.pth"):
        write(tmp_path / name, ConvBN(channels=6))  # would not even fit
    found = checkpoint_inputs([tmp_path])
    assert [p.name for p in found] == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth",
                                       "epoch_10.pth"]
    average_checkpoints(found)  # no error: best/last/swa/avg were not read
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no epoch_K.pth"):
        checkpoint_inputs([tmp_path / "empty"])


def test_greedy_soup_keeps_only_what_does_not_lower_the_score(tmp_path):
    paths = []
    for k, w in enumerate([3.0, 1.0, 10.0]):
        model = nn.Linear(1, 1, bias=False)
        nn.init.constant_(model.weight, w)
        paths.append(tmp_path / f"epoch_{k}.pth")
        save_checkpoint(paths[-1], {"model": model.state_dict()})
    lines: list[str] = []

    def score(weights):  # best at w = 2: singles score -1, -1, -64
        return -float((weights["weight"] - 2.0) ** 2)

    soup = greedy_soup(paths, score, lines.append)
    assert soup["averaged_from"] == [str(paths[0]), str(paths[1])]
    assert float(soup["model"]["weight"]) == pytest.approx(2.0) and soup["soup_ap"] == 0.0
    assert lines[3].startswith(f"soup 1: {paths[0]}")
    assert "kept" in lines[4] and "dropped" in lines[5]


def batches(seed: int = 0, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [([torch.rand(3, 12, 10, generator=g) * 4 + 1 for _ in range(2)], [{}, {}])
            for _ in range(n)]


def test_bn_refresh_sets_the_running_statistics_of_the_data():
    torch.manual_seed(0)
    model = ConvBN().eval()
    model.norm.running_mean.fill_(7.0)
    model.norm.running_var.fill_(9.0)
    data = batches()
    assert refresh_batchnorm(model, data, device=torch.device("cpu")) == len(data)
    with torch.no_grad():  # direct: the mean over batches of each batch's channel statistics
        feats = [model.conv(torch.stack(images)) for images, _ in data]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    variances = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True)
                             for f in feats]).mean(0)
    torch.testing.assert_close(model.norm.running_mean, means)
    torch.testing.assert_close(model.norm.running_var, variances)
    assert not model.training and model.norm.momentum == 0.1  # restored


def test_bn_refresh_leaves_a_groupnorm_model_untouched():
    model = ConvBN(norm="GN")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert refresh_batchnorm(model, batches(), device=torch.device("cpu")) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
