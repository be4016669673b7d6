"""The run report: every section from a hand-made run folder, runs with parts missing, bad
input, comparisons, and reading metrics.jsonl back (resumed runs, results.csv)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import make_shapes_dataset, perturbed_predictions
from vipseg.config import dump_config, load_config
from vipseg.engine.error_analysis import per_image_ap, rank_images
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.report import load_run, write_report
from vipseg.engine.run_history import read_metrics, save_val_predictions, write_results_csv
from vipseg.errors import DataError, OutputError, OutputExistsError
from vipseg.utils.io import MARKER

TINY = Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml"
CLASSES = ["human", "ball"]


@pytest.fixture(scope="module")
def val_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("val_data")
    make_shapes_dataset(root, "val", n_images=18, seed=1)
    return root


def make_run(parent: Path, data: Path, name: str = "exp_1", *, validated: bool = True,
             seed: int = 0, epochs: int = 2) -> tuple[Path, dict]:
    """A run folder as train leaves it: 2 epochs of 5 iterations, validated after each."""
    run = parent / "tiny" / name
    run.mkdir(parents=True)
    cfg = load_config(TINY, [f"dataset.root={data}", "dataset.val.ann=val.json",
                             "dataset.val.images=val", f"train.epochs={epochs}"])
    (run / "config.yaml").write_text(dump_config(cfg))
    gt = json.loads((data / "val.json").read_text())
    preds = perturbed_predictions(gt, seed=seed, drop_images=(3,))
    metrics = coco_metrics(gt, preds, class_names=CLASSES)
    rows = []
    for it in range(1, 11):
        rows.append({"type": "train", "epoch": (it - 1) // 5 + 1, "iteration": it, "lr": 0.01 / it,
                     "loss": 2.0 / it, "loss_mask": 1.0 / it, "sec_per_iter": 0.5,
                     "data_time": 0.05, "eta_s": 0.5 * (10 - it), "memory_mb": 100.0 + it})
        if it % 5 == 0:
            rows.append({"type": "epoch", "epoch": it // 5, "iteration": it, "loss": 2.0 / it,
                         "loss_mask": 1.0 / it, "lr": 0.01 / it, "seconds": 2.5,
                         "completed": True})
            if validated:
                rows.append({"type": "val", "epoch": it // 5, "iteration": it, **metrics,
                             "seconds": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if validated:
        save_val_predictions(run, preds, ann_file=data / "val.json", images_dir=data / "val",
                             classes=CLASSES)
    return run, {"metrics": metrics, "gt": gt, "preds": preds}


def ap_cells(text: str) -> dict[str, str]:
    return dict(re.findall(r'<td data-key="([^"]+)">([^<]*)</td>', text))


def test_report_holds_every_section(tmp_path, val_data):
    run, known = make_run(tmp_path, val_data)
    out = write_report([run])
    assert out == run / "report.html"
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "<details>" in text and "rpn:" in text  # the config, collapsible
    cells = ap_cells(text)
    for key in ("segm/AP", "segm/AP75", "bbox/AP50", "segm/AP/human", "segm/AP/ball"):
        assert cells[key] == f"{known['metrics'][key]:.3f}", key
    for section in ("Timings", "Training curves", "Validation AP", "Precision-recall",
                    "Error breakdown", "8 worst images", "8 best images"):
        assert section in text, section
    assert "Missing or skipped" not in text
    assert "0.500" in text and "110 MiB" in text  # s/iter, peak memory
    # 8 worst and 8 best images, in the order of per-image mask AP.
    worst, best = rank_images(per_image_ap(known["gt"], known["preds"]), 8)
    captions = re.findall(r"<figcaption>([^:]+): mask AP ([0-9.]+)</figcaption>", text)
    names = {im["id"]: im["file_name"] for im in known["gt"]["images"]}
    assert [c[0] for c in captions] == [names[i] for i, _ in worst + best]
    assert text.count('src="data:image/jpeg;base64,') == 16
    assert text.count('src="data:image/png;base64,') == 4
    pngs = sorted(p.name for p in (run / "report").iterdir() if p.name != MARKER)
    assert pngs == ["error_breakdown.png", "pr_curves.png", "training_curves.png",
                    "validation_ap.png"]
    assert all((run / "report" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    with pytest.raises(OutputExistsError):
        write_report([run])


def test_a_run_without_validation_says_what_is_missing(tmp_path, val_data):
    run, _ = make_run(tmp_path, val_data, validated=False, epochs=4)
    text = write_report([run]).read_text()
    assert "Missing or skipped" in text and "no validation yet" in text
    assert "training not finished: 2 of 4 epochs logged" in text
    assert "Training curves" in text and text.count("data:image/png") == 1
    assert "data-key" not in text  # no AP table without a validation


def test_a_broken_metrics_line_is_named_and_skipped(tmp_path, val_data):
    run, _ = make_run(tmp_path, val_data)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(3, '{"type": "train", "iteration": 4, "loss": 0.')  # cut mid-write
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    log = read_metrics(run / "metrics.jsonl")
    assert len(log.skipped) == 1
    assert log.skipped[0].startswith(f"{run / 'metrics.jsonl'}:4: not JSON (")
    assert [r["iteration"] for r in log.train] == list(range(1, 11))
    assert f"skipped {log.skipped[0]}" in load_run(run).notes  # the report's notes


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not a vipseg run folder") as err:
        write_report([tmp_path])
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="no such run folder"):
        write_report([tmp_path / "absent"])


def test_comparison_overlays_runs_and_puts_tables_side_by_side(tmp_path, val_data):
    a, known_a = make_run(tmp_path, val_data, "exp_a", seed=0)
    b, known_b = make_run(tmp_path, val_data, "exp_b", seed=1)
    with pytest.raises(OutputError, match="needs --out"):
        write_report([a, b])
    out = write_report([a, b], tmp_path / "compare.html")
    text = out.read_text()
    assert "tiny/exp_a" in text and "tiny/exp_b" in text
    assert text.count('<table class="ap-table">') == 2
    ap = re.findall(r'<td data-key="segm/AP">([^<]*)</td>', text)
    assert ap == [f"{known_a['metrics']['segm/AP']:.3f}", f"{known_b['metrics']['segm/AP']:.3f}"]
    assert sorted(p.name for p in (tmp_path / "compare").iterdir() if p.name != MARKER) == [
        "training_curves.png", "validation_ap.png"]


def test_metrics_of_a_resumed_run_keep_the_later_copy_and_fill_results_csv(tmp_path):
    rows = [{"type": "train", "iteration": i, "loss": 1.0} for i in (1, 2, 3)]
    rows += [{"type": "epoch", "epoch": 1, "iteration": 3, "loss": 1.0, "completed": False}]
    # resumed from a checkpoint at iteration 2: iteration 3 again, then on
    rows += [{"type": "train", "iteration": i, "loss": 0.5} for i in (3, 4)]
    rows += [{"type": "epoch", "epoch": 1, "iteration": 4, "loss": 0.5, "completed": True},
             {"type": "val", "epoch": 1, "iteration": 4, "segm/AP": 0.25}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["iteration"], r["loss"]) for r in log.train] == [(1, 1.0), (2, 1.0), (3, 0.5),
                                                                (4, 0.5)]
    assert [r["iteration"] for r in log.epoch] == [4]
    csv = write_results_csv(tmp_path).read_text().splitlines()
    assert csv == ["epoch,iteration,completed,seconds,lr,loss,segm/AP", "1,4,True,,,0.5,0.25"]
