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
    assert "usage: vipseg data " + tool in capsys.readouterr().out


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
