"""COCO metrics: equal to pycocotools, the VIPriors protocol, empty results, bad inputs."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.helpers import make_shapes_dataset, perturbed_predictions
from vipseg.engine.evaluation import coco_metrics, format_metrics_table
from vipseg.errors import DataError


@pytest.fixture(scope="module")
def gt_path(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), "val", n_images=6, seed=3)


@pytest.fixture(scope="module")
def gt(gt_path):
    return json.loads(gt_path.read_text())


def reference_stats(gt_path, preds, iou, img_ids=None, cat_ids=None):
    """COCOeval run the textbook way, straight from pycocotools."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(preds)), iou)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats[:6])


KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


@pytest.mark.parametrize("iou", ["segm", "bbox"])
def test_equals_pycocotools(gt_path, gt, iou):
    preds = perturbed_predictions(gt, seed=1)
    m = coco_metrics(gt_path, preds)
    assert [m[f"{iou}/{k}"] for k in KEYS] == reference_stats(gt_path, preds, iou)
    assert 0.2 < m[f"{iou}/AP"] < 1.0  # perturbed: neither perfect nor useless
    for cat_id, name in [(1, "human"), (2, "ball")]:
        assert m[f"{iou}/AP/{name}"] == pytest.approx(
            reference_stats(gt_path, preds, iou, cat_ids=[cat_id])[0], abs=1e-12)


def test_vipriors_differs_only_when_images_lack_predictions(gt_path, gt):
    full = perturbed_predictions(gt, seed=2)
    assert coco_metrics(gt, full, protocol="vipriors") == coco_metrics(gt, full)
    dropped = (1, 4)
    part = perturbed_predictions(gt, seed=2, drop_images=dropped)
    coco, vip = coco_metrics(gt, part), coco_metrics(gt, part, protocol="vipriors")
    assert vip["segm/AP"] > coco["segm/AP"]  # the missed objects of images 1, 4 don't count
    kept = [im["id"] for im in gt["images"] if im["id"] not in dropped]
    assert [vip[f"segm/{k}"] for k in KEYS] == reference_stats(gt_path, part, "segm", kept)
    assert [coco[f"segm/{k}"] for k in KEYS] == reference_stats(gt_path, part, "segm")


def test_perfect_predictions_score_one(gt):
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"],
              "segmentation": a["segmentation"], "bbox": a["bbox"], "score": 1.0}
             for a in gt["annotations"]]
    m = coco_metrics(gt, preds)
    assert m["segm/AP"] == pytest.approx(1.0) and m["bbox/AP"] == pytest.approx(1.0)


def test_empty_results(gt):
    coco = coco_metrics(gt, [])
    assert coco["segm/AP"] == 0.0 and coco["bbox/AP/ball"] == 0.0
    vip = coco_metrics(gt, [], protocol="vipriors")  # the official script scores no image
    assert vip["segm/AP"] == -1.0 and vip["segm/AP/human"] == -1.0


def test_class_names_select_per_class_keys(gt):
    m = coco_metrics(gt, perturbed_predictions(gt), iou_types=["segm"],
                     class_names=["ball", "goal"])
    assert "segm/AP/ball" in m and m["segm/AP/goal"] == -1.0
    assert "segm/AP/human" not in m and "bbox/AP" not in m


@pytest.mark.parametrize("bad, message", [
    ({"a": 1}, "must be a JSON list"),
    ([{"image_id": 999, "category_id": 1, "score": 0.5}], "image_id 999 is not in"),
    ([{"image_id": 1, "category_id": 7, "score": 0.5}], "category_id 7 is not one of"),
    ([{"image_id": 1, "category_id": 1}], "has no 'score'"),
    ([{"image_id": 1, "category_id": 1, "score": 0.5,
       "segmentation": {"size": [5, 5], "counts": "25"}}], "differs from the image"),
])
def test_bad_results_raise_one_line(gt, bad, message):
    with pytest.raises(DataError, match=message) as e:
        coco_metrics(gt, bad)
    assert "\n" not in str(e.value)


def test_bbox_given_for_some_predictions_only(gt):
    preds = perturbed_predictions(gt)
    del preds[1]["bbox"]
    with pytest.raises(DataError, match="prediction 1: 'bbox' is given for some"):
        coco_metrics(gt, preds)


def test_images_only_or_category_less_ground_truth_is_refused(gt):
    with pytest.raises(DataError, match="missing top-level keys 'annotations', 'categories'"):
        coco_metrics({"images": gt["images"]}, [])
    with pytest.raises(DataError, match="has no categories, so there is nothing to score"):
        coco_metrics({"images": gt["images"], "annotations": [], "categories": []}, [])


@pytest.mark.parametrize("breakage", ["duplicate id", "missing image", "unknown category",
                                      "bad rle", "odd polygon"])
def test_broken_ground_truth_is_refused_as_data_check_refuses_it(gt, breakage):
    """The validator of data check / train / test, not a looser one (was scored: AP 0.947)."""
    bad = copy.deepcopy(gt)
    a = bad["annotations"]
    if breakage == "duplicate id":
        a[1]["id"] = a[0]["id"]
    elif breakage == "missing image":
        a[0]["image_id"] = 999
    elif breakage == "unknown category":
        a[0]["category_id"] = 77
    elif breakage == "bad rle":
        a[0]["segmentation"] = {"size": [3, 3], "counts": "abc"}
    else:
        a[0]["segmentation"] = [[1, 2, 3, 4, 5, 6, 7]]
    with pytest.raises(DataError, match="^ground truth: "):
        coco_metrics(bad, perturbed_predictions(gt))


def test_metrics_table(gt):
    m = coco_metrics(gt, perturbed_predictions(gt))
    m["bbox/APl"] = -1.0
    lines = format_metrics_table(m).splitlines()
    assert lines[0].split() == KEYS + ["AP/human", "AP/ball"]
    assert lines[1].split()[0] == "segm" and lines[2].split()[0] == "bbox"
    assert lines[1].split()[1] == f"{m['segm/AP']:.3f}" and lines[2].split()[6] == "-"
    assert len({len(line) for line in lines}) == 1  # aligned
