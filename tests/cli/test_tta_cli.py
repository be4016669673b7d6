"""``vipseg test --tta / --ensemble``, ``vipseg ensemble`` and ``vipseg eval --metric`` end to
end on generated data with the untrained tiny model (it predicts 50 boxes per image)."""

from __future__ import annotations

import json

import pytest
from torchvision.ops import box_iou
import torch

from tests.cli.test_test_cli import checkpoint, data, run  # noqa: F401 (fixtures)
from tests.helpers import perturbed_predictions

COMMON = ["--device", "cpu", "dataset.test_scale=[128,96]"]


def val_results(capsys, tmp_path, name, *argv):
    out = tmp_path / name
    code, stdout, err = run(capsys, "test", *argv, "--valid", "--out", out, *COMMON)
    assert code == 0, err
    results = json.loads((out / "result.segm.json").read_text())
    assert results, "an empty prediction makes every comparison vacuous"
    return results, stdout


def test_identity_tta_and_self_ensemble_equal_plain_testing(data, checkpoint, tmp_path,
                                                            capsys):
    config, ckpt = checkpoint
    root = ["--data-root", data]
    plain, _ = val_results(capsys, tmp_path, "plain", config, ckpt, *root)
    identity = ["tta.scales=[[128,96]]", "tta.flip=false"]
    tta, out = val_results(capsys, tmp_path, "tta", config, ckpt, "--tta", *root, *identity)
    assert "with TTA" in out and tta == plain
    member = f"{config}:{ckpt}"
    ens, out = val_results(capsys, tmp_path, "ens", "--ensemble", member, member, *root)
    assert "ensemble of 2" in out and ens == plain
    # with --tta too: tests/engine/test_ensemble.py (kept out of here: each run costs a model)


def test_test_submission_with_tta_and_the_one_ball_prior(data, checkpoint, tmp_path, capsys):
    config, ckpt = checkpoint
    out = tmp_path / "sub"
    code, stdout, err = run(capsys, "test", config, ckpt, "--tta", "--out", out, "--data-root",
                            data, *COMMON, "tta.scales=[1.0,[128,96]]", "tta.flip=false",
                            "test.post.one_ball={class_name: ball, min_score: 0.0}")
    assert code == 0, err
    assert "with TTA" in stdout
    preds = json.loads((out / "result.segm.json").read_text())
    balls = [p for p in preds if p["category_id"] == 2]
    assert preds and balls
    for image_id in {p["image_id"] for p in balls}:
        mine = sorted((p for p in balls if p["image_id"] == image_id), key=lambda p: -p["score"])
        xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in mine)])
        inter = box_iou(xyxy[:1], xyxy)[0]
        assert (inter[1:] > 0).all()  # every kept ball overlaps the top ball


def test_ensemble_refusals(data, checkpoint, tmp_path, capsys):
    config, ckpt = checkpoint
    other = tmp_path / "one_class.yaml"
    other.write_text(f"_base_: [{config}]\ndataset: {{classes: [human]}}\n")
    code, _, err = run(capsys, "test", "--ensemble", f"{config}:{ckpt}", f"{other}:{ckpt}",
                       "--valid", "--data-root", data, "--device", "cpu")
    assert code == 2 and "classes ['human'] differ" in err and err.count("\n") == 1
    code, _, err = run(capsys, "test", "--ensemble", f"{config}:{ckpt}", "--valid",
                       "--device", "cpu")
    assert code == 2 and "at least two" in err
    code, _, err = run(capsys, "test", config, ckpt, "--valid", "--tta", "--data-root", data,
                       "--device", "cpu", "tta.scales=[]")
    assert code == 2 and "tta.scales must list at least one scale" in err


def test_ensemble_command_and_occlusion_metric(data, tmp_path, capsys):
    gt = json.loads((data / "val.json").read_text())
    preds = perturbed_predictions(gt, seed=3)
    (tmp_path / "a.json").write_text(json.dumps(preds))
    out = tmp_path / "fused.json"
    code, stdout, err = run(capsys, "ensemble", tmp_path / "a.json", tmp_path / "a.json",
                            "--out", out)
    assert code == 0, err
    fused = json.loads(out.read_text())
    assert sorted(r["score"] for r in fused) == pytest.approx(sorted(r["score"] for r in preds))
    code, _, err = run(capsys, "ensemble", tmp_path / "a.json", tmp_path / "a.json", "--out", out)
    assert code == 2 and "already exists" in err
    (tmp_path / "b.json").write_text(json.dumps([p for p in preds if p["image_id"] == 1]))
    code, _, err = run(capsys, "ensemble", tmp_path / "a.json", tmp_path / "b.json", "--out",
                       tmp_path / "x.json")
    assert code == 2 and "not the same image set" in err and err.count("\n") == 1
    code, stdout, err = run(capsys, "eval", data / "val.json", out, "--metric", "om")
    assert code == 0, err
    words = stdout.split()
    assert len(stdout.splitlines()) == 1 and words[0::2] == ["OM", "OIR", "DPR"]
    assert all(0 <= float(v) <= 1 for v in words[1::2])
    code, stdout, _ = run(capsys, "eval", data / "val.json", out, "--metric", "all")
    assert "segm" in stdout and stdout.splitlines()[-1].startswith("OM ")
    code, stdout, _ = run(capsys, "eval", data / "val.json", out, "--metric", "all", "--json")
    assert {"segm/AP", "occlusion/OM", "occlusion/DPR"} <= set(json.loads(stdout))
