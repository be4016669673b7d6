"""``vipseg train``: argument handling, one-line errors, run folders never overwritten."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import make_shapes_dataset, one_torch_thread  # noqa: F401 (fixture)
from vipseg.cli.main import build_parser, main
from vipseg.config import load_config
from vipseg.engine.checkpoint import load_checkpoint

TINY = str(Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = ["augment.scales=[[160,128]]", "train.batch_size=2", "train.val_interval=0",
        "train.checkpoint_interval=0"]


class FixedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 5, 6, 7, 8, 9)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_help_explains_outputs_resume_and_torchrun():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for word in ("--resume", "--work-dir", "--data-root", "--device", "torchrun", "last.pth",
                 "key=value"):
        assert word in text


def test_unknown_config_key_exits_2_with_one_line(tmp_path, capsys):
    rc = main(["train", TINY, "bad", "--work-dir", str(tmp_path), "train.epochz=3"])
    assert rc == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and "train.epochz" in line
    assert not (tmp_path / "bad").exists()


def test_resume_without_checkpoint_and_fp16_on_cpu_are_user_errors(tmp_path, capsys):
    assert main(["train", TINY, "none", "--work-dir", str(tmp_path), "--resume"]) == 2
    assert "no last.pth found" in _error_line(capsys)
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=2)
    rc = main(["train", TINY, "amp", "--work-dir", str(tmp_path), "--data-root", str(root),
               "--device", "cpu", "train.amp=fp16", *FAST])
    assert rc == 2 and "fp16 needs a CUDA device" in _error_line(capsys)


def test_existing_run_folder_is_never_overwritten_and_resume_continues(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr("vipseg.engine.run_dir.datetime", FixedClock)
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=2)
    taken = tmp_path / "out" / "clash" / "exp_20260506_070809"
    taken.mkdir(parents=True)
    (taken / "last.pth").write_text("not mine")
    args = ["train", TINY, "clash", "--work-dir", str(tmp_path / "out"), "--data-root", str(root),
            "--device", "cpu", *FAST]
    assert main([*args, "train.max_iters=1"]) == 0
    assert (taken / "last.pth").read_text() == "not mine"
    run = taken.with_name(taken.name + "_1")
    assert load_checkpoint(run / "last.pth")["iteration"] == 1
    assert f"outputs in {run}" in capsys.readouterr().out
    # `--resume key=value`: the override is not taken for a checkpoint path.
    assert main([*args, "--resume", "train.max_iters=2"]) == 0
    assert load_checkpoint(run / "last.pth")["iteration"] == 2
    assert sorted(p.name for p in run.parent.iterdir()) == [taken.name, run.name]


def test_data_root_is_recorded_in_config_yaml(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=2)
    out = tmp_path / "out"
    assert main(["train", TINY, "first", "--work-dir", str(out), "--data-root", str(root),
                 "--device", "cpu", "train.max_iters=1", *FAST]) == 0
    config = next((out / "first").iterdir()) / "config.yaml"
    assert load_config(config).dataset.root == str(root)
    assert load_checkpoint(config.with_name("last.pth"))["config"] == config.read_text()
    # config.yaml alone reproduces the run, from a folder without the config's default root.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(config), "again", "--work-dir", str(out), "--device", "cpu"]) == 0
    assert load_checkpoint(next((out / "again").iterdir()) / "last.pth")["iteration"] == 1


def test_model_config_error_leaves_no_run_folder(tmp_path, capsys):
    root = tmp_path / "data"
    make_shapes_dataset(root, "train", n_images=2)
    rc = main(["train", TINY, "bad", "--work-dir", str(tmp_path / "out"), "--data-root",
               str(root), "--device", "cpu", "model.rpn.anchor_sizes=[8,16]", *FAST])
    assert rc == 2 and "anchor_sizes" in _error_line(capsys)
    assert not (tmp_path / "out").exists()
