"""Demo and render data: reproducible bytes, exact disjoint masks, files every tool accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from tests.helpers import make_shapes_dataset
from vipseg.cli.main import main
from vipseg.data.coco import load_coco
from vipseg.data.masks import count_components, decode, encode, rle_area, rle_to_bbox
from vipseg.data.tools.demo.people import JERSEY, SKIN, colour_parts, random_outfit, team_outfits
from vipseg.data.tools.demo.render_annotations import render_annotations, render_image
from vipseg.data.tools.demo.scene import BALL, HUMAN, paste, render_scene
from vipseg.data.tools.demo.writer import (encode_png, image_rng, owner_to_rles, scene_annotations,
                                           write_demo_dataset)

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
    assert summary["cut"] == 0 and summary["dropped"] == []  # the real masks are disjoint
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


def overlapping_coco(root: Path) -> tuple[Path, dict]:
    """``root/syn.json``: make_shapes_dataset's images plus, in image 1, a rectangle B over the
    lower half of its first human A (painted after A), a small rectangle C inside B (painted
    before B, so hidden entirely), wrong bbox/area on A, and an images-only image in a
    sub-folder. Returns the path and the ids {"A", "B", "C", "empty_image"}."""
    path = make_shapes_dataset(root, "syn", n_images=3, size=(160, 128), seed=5)
    data = json.loads(path.read_text())
    h, w = 128, 160
    a = next(x for x in data["annotations"] if x["image_id"] == 1 and x["category_id"] == 1)
    x, y, bw, bh = (int(v) for v in rle_to_bbox(a["segmentation"]))
    b = np.zeros((h, w), np.uint8)
    b[y + bh // 2:y + bh + 4, max(0, x - 3):x + bw + 3] = 1
    c = np.zeros((h, w), np.uint8)
    c[y + bh // 2 + 1:y + bh // 2 + 4, x + bw // 2:x + bw // 2 + 2] = 1
    next_id = max(x["id"] for x in data["annotations"]) + 1
    ids = {"A": a["id"], "B": next_id, "C": next_id + 1, "empty_image": 99}
    for aid, m in ((ids["B"], b), (ids["C"], c)):
        rle = encode(m)
        data["annotations"].append({"id": aid, "image_id": 1, "category_id": 1, "segmentation": rle,
                                    "area": rle_area(rle), "bbox": rle_to_bbox(rle), "iscrowd": 0})
    a["bbox"], a["area"] = [0.0, 0.0, 1.0, 1.0], 1
    data["images"].append({"id": 99, "file_name": "extra/empty.png", "width": 96, "height": 80})
    path.write_text(json.dumps(data))
    return path, ids


def test_render_cuts_overlapping_masks_to_their_painted_pixels(tmp_path):
    src_path, ids = overlapping_coco(tmp_path / "in")
    out = tmp_path / "r"
    summary = render_annotations(src_path, out, seed=2)
    src = load_coco(src_path)
    dst = load_coco(out / "syn.json", images_dir=out / "syn")
    COCO(str(out / "syn.json"))
    assert dst.images == src.images
    assert summary["dropped"] == [ids["C"]] and summary["cut"] >= 1
    assert summary["annotations"] == len(src.annotations) - 1
    assert not dst.anns_by_image.get(ids["empty_image"])
    assert (out / "syn" / "extra" / "empty.png").exists()
    out_by_id = {a["id"]: a for a in dst.annotations}
    a_out = out_by_id[ids["A"]]
    for i, img in enumerate(src.images):
        anns = src.anns_by_image.get(img["id"], [])
        masks = [decode(src.rle(a)).astype(bool) for a in anns]
        is_ball = [src.cats_by_id[a["category_id"]]["name"] == "ball" for a in anns]
        # What the image shows (same generator as the renderer): the written PNG, and the owner
        # map of the pixels painted for each instance.
        image, owner = render_image(image_rng(2, "render", i), (img["width"], img["height"]),
                                    [m.astype(np.uint8) for m in masks], is_ball,
                                    add_ball=not any(is_ball))
        assert (out / "syn" / img["file_name"]).read_bytes() == encode_png(image)
        # Independent of the renderer: far first by the bottom of the box, later ones win.
        bottoms = [b[1] + b[3] for b in (rle_to_bbox(src.rle(a)) for a in anns)]
        order = sorted(range(len(anns)), key=lambda k: bottoms[k])
        union = np.zeros(owner.shape, np.int32)
        for pos, k in enumerate(order):
            expected = masks[k].copy()
            for j in order[pos + 1:]:
                expected &= ~masks[j]
            assert np.array_equal(expected, owner == k + 1)
            if not expected.any():
                assert anns[k]["id"] not in out_by_id
                continue
            got = out_by_id.pop(anns[k]["id"])
            m = decode(got["segmentation"])
            assert np.array_equal(m.astype(bool), expected)
            assert got["area"] == int(m.sum()) and got["bbox"] == rle_to_bbox(got["segmentation"])
            union += m
        for ball in [a for a in out_by_id.values() if a["image_id"] == img["id"]]:  # added balls
            assert ball["category_id"] == BALL
            m = decode(out_by_id.pop(ball["id"])["segmentation"])
            assert np.array_equal(m.astype(bool), owner == len(anns) + 1)
            union += m
        assert union.max() <= 1
        assert np.array_equal(union > 0, owner > 0)
    assert not out_by_id  # every output annotation was checked
    assert a_out["bbox"] != [0.0, 0.0, 1.0, 1.0] and a_out["area"] > 1
    assert a_out["area"] < rle_area(src.rle(src.anns_by_id[ids["A"]]))  # cut by B


def test_players_of_a_team_share_a_jersey_and_referees_appear():
    referees = 0
    for seed in range(8):
        scene = render_scene(np.random.default_rng(seed), (480, 360))
        jerseys: dict[int, set] = {0: set(), 1: set()}
        for k, outfit in enumerate(scene.outfits, start=1):
            if outfit is None:
                assert scene.categories[k - 1] == BALL
                continue
            if outfit.team == -1:
                assert outfit.stripes
                referees += bool((scene.owner == k).any())
            else:
                jerseys[outfit.team].add(outfit.jersey)
        assert all(len(j) <= 1 for j in jerseys.values())
        assert not (jerseys[0] & jerseys[1])
    assert referees >= 2


@pytest.mark.parametrize("label", [JERSEY, SKIN])
def test_parts_are_textured_not_flat(label):
    lab = np.full((60, 30), label, np.uint8)
    rng = np.random.default_rng(0)
    outfit = random_outfit(rng, 0, team_outfits(rng), referee=False)
    rgb = colour_parts(np.random.default_rng(1), lab, outfit)
    again = colour_parts(np.random.default_rng(1), lab, outfit)
    assert np.array_equal(rgb, again)
    # Shading alone is linear along a row; texture leaves a small residual around that line.
    xs = np.arange(lab.shape[1])
    for row in rgb[..., 1]:
        fit = np.polyval(np.polyfit(xs, row, 1), xs)
        rel = np.abs(row - fit) / row.mean()
        assert 0.005 < rel.mean() and rel.max() < 0.3
