"""vipseg data check: the summary on the real DeepSport files and on generated images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.masks import encode
from vipseg.data.tools.check import check, format_summary, summarize
from vipseg.errors import DataError, OutputExistsError


def test_real_train_summary(deepsport):
    s = summarize(deepsport / "train.json")
    assert s["images"] == 223 and s["annotations"] == 1674
    assert s["instances_per_class"] == {"human": 1674}
    assert s["image_sizes"] == {"2336x1752": 101, "1624x1234": 67, "2456x2054": 55}
    assert s["split_instances"]["count"] == 191  # real occlusion splits
    assert len(s["split_instance_ids"]) == len(set(s["split_instance_ids"])) == 191
    assert s["images_only"] is False
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


def test_split_instance_ids_are_the_masks_with_several_parts(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=4, seed=4)
    d = json.loads(ann.read_text())
    img = d["images"][0]
    two_parts = np.zeros((img["height"], img["width"]), np.uint8)
    two_parts[5:10, 5:10] = two_parts[20:30, 40:50] = 1
    d["annotations"][0]["segmentation"] = encode(two_parts)
    d["annotations"][0]["image_id"] = img["id"]
    d["annotations"][0]["bbox"] = [5, 5, 45, 25]
    ann.write_text(json.dumps(d))
    s = summarize(ann)
    assert s["split_instance_ids"] == [d["annotations"][0]["id"]]
    assert s["split_instances"]["count"] == 1


def test_images_only_file(tmp_path):
    ann = make_shapes_dataset(tmp_path, "test", n_images=2, seed=8)
    d = json.loads(ann.read_text())
    ann.write_text(json.dumps({"images": d["images"]}))  # like the demo's test.json
    s = summarize(ann, tmp_path / "test")
    assert s["images_only"] is True and s["images"] == 2 and s["annotations"] == 0
    assert s["image_sizes"] == {"160x128": 2} and s["warnings"] == []
    text = format_summary(s)
    assert text.splitlines() == [f"{ann}: OK (images-only file: no annotations)", "images: 2",
                                 "image sizes (WxH): 160x128 (2)"]


def test_truncated_image_is_an_error(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=2, seed=3)
    png = tmp_path / "train" / "train_0001.png"
    png.write_bytes(png.read_bytes()[:200])  # header intact, pixels cut off
    with pytest.raises(DataError, match=r"image 2: .*train_0001.png: cannot read image \(truncated"):
        check(ann, tmp_path / "train")
