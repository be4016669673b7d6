"""``vipseg average`` / ``vipseg swa`` / ``vipseg train --init-from`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import (SHAPES_128x96, TINY_CONFIG, one_torch_thread,  # noqa: F401
                           shapes_train_root)
from vipseg.cli.main import main
from vipseg.config import dump_config, load_config
from vipseg.engine.checkpoint import load_checkpoint, save_checkpoint
from vipseg.models.build import build_model

TINY = str(TINY_CONFIG)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = [*SHAPES_128x96, "train.val_interval=0"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shapes_train_root(tmp_path_factory, size=(128, 96))


def bn_config(shapes: Path, folder: Path) -> Path:
    """A merged BN variant of the tiny config as a file (what --bn-refresh / --greedy-soup
    take), with its checkpoints epoch_1.pth and epoch_2.pth (two initialisations)."""
    cfg = load_config(TINY, [f"dataset.root={shapes}", *SMALL, "model.backbone.norm=BN"])
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(dump_config(cfg))
    for k in (1, 2):
        torch.manual_seed(k)
        save_checkpoint(folder / f"epoch_{k}.pth", {"model": build_model(cfg).state_dict(),
                                                    "config": path.read_text()})
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_average_a_folder_refuses_to_overwrite_and_force_replaces(shapes, tmp_path, capsys):
    bn_config(shapes, tmp_path / "run")
    out = tmp_path / "avg.pth"
    assert main(["average", str(tmp_path / "run"), "--out", str(out)]) == 0
    avg = load_checkpoint(out)["model"]
    a, b = (load_checkpoint(tmp_path / "run" / f"epoch_{k}.pth")["model"] for k in (1, 2))
    key = "roi_heads.box_predictor.cls_score.weight"
    torch.testing.assert_close(avg[key], (a[key] + b[key]) / 2)
    capsys.readouterr()
    before = out.read_bytes()
    assert main(["average", str(tmp_path / "run"), "--out", str(out)]) == 2
    assert "already exists (use --force" in error_line(capsys)
    assert out.read_bytes() == before
    assert main(["average", str(tmp_path / "run" / "epoch_1.pth"), "--out", str(out),
                 "--force"]) == 0
    assert torch.equal(load_checkpoint(out)["model"][key], a[key])


def test_average_of_mixed_architectures_exits_2_with_one_line(shapes, tmp_path, capsys):
    bn_config(shapes, tmp_path / "run")
    gn = tmp_path / "gn.pth"
    cfg = load_config(TINY, SMALL)
    save_checkpoint(gn, {"model": build_model(cfg).state_dict(), "config": dump_config(cfg)})
    code = main(["average", str(tmp_path / "run" / "epoch_1.pth"), str(gn), "--out",
                 str(tmp_path / "x.pth")])
    line = error_line(capsys)
    assert code == 2 and line.startswith(f"error: {gn}: weight 'backbone.body.")
    assert line.endswith("is missing (another architecture)")
    assert not (tmp_path / "x.pth").exists()


def test_bn_refresh_and_greedy_soup_from_the_command_line(shapes, tmp_path, capsys):
    config = bn_config(shapes, tmp_path / "run")
    out = tmp_path / "soup.pth"
    assert main(["average", str(tmp_path / "run"), "--out", str(out), "--greedy-soup",
                 str(config), "--bn-refresh", str(config), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert text.count("segm/AP") >= 4 and "soup 1: " in text and "soup + " in text
    assert "BatchNorm statistics recomputed over 2 training batches" in text
    soup = load_checkpoint(out)
    assert soup["averaged_from"] and "soup_ap" in soup
    stem = soup["model"]["backbone.body.stem.1.running_var"]
    assert not torch.allclose(stem, torch.ones_like(stem))  # refreshed, not reset / initial


def test_train_init_from_is_recorded_and_summarised(shapes, tmp_path, capsys):
    cfg = load_config(TINY, [*SMALL, "dataset.classes=[human,ball,referee]"])
    source = tmp_path / "three.pth"
    save_checkpoint(source, {"model": build_model(cfg).state_dict()})
    assert main(["train", TINY, "warm", "--work-dir", str(tmp_path / "out"), "--data-root",
                 str(shapes), "--device", "cpu", "--init-from", str(source), *SMALL,
                 "train.max_iters=1", "train.checkpoint_interval=0"]) == 0
    run = next((tmp_path / "out" / "warm").iterdir())
    assert load_config(run / "config.yaml").train.init_from == str(source)
    log = (run / "log.txt").read_text()
    assert f"init_from {source}: " in log and "6 skipped (shape differs)" in log
    capsys.readouterr()
    assert main(["train", TINY, "strict", "--work-dir", str(tmp_path / "out"), "--data-root",
                 str(shapes), "--device", "cpu", "--init-from", str(source), *SMALL,
                 "train.init_strict=true"]) == 2
    assert "weights do not match the config's model" in error_line(capsys)
    assert not (tmp_path / "out" / "strict").exists()


def test_swa_with_a_missing_checkpoint_exits_2(tmp_path, capsys):
    assert main(["swa", TINY, str(tmp_path / "none.pth"), "x", "--work-dir",
                 str(tmp_path)]) == 2
    assert "none.pth: checkpoint not found" in error_line(capsys)


def test_swa_resume_continues_the_average_where_the_stopped_stage_left_it(shapes, tmp_path,
                                                                         capsys):
    torch.manual_seed(0)
    start = tmp_path / "start.pth"
    save_checkpoint(start, {"model": build_model(load_config(TINY, SMALL)).state_dict()})
    common = [TINY, str(start)]
    args = ["--work-dir", str(tmp_path), "--data-root", str(shapes), "--device", "cpu",
            *SMALL, "swa.epochs=2", "swa.update_every=1"]
    assert main(["swa", *common, "full", *args]) == 0
    # The same stage stopped after its first epoch (2 of 4 iterations), then resumed.
    assert main(["swa", *common, "cut", *args, "train.max_iters=2"]) == 0
    cut_run = next((tmp_path / "cut").iterdir())
    stopped = load_checkpoint(cut_run / "last.pth")
    assert stopped["iteration"] == 2 and int(stopped["swa"]["n_averaged"]) == 2
    assert main(["swa", *common, "cut", *args, "--resume"]) == 0
    assert [p.name for p in (tmp_path / "cut").iterdir()] == [cut_run.name]
    full = load_checkpoint(next((tmp_path / "full").iterdir()) / "swa.pth")
    resumed = load_checkpoint(cut_run / "swa.pth")
    assert resumed["iteration"] == 4 and resumed["n_averaged"] == full["n_averaged"] == 4
    for key, value in full["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-4, atol=1e-6)
    # A checkpoint without the average (e.g. of plain training) cannot resume the stage.
    del stopped["swa"]
    save_checkpoint(cut_run / "last.pth", {**stopped, "iteration": 4})
    capsys.readouterr()
    before = (cut_run / "swa.pth").read_bytes()
    assert main(["swa", *common, "cut", *args, "--resume", "train.max_iters=6"]) == 2
    assert error_line(capsys) == (f"error: {cut_run / 'last.pth'}: no SWA average in the "
                                  "checkpoint: resume a stage from a checkpoint `vipseg swa` "
                                  "wrote")
    assert (cut_run / "swa.pth").read_bytes() == before
