"""Demo and render data: reproducible bytes, exact disjoint masks, files every tool accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from vipseg.cli.main import main
from vipseg.data.coco import load_coco
from vipseg.data.masks import count_components, decode, encode
from vipseg.data.tools.demo.render_annotations import render_annotations
from vipseg.data.tools.demo.scene import BALL, HUMAN, paste, render_scene
from vipseg.data.tools.demo.writer import owner_to_rles, scene_annotations, write_demo_dataset

SIZE = (192, 144)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "d"
    write_demo_dataset(out, {"train": 6, "val": 2, "test": 2}, [SIZE, (160, 128)], seed=3)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(demo, tmp_path):
    again = tmp_path / "again"
    write_demo_dataset(again, {"train": 6, "val": 2, "test": 2}, [SIZE, (160, 128)], seed=3)
    assert _files(demo) == _files(again)
    other = tmp_path / "other"
    write_demo_dataset(other, {"train": 1, "val": 0, "test": 0}, [SIZE], seed=4)
    assert (other / "train" / "train_00000.png").read_bytes() != \
        (demo / "train" / "train_00000.png").read_bytes()


@pytest.mark.parametrize("seed", range(4))
def test_masks_are_the_owned_pixels_and_disjoint(seed):
    scene = render_scene(np.random.default_rng(seed), (240, 180))
    anns = scene_annotations(scene.owner, scene.categories, 1, 1)
    union = np.zeros(scene.owner.shape, np.int32)
    owners = [k for k in range(1, len(scene.categories) + 1) if (scene.owner == k).any()]
    assert len(anns) == len(owners)
    for ann, k in zip(anns, owners):
        m = decode(ann["segmentation"])
        assert np.array_equal(m.astype(bool), scene.owner == k)
        assert ann["category_id"] == scene.categories[k - 1]
        assert ann["area"] == int(m.sum())
        union += m
    assert union.max() <= 1
    assert np.array_equal(union > 0, scene.owner > 0)


def test_paste_paints_exactly_the_owned_pixels():
    canvas = np.zeros((20, 30, 3), np.float32)
    owner = np.zeros((20, 30), np.int32)
    lab = np.zeros((8, 8), np.uint8)
    lab[2:6, 1:7] = 3
    rgb = np.full((8, 8, 3), 200.0, np.float32)
    paste(canvas, owner, rgb, lab, (-2, 15), 1)  # clipped on the left and at the bottom
    paste(canvas, owner, rgb * 0.5, lab, (0, 16), 2)  # in front, overlapping the first
    assert np.array_equal(canvas[..., 0] == 200.0, owner == 1)
    assert np.array_equal(canvas[..., 0] == 100.0, owner == 2)
    assert (owner == 1).sum() == 3 * 5 - 2 * 4  # 3 rows x 5 columns visible, 2 x 4 covered


def test_owner_to_rles_matches_pycocotools():
    rng = np.random.default_rng(0)
    owner = rng.integers(0, 4, (13, 17)).astype(np.int32)
    rles = owner_to_rles(owner, 4)
    for k in (1, 2, 3):
        assert rles[k - 1] == encode(owner == k)
    assert rles[3] is None


def test_output_is_a_valid_vipriors_dataset(demo):
    for split in ("train", "val"):
        coco = load_coco(demo / f"{split}.json", images_dir=demo / split)
        assert [c["name"] for c in coco.categories] == ["human", "ball"]
        assert [c["id"] for c in coco.categories] == [HUMAN, BALL]
        assert not coco.warnings
        api = COCO(str(demo / f"{split}.json"))
        assert len(api.getImgIds()) == len(coco.images)
        for ann in coco.annotations:
            assert isinstance(ann["segmentation"]["counts"], str)
            assert ann["iscrowd"] == 0 and ann["area"] > 0
    test = json.loads((demo / "test.json").read_text())
    assert "annotations" not in test
    gt = load_coco(demo / "test_gt.json", images_dir=demo / "test")
    assert gt.images == test["images"]
    sizes = {(i["width"], i["height"]) for i in load_coco(demo / "train.json").images}
    assert sizes == {SIZE, (160, 128)}


def test_scenes_hold_balls_and_split_people():
    anns = []
    for seed in range(8):
        scene = render_scene(np.random.default_rng(seed), (480, 360))
        anns += scene_annotations(scene.owner, scene.categories, seed, 1)
    cats = [a["category_id"] for a in anns]
    assert cats.count(BALL) >= 4
    assert 4 <= cats.count(HUMAN) / 8 <= 12
    split = [a for a in anns if a["category_id"] == HUMAN and count_components(a["segmentation"]) > 1]
    assert split


def test_cli_demo_refuses_existing_output_and_bad_size(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["data", "demo", "--out", str(out), "--train", "1", "--val", "1", "--test", "1",
            "--size", "96x64", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert main(["data", "demo", "--out", str(tmp_path / "e"), "--size", "big"]) == 2


@pytest.fixture(scope="module")
def real_slice(deepsport, tmp_path_factory) -> Path:
    data = json.loads((deepsport / "val.json").read_text())
    images = [i for i in data["images"] if i["width"] == 1624][:2]
    ids = {i["id"] for i in images}
    part = {"images": images, "categories": data["categories"],
            "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    path = tmp_path_factory.mktemp("slice") / "val.json"
    path.write_text(json.dumps(part))
    return path


def test_render_keeps_every_input_mask(real_slice, tmp_path):
    out = tmp_path / "r"
    summary = render_annotations(real_slice, out, seed=1)
    src = load_coco(real_slice)
    dst = load_coco(out / "val.json", images_dir=out / "val")
    assert dst.images == src.images
    assert summary["balls"] >= 1
    by_id = {a["id"]: a for a in dst.annotations}
    for ann in src.annotations:
        kept = by_id.pop(ann["id"])
        assert kept["segmentation"] == ann["segmentation"]
        assert kept["category_id"] == HUMAN
    assert by_id and all(a["category_id"] == BALL for a in by_id.values())
    for ball in by_id.values():
        m = decode(ball["segmentation"]).astype(bool)
        for ann in dst.anns_by_image[ball["image_id"]]:
            if ann is not ball:
                assert not (m & decode(dst.rle(ann)).astype(bool)).any()
    again = tmp_path / "again"
    render_annotations(real_slice, again, seed=1)
    assert _files(out) == _files(again)
