"""vipseg data norm: streaming per-channel statistics equal the direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.dataset import read_image
from vipseg.data.tools.norm import channel_stats, yaml_snippet


def test_matches_numpy(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=3, seed=8)
    s = channel_stats(ann, tmp_path / "train", progress=False)
    pix = np.concatenate([read_image(p).reshape(-1, 3) for p in sorted((tmp_path / "train").glob("*.png"))])
    assert s["pixels"] == len(pix) and s["images"] == 3
    assert s["mean"] == pytest.approx(pix.mean(0), abs=1e-3)
    assert s["std"] == pytest.approx(pix.std(0), abs=1e-3)
    snippet = yaml_snippet(s)
    assert snippet.startswith("dataset:\n  mean: [") and "\n  std: [" in snippet
