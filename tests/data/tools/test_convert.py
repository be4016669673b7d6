"""rle2poly / poly2rle: exact round trips, split masks kept, nothing dropped silently."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers import make_shapes_dataset
from vipseg.data.coco import load_coco
from vipseg.data.masks import count_components, encode, rle_iou
from vipseg.data.tools.convert import convert


def test_real_val_round_trip(deepsport, tmp_path):
    poly, back = tmp_path / "poly.json", tmp_path / "back.json"
    r = convert(deepsport / "val.json", poly, "polygon")
    assert r["annotations"] == r["written"] == 344 and r["kept_rle"] == []
    assert r["mean_iou"] >= 0.95 and r["worst_iou"] >= 0.95
    src, conv = load_coco(deepsport / "val.json"), load_coco(poly)
    assert [a["id"] for a in conv.annotations] == [a["id"] for a in src.annotations]
    assert all(isinstance(a["segmentation"], list) for a in conv.annotations)
    # every part of a split mask is a polygon of its own
    split = [a for a in src.annotations if count_components(src.rle(a)) > 1]
    assert split and all(len(conv.anns_by_id[a["id"]]["segmentation"]) >= 2 for a in split)
    r2 = convert(poly, back, "rle")
    assert r2["written"] == 344 and r2["mean_iou"] >= 0.95
    back_coco = load_coco(back)
    ious = [rle_iou(src.rle(a), back_coco.rle(b)) for a, b in zip(src.annotations, back_coco.annotations)]
    assert np.mean(ious) >= 0.95


def test_empty_and_crowd_masks_are_kept_as_rle_and_reported(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=4, seed=4)
    d = json.loads(ann.read_text())
    assert len(d["annotations"]) >= 3
    h, w = d["images"][0]["height"], d["images"][0]["width"]
    d["annotations"][0]["segmentation"] = encode(np.zeros((h, w), np.uint8))
    d["annotations"][1]["iscrowd"] = 1
    ann.write_text(json.dumps(d))
    out = tmp_path / "poly.json"
    r = convert(ann, out, "polygon")
    assert r["written"] == len(d["annotations"])
    kept = {k["id"]: k["reason"] for k in r["kept_rle"]}
    assert set(kept) == {d["annotations"][0]["id"], d["annotations"][1]["id"]}
    assert "empty" in kept[d["annotations"][0]["id"]] and "crowd" in kept[d["annotations"][1]["id"]]
    conv = json.loads(out.read_text())["annotations"]
    assert isinstance(conv[0]["segmentation"], dict) and isinstance(conv[2]["segmentation"], list)
    assert r["worst_iou"] == 1.0
