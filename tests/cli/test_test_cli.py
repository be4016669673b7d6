"""``vipseg eval``, ``vipseg test`` and ``vipseg predict`` end to end on generated data."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from tests.helpers import make_shapes_dataset, perturbed_predictions
from vipseg.cli.main import main
from vipseg.config.loader import load_config
from vipseg.engine.checkpoint import save_checkpoint
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.submission import write_submission
from vipseg.models.build import build_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train/val labelled, test images-only (as the challenge ships it); 96x80 images."""
    root = tmp_path_factory.mktemp("data")
    for split, n, seed in [("train", 2, 0), ("val", 2, 1), ("test", 2, 2)]:
        make_shapes_dataset(root, split, n_images=n, size=(96, 80), seed=seed)
    test = json.loads((root / "test.json").read_text())
    (root / "test.json").write_text(json.dumps({"images": test["images"]}))
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_equals_pycocotools(data, tmp_path, capsys):
    gt = json.loads((data / "val.json").read_text())
    preds = perturbed_predictions(gt, seed=5, drop_images=(2,))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    for protocol in ("coco", "vipriors"):
        code, out, _ = run(capsys, "eval", data / "val.json", tmp_path / "pred.json", "--json",
                           "--protocol", protocol)
        assert code == 0
        assert json.loads(out) == coco_metrics(gt, preds, protocol=protocol)
    code, out, _ = run(capsys, "eval", data / "val.json", tmp_path / "pred.json",
                       "--iou-types", "segm")
    assert code == 0 and "segm" in out and "bbox" not in out and "AP/ball" in out


def test_submission_round_trips_through_eval(data, tmp_path, capsys):
    gt = json.loads((data / "val.json").read_text())
    preds = perturbed_predictions(gt, seed=6)
    result, archive = write_submission(preds, tmp_path)
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == ["submission.json"]
        assert json.loads(zf.read("submission.json")) == json.loads(result.read_text())
    scores = [json.loads(run(capsys, "eval", data / "val.json", p, "--json")[1])
              for p in (result, archive)]
    assert scores[0] == scores[1] == coco_metrics(gt, preds)


@pytest.mark.parametrize("content, message", [
    ('{"image_id": 1}', "must be a JSON list"),
    ("[1, 2", "invalid JSON"),
    ('[{"image_id": 77, "category_id": 1, "score": 1}]', "image_id 77 is not in"),
    ('[{"image_id": 1, "category_id": 5, "score": 1}]', "category_id 5 is not one of"),
])
def test_eval_bad_prediction_files(data, tmp_path, capsys, content, message):
    (tmp_path / "bad.json").write_text(content)
    code, _, err = run(capsys, "eval", data / "val.json", tmp_path / "bad.json")
    assert code == 2 and message in err and "bad.json" in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_eval_missing_and_unlabelled_files(data, tmp_path, capsys):
    code, _, err = run(capsys, "eval", data / "val.json", tmp_path / "nope.json")
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "eval", data / "test.json", data / "test.json")
    assert code == 2 and "missing top-level keys 'annotations', 'categories'" in err


@pytest.fixture(scope="module")
def checkpoint(repo, data, tmp_path_factory):
    """An untrained tiny Mask R-CNN checkpoint (from-scratch weights) and its config."""
    config = repo / "configs/exp/mask_rcnn/tiny_cpu.yaml"
    cfg = load_config(config, ["dataset.test_scale=[128,96]"])
    torch.manual_seed(0)
    ckpt = tmp_path_factory.mktemp("run") / "best.pth"
    save_checkpoint(ckpt, {"model": build_model(cfg).state_dict(), "epoch": 0})
    return config, ckpt


def test_test_command_valid_submission_and_refusals(data, checkpoint, tmp_path, capsys):
    config, ckpt = checkpoint
    common = ["--data-root", data, "--device", "cpu", "dataset.test_scale=[128,96]"]
    code, out, err = run(capsys, "test", config, ckpt, "--valid", "--out", tmp_path, *common)
    assert code == 0, err
    assert "segm" in out and "AP/human" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"segm/AP", "bbox/AP", "segm/AP/ball"}
    code, out, err = run(capsys, "test", config, ckpt, *common)
    assert code == 0, err
    sub = ckpt.parent / "test"
    with zipfile.ZipFile(sub / "submission.zip") as zf:
        preds = json.loads(zf.read("submission.json"))
    test_ids = {im["id"] for im in json.loads((data / "test.json").read_text())["images"]}
    assert preds, "no prediction: the id and category checks below would pass vacuously"
    assert {p["image_id"] for p in preds} <= test_ids
    assert all(p["category_id"] in (1, 2) and isinstance(p["segmentation"]["counts"], str)
               and p["segmentation"]["size"] == [80, 96] for p in preds)
    code, _, err = run(capsys, "test", config, ckpt, *common)
    assert code == 2 and "already exists" in err and "--force" in err
    assert run(capsys, "test", config, ckpt, *common, "--force", "test.score_thresh=0.5")[0] == 0


def test_test_submission_scores_through_eval(checkpoint, tmp_path, capsys):
    """`vipseg test` on a test split whose ground truth is known (categories with ids of their
    own: human=7, ball=3), then `vipseg eval GT submission.zip`."""
    config, ckpt = checkpoint
    root = tmp_path / "data"
    ids = {1: 7, 2: 3}
    for split, seed in (("val", 1), ("test", 2)):
        make_shapes_dataset(root, split, n_images=2, size=(96, 80), seed=seed)
        coco = json.loads((root / f"{split}.json").read_text())
        coco["categories"] = [{**c, "id": ids[c["id"]]} for c in coco["categories"]]
        for a in coco["annotations"]:
            a["category_id"] = ids[a["category_id"]]
        (root / f"{split}.json").write_text(json.dumps(coco))
    gt = json.loads((root / "test.json").read_text())
    (root / "test_gt.json").write_text(json.dumps(gt))
    (root / "test.json").write_text(json.dumps({"images": gt["images"]}))
    out = tmp_path / "sub"
    code, _, err = run(capsys, "test", config, ckpt, "--out", out, "--data-root", root,
                       "--device", "cpu", "dataset.test_scale=[128,96]")
    assert code == 0, err
    preds = json.loads((out / "result.segm.json").read_text())
    assert preds and {p["category_id"] for p in preds} <= {7, 3}
    code, out_text, err = run(capsys, "eval", root / "test_gt.json", out / "submission.zip",
                              "--json")
    assert code == 0, err
    assert json.loads(out_text) == coco_metrics(gt, preds)


def test_test_command_rejects_mismatched_weights(data, checkpoint, tmp_path, capsys):
    config, _ = checkpoint
    save_checkpoint(tmp_path / "bad.pth", {"model": {"head.weight": torch.zeros(2)}})
    code, _, err = run(capsys, "test", config, tmp_path / "bad.pth", "--valid", "--data-root",
                       data, "--device", "cpu")
    assert code == 2 and "do not match" in err and err.count("\n") == 1


def test_predict_writes_overlays_and_json(data, checkpoint, tmp_path, capsys):
    config, ckpt = checkpoint
    out = tmp_path / "vis"
    code, stdout, err = run(capsys, "predict", config, ckpt, data / "test", "--out", out,
                            "--score-thr", "0", "--data-root", data, "--device", "cpu",
                            "dataset.test_scale=[128,96]")
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["test_0000.png", "test_0001.png"]
    preds = json.loads((out / "predictions.json").read_text())
    assert all(p["image_id"] in ("test_0000.png", "test_0001.png") and
               p["category"] in ("human", "ball") for p in preds)
    code, _, err = run(capsys, "predict", config, ckpt, data / "test", "--out", out,
                       "--data-root", data, "--device", "cpu")
    assert code == 2 and "already exists" in err
