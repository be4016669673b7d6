"""``vipseg data demo`` and ``vipseg data render`` through the real CLI entry point."""

from __future__ import annotations

import json

import cv2

from tests.cli.test_data_prep_cli import one_line_error, run
from tests.data.tools.test_demo import overlapping_coco
from vipseg.cli.data_demo import NATIVE_SIZES, parse_sizes


def test_render_cli_reports_cut_and_dropped_instances_and_refuses_existing_output(tmp_path, capsys):
    ann, ids = overlapping_coco(tmp_path / "in")
    out = tmp_path / "r"
    args = ["data", "render", "--annotations", str(ann), "--out", str(out), "--quiet"]
    code, stdout, err = run(capsys, *args)
    assert code == 0
    assert f"wrote {out}: 4 images" in stdout and "1 dropped" in stdout
    assert "cut to their visible pixels" in stdout
    assert err.startswith("warning: ") and str(ann) in err and f"(ids {ids['C']})" in err
    assert (out / "syn.json").exists()
    code, _, err = run(capsys, *args)
    assert code == 2 and "already exists" in one_line_error(err)
    assert run(capsys, *args, "--force")[0] == 0


def test_render_cli_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code, _, err = run(capsys, "data", "render", "--annotations", str(missing),
                       "--out", str(tmp_path / "a"))
    assert code == 2
    line = one_line_error(err)
    assert str(missing) in line and "not found" in line
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    code, _, err = run(capsys, "data", "render", "--annotations", str(bad),
                       "--out", str(tmp_path / "b"))
    assert code == 2
    line = one_line_error(err)
    assert str(bad) in line and "invalid JSON" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_demo_native_renders_a_native_size(tmp_path, capsys):
    out = tmp_path / "n"
    code, _, _ = run(capsys, "data", "demo", "--out", str(out), "--native", "--train", "1",
                     "--val", "0", "--test", "0", "--quiet")
    assert code == 0
    native = set(parse_sizes(NATIVE_SIZES))
    assert len(native) == 3
    h, w = cv2.imread(str(out / "train" / "train_00000.png")).shape[:2]
    assert (w, h) in native
    image = json.loads((out / "train.json").read_text())["images"][0]
    assert (image["width"], image["height"]) == (w, h)


def test_demo_seed_decides_the_bytes(tmp_path, capsys):
    def render(name: str, seed: int) -> bytes:
        out = tmp_path / name
        assert run(capsys, "data", "demo", "--out", str(out), "--train", "1", "--val", "0",
                   "--test", "0", "--size", "96x64", "--seed", str(seed), "--quiet")[0] == 0
        return (out / "train" / "train_00000.png").read_bytes() + (out / "train.json").read_bytes()

    first = render("a", 5)
    assert render("b", 5) == first
    assert render("c", 6) != first


def test_demo_size_error_names_the_whole_value(tmp_path, capsys):
    code, _, err = run(capsys, "data", "demo", "--out", str(tmp_path / "d"), "--size", "384x288,")
    assert code == 2
    line = one_line_error(err)
    assert "--size '384x288,'" in line and "entry ''" in line
    assert not (tmp_path / "d").exists()
