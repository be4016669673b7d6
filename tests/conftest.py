"""Shared fixtures: paths to the real DeepSport annotations and the repo's configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEEPSPORT = SHARED / "data" / "deepsport"

torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def deepsport() -> Path:
    if not (DEEPSPORT / "train.json").exists():
        message = f"real annotations not found at {DEEPSPORT}"
        if os.environ.get("CI"):  # CI always has shared/ beside the checkout: never skip there
            pytest.fail(message)
        pytest.skip(message)
    return DEEPSPORT
