"""Fixtures for model tests: the tiny CPU config and two generated 160x128 training samples."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_shapes_dataset
from vipseg.config.loader import load_config
from vipseg.config.schema import Config
from vipseg.data.dataset import CocoInstanceDataset, collate


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine two threads wait on each other and a
    training step of the tiny model takes ~10x longer than on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg(repo) -> Config:
    return load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml")


@pytest.fixture(scope="session")
def shapes_batch(tmp_path_factory) -> tuple[list[torch.Tensor], list[dict]]:
    """Two (image, target) samples of 128x160 (H x W) with ellipses and discs."""
    root = tmp_path_factory.mktemp("shapes")
    ann = make_shapes_dataset(root, "train", n_images=2, size=(160, 128), seed=1)
    ds = CocoInstanceDataset(ann, root / "train", ["human", "ball"])
    return collate([ds[0], ds[1]])
