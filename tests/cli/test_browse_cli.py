"""``vipseg data browse``: PNG files of training samples, refusal of non-empty outputs."""

from __future__ import annotations

import cv2

from tests.helpers import make_shapes_dataset
from vipseg.cli.main import main
from vipseg.data.tools import browse as browse_tool
from vipseg.data.tools.extract_objects import extract_objects


def test_browse_writes_samples_and_guards_its_output(tmp_path, repo, capsys):
    root = tmp_path / "data"
    ann = make_shapes_dataset(root, "train", n_images=3, size=(96, 80))
    extract_objects(ann, root / "train", root / "objects")
    config = repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"
    out = tmp_path / "browse"
    args = ["data", "browse", str(config), "--data-root", str(root), "--output-dir", str(out),
            "--num", "4", "augment.crop_size=[64,48]", "augment.copy_paste.enabled=true",
            "augment.copy_paste.bank=objects"]
    assert main(args) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 4
    assert cv2.imread(str(files[0])).shape == (48, 64, 3)
    first = [f.read_bytes() for f in files]
    assert main(args) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert [f.read_bytes() for f in files] == first  # same seed, same samples
    assert main(args + ["--force", "--seed", "1"]) == 0
    assert [f.read_bytes() for f in sorted(out.glob("*.png"))] != first


def test_show_without_gui_still_writes_the_files(tmp_path, repo, capsys, monkeypatch):
    """No window is ever opened in tests: imshow/waitKey are replaced by recorders."""
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=2, size=(96, 80))
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay=0: ord(" "))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    args = ["data", "browse", str(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"), "--data-root",
            str(root), "--num", "3", "--show", "augment.crop_size=[64,48]"]
    monkeypatch.setattr(browse_tool, "has_gui", lambda: False)
    assert main(args + ["--output-dir", str(tmp_path / "headless")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--show" in err[0] and "no window support" in err[0]
    assert len(list((tmp_path / "headless").glob("*.png"))) == 3 and shown == []
    monkeypatch.setattr(browse_tool, "has_gui", lambda: True)
    assert main(args + ["--output-dir", str(tmp_path / "gui")]) == 0
    assert capsys.readouterr().err == ""
    assert len(list((tmp_path / "gui").glob("*.png"))) == 3 and shown == [(48, 64, 3)] * 3


def test_browse_is_documented(capsys):
    try:
        main(["data", "browse", "--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    assert "--output-dir" in text and "--num" in text and "--seed" in text
