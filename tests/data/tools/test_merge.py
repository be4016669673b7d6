"""vipseg data merge: fresh ids, category agreement, images gathered, name clashes resolved."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.coco import load_coco
from vipseg.data.tools.merge import merge
from vipseg.errors import DataError, OutputExistsError


def test_real_train_val(deepsport, tmp_path):
    out = tmp_path / "train_val.json"
    r = merge([deepsport / "train.json", deepsport / "val.json"], out)
    c = load_coco(out)
    assert (r["images"], r["annotations"]) == (260, 2018)
    assert len(c.images) == 260 and len(c.annotations) == 2018
    assert len({i["id"] for i in c.images}) == 260 and len({a["id"] for a in c.annotations}) == 2018
    assert c.category_names == ["human"]


def test_images_gathered_and_clashes_renamed(tmp_path):
    # two splits whose images have the same file names but different pixels
    a = make_shapes_dataset(tmp_path / "a", "train", n_images=2, seed=1)
    b = make_shapes_dataset(tmp_path / "b", "train", n_images=2, seed=2)
    out, imgs = tmp_path / "m.json", tmp_path / "m"
    r = merge([a, b], out, images_out=imgs)
    assert len(r["renamed"]) == 2 and r["linked"] + r["copied"] == 4
    c = load_coco(out, images_dir=imgs)  # every file there, with the right size
    names = [i["file_name"] for i in c.images]
    assert len(set(names)) == 4 and "train_0000__2.png" in names
    src = cv2.imread(str(tmp_path / "b" / "train" / "train_0000.png"))
    assert np.array_equal(cv2.imread(str(imgs / "train_0000__2.png")), src)
    n_a = len(json.loads(a.read_text())["annotations"])
    assert all(ann["image_id"] in (3, 4) for ann in c.annotations[n_a:])
    with pytest.raises(OutputExistsError):
        merge([a, b], out, images_out=imgs)
    merge([a, b], out, images_out=imgs, force=True, copy=True)


def test_categories_must_agree(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", "train", n_images=1, seed=1)
    b = make_shapes_dataset(tmp_path / "b", "val", n_images=1, seed=2)
    d = json.loads(b.read_text())
    d["categories"][1]["name"] = "sportsball"
    b.write_text(json.dumps(d))
    with pytest.raises(DataError, match="categories differ") as e:
        merge([a, b], tmp_path / "m.json")
    assert str(a) in str(e.value) and str(b) in str(e.value)
    assert not (tmp_path / "m.json").exists()


def test_same_category_names_with_other_ids_merge_by_name(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", "train", n_images=2, seed=1)
    b = make_shapes_dataset(tmp_path / "b", "val", n_images=2, seed=2)
    d = json.loads(b.read_text())  # 0-based ids, listed in another order
    d["categories"] = [{"id": 0, "name": "ball"}, {"id": 1, "name": "human"}]
    names = {1: "human", 2: "ball"}
    b_names = [names[ann["category_id"]] for ann in d["annotations"]]
    for ann in d["annotations"]:
        ann["category_id"] = {"ball": 0, "human": 1}[names[ann["category_id"]]]
    b.write_text(json.dumps(d))
    out = tmp_path / "m.json"
    r = merge([a, b], out)
    assert r["remapped"] == [str(b)]
    c = load_coco(out)
    assert c.categories == json.loads(a.read_text())["categories"]
    n_a = len(json.loads(a.read_text())["annotations"])
    assert [names[ann["category_id"]] for ann in c.annotations[n_a:]] == b_names
    assert set(b_names) == {"human", "ball"}


def test_keep_ids_keeps_real_ids_and_names(deepsport, tmp_path):
    out = tmp_path / "train_val.json"
    merge([deepsport / "train.json", deepsport / "val.json"], out, keep_ids=True)
    merged = {i["id"]: i["file_name"] for i in load_coco(out).images}
    originals = {}
    for split in ("train", "val"):
        originals.update({i["id"]: i["file_name"] for i in load_coco(deepsport / f"{split}.json").images})
    assert merged == originals and len(merged) == 260
    c = load_coco(out)
    by_name = {i["file_name"]: i["id"] for i in c.images}
    val = load_coco(deepsport / "val.json")
    # every val annotation still points at its own image (same file name, same id)
    counts = {i["id"]: len(val.anns_by_image.get(i["id"], [])) for i in val.images}
    assert all(len(c.anns_by_image.get(by_name[i["file_name"]], [])) >= counts[i["id"]] for i in val.images)


def test_keep_ids_refuses_colliding_ids(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", "train", n_images=2, seed=1)
    b = make_shapes_dataset(tmp_path / "b", "val", n_images=2, seed=2)  # ids 1, 2 in both files
    with pytest.raises(DataError, match=r"--keep-ids: image id 1 is in both .*a.*train.json and .*val.json") as e:
        merge([a, b], tmp_path / "m.json", keep_ids=True)
    assert "\n" not in str(e.value) and not (tmp_path / "m.json").exists()
    data = json.loads(b.read_text())
    for img in data["images"]:
        img["id"] += 100
    for ann in data["annotations"]:
        ann["image_id"] += 100
    b.write_text(json.dumps(data))
    r = merge([a, b], tmp_path / "m.json", keep_ids=True)
    assert sorted(i["id"] for i in load_coco(tmp_path / "m.json").images) == [1, 2, 101, 102]
    assert r["renamed"] == []
