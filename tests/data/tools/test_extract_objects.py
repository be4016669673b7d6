"""vipseg data extract-objects: the object bank format (docs/architecture.md "Object bank")."""

from __future__ import annotations

import json

import cv2
import numpy as np

from tests.helpers import make_shapes_dataset
from vipseg.data.dataset import read_image
from vipseg.data.masks import decode
from vipseg.data.tools.extract_objects import extract_objects, load_object_bank


def test_object_bank(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=3, seed=5)
    data = json.loads(ann.read_text())
    out = tmp_path / "bank"
    r = extract_objects(ann, tmp_path / "train", out)
    index = load_object_bank(out)
    assert index["categories"] == [{"id": 1, "name": "human"}, {"id": 2, "name": "ball"}]
    assert r["objects"] == len(index["objects"]) == len(data["annotations"])
    files = {i["id"]: i["file_name"] for i in data["images"]}
    for o in index["objects"]:
        assert set(o) == {"id", "image_id", "source_image", "category_id", "category", "bbox",
                          "crop", "mask_file", "mask", "area"}
        assert o["crop"] == f"{o['category']}/{o['id']}.png"
        assert o["mask_file"] == f"{o['category']}/{o['id']}_mask.png"
        x, y, w, h = o["bbox"]
        assert all(isinstance(v, int) for v in o["bbox"])
        crop = read_image(out / o["crop"])
        mask = cv2.imread(str(out / o["mask_file"]), cv2.IMREAD_GRAYSCALE)
        assert crop.shape == (h, w, 3) and mask.shape == (h, w)
        assert set(np.unique(mask)) <= {0, 255}
        assert o["mask"]["size"] == [h, w] and np.array_equal(decode(o["mask"]) * 255, mask)
        assert o["area"] == int((mask > 0).sum()) > 0
        src = read_image(tmp_path / "train" / files[o["image_id"]])
        assert o["source_image"] == files[o["image_id"]]
        assert np.array_equal(src[y:y + h, x:x + w], crop)
