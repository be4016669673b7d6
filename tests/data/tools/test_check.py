"""vipseg data check: the summary on the real DeepSport files and on generated images."""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.tools.check import check, format_summary, summarize
from vipseg.errors import OutputExistsError


def test_real_train_summary(deepsport):
    s = summarize(deepsport / "train.json")
    assert s["images"] == 223 and s["annotations"] == 1674
    assert s["instances_per_class"] == {"human": 1674}
    assert s["image_sizes"] == {"2336x1752": 101, "1624x1234": 67, "2456x2054": 55}
    assert 0 < s["split_instances"]["count"] < 1674  # real occlusion splits
    a = s["mask_area"]
    assert a["min"] <= a["p10"] <= a["median"] <= a["p90"] <= a["max"]
    assert s["instances_per_image"]["min"] == 0 and any("no annotations" in w for w in s["warnings"])
    text = format_summary(s)
    assert "images: 223" in text and "instances: 1674" in text


def test_generated_images_and_json_output(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=3, seed=3)
    data = json.loads(ann.read_text())
    out = tmp_path / "summary.json"
    s = check(ann, tmp_path / "train", json_out=out)
    assert json.loads(out.read_text()) == s
    assert s["images"] == 3 and s["annotations"] == len(data["annotations"])
    assert sum(s["instances_per_class"].values()) == s["annotations"]
    assert s["image_sizes"] == {"160x128": 3}
    with pytest.raises(OutputExistsError):
        check(ann, json_out=out)
    check(ann, json_out=out, force=True)
