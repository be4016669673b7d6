"""``vipseg data`` preparation commands, run in-process through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_shapes_dataset
from vipseg.cli.main import main

TOOLS = ["check", "rle2poly", "poly2rle", "merge", "extract-objects", "images-json", "norm"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", tool, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: vipseg data " + tool in out
    flat = " ".join(out.split())  # help lines are wrapped
    assert "(default: None)" not in flat and ") (default:" not in flat, out
    assert "(default: False)" not in flat, out  # flags


def test_check_real_train(deepsport, capsys):
    code, out, err = run(capsys, "data", "check", str(deepsport / "train.json"))
    assert code == 0
    assert "images: 223" in out and "instances: 1674" in out and "split instances" in out
    assert "warning:" in err and "no annotations" in err


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": [')
    code, _, err = run(capsys, "data", "check", str(bad))
    assert code == 2 and str(bad) in one_line_error(err) and "invalid JSON" in err
    code, _, err = run(capsys, "data", "rle2poly", str(tmp_path / "nope.json"), str(tmp_path / "o.json"))
    assert code == 2 and "file not found" in one_line_error(err)


def test_tools_on_generated_data_and_overwrite_guard(tmp_path, capsys):
    ann = make_shapes_dataset(tmp_path, "train", n_images=2, seed=9)
    val = make_shapes_dataset(tmp_path, "val", n_images=2, seed=10)
    imgs = str(tmp_path / "train")
    poly, back = str(tmp_path / "poly.json"), str(tmp_path / "back.json")
    steps = [
        ["data", "check", str(ann), "--images", imgs, "--json", str(tmp_path / "s.json")],
        ["data", "rle2poly", str(ann), poly],
        ["data", "poly2rle", poly, back],
        ["data", "merge", str(ann), str(val), "--out", str(tmp_path / "tv.json"),
         "--images-out", str(tmp_path / "tv")],
        ["data", "extract-objects", str(ann), "--images", imgs, "--out", str(tmp_path / "bank"),
         "--no-progress"],
        ["data", "images-json", imgs, "--out", str(tmp_path / "test.json")],
        ["data", "norm", str(ann), "--images", imgs, "--no-progress", "--json", str(tmp_path / "n.json")],
    ]
    for argv in steps:
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv, err)
    assert "round-trip mask IoU: mean 1.0000" in run(capsys, "data", "rle2poly", str(ann), poly, "--force")[1]
    assert json.loads((tmp_path / "tv.json").read_text())["images"][3]["id"] == 4
    for argv in steps:  # every output exists now: refused without --force
        code, _, err = run(capsys, *argv)
        assert code == 2 and "already exists (use --force" in one_line_error(err), argv
    code, _, err = run(capsys, *steps[4], "--force")
    assert code == 0, err


@pytest.mark.parametrize("segmentation, problem", [
    ({"size": [128, 160], "counts": "0" + "1" * 40}, "RLE counts add up to 420 pixels"),
    ({"size": [128, 160], "counts": "!!!!"}, "cannot be decoded"),
    ([[10, 10, 1000, 10, 50, 50]], "outside the 160x128 image"),
    ([[10, 10, 1e9, 10, 50, 50]], "outside the 160x128 image"),
])
@pytest.mark.parametrize("tool", ["check", "rle2poly", "extract-objects"])
def test_bad_masks_are_one_line_exit_2(tmp_path, capsys, tool, segmentation, problem):
    ann = make_shapes_dataset(tmp_path, "train", n_images=2, seed=9)
    d = json.loads(ann.read_text())
    d["annotations"][1]["segmentation"] = segmentation
    ann.write_text(json.dumps(d))
    argv = {"check": ["data", "check", str(ann), "--images", str(tmp_path / "train")],
            "rle2poly": ["data", "rle2poly", str(ann), str(tmp_path / "poly.json")],
            "extract-objects": ["data", "extract-objects", str(ann), "--images",
                                str(tmp_path / "train"), "--out", str(tmp_path / "bank"),
                                "--no-progress"]}[tool]
    code, _, err = run(capsys, *argv)
    line = one_line_error(err)
    assert code == 2 and str(ann) in line and f"annotation {d['annotations'][1]['id']} " in line
    assert problem in line
    assert not (tmp_path / "poly.json").exists() and not (tmp_path / "bank").exists()


def test_check_images_only_file_and_truncated_image(tmp_path, capsys):
    ann = make_shapes_dataset(tmp_path, "test", n_images=2, seed=11)
    ann.write_text(json.dumps({"images": json.loads(ann.read_text())["images"]}))
    code, out, err = run(capsys, "data", "check", str(ann), "--images", str(tmp_path / "test"))
    assert code == 0 and "images-only file" in out and "images: 2" in out and err == ""
    png = tmp_path / "test" / "test_0000.png"
    png.write_bytes(png.read_bytes()[:200])
    code, _, err = run(capsys, "data", "check", str(ann), "--images", str(tmp_path / "test"))
    line = one_line_error(err)
    assert code == 2 and "test_0000.png: cannot read image (truncated" in line


def test_images_json_of_a_json_file_and_output_under_a_file(tmp_path, capsys):
    ann = make_shapes_dataset(tmp_path, "test", n_images=1, seed=12)
    code, _, err = run(capsys, "data", "images-json", str(ann), "--out", str(tmp_path / "t.json"))
    assert code == 2 and "expected a folder or a text list of file names" in one_line_error(err)
    code, _, err = run(capsys, "data", "check", str(ann), "--json", str(ann / "summary.json"))
    assert code == 2 and f"{ann} is a file, not a folder" in one_line_error(err)


def test_merge_keep_ids_collision_is_one_line_error(tmp_path, capsys):
    ann = make_shapes_dataset(tmp_path, "train", n_images=2, seed=9)
    val = make_shapes_dataset(tmp_path, "val", n_images=2, seed=10)  # ids 1, 2 in both
    code, _, err = run(capsys, "data", "merge", str(ann), str(val), "--keep-ids",
                       "--out", str(tmp_path / "tv.json"))
    assert code == 2 and "--keep-ids: image id 1 is in both" in one_line_error(err)
    assert not (tmp_path / "tv.json").exists()
