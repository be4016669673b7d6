"""PR curves, the COCO error breakdown and per-image AP on hand-made predictions whose
answers are worked out by hand (rectangular masks, so mask IoUs are exact box IoUs)."""

from __future__ import annotations

import numpy as np
import pytest

from vipseg.data.masks import encode
from vipseg.engine.error_analysis import (ERROR_TYPES, error_breakdown, per_image_ap,
                                          pr_curves, rank_images)
from vipseg.engine.evaluation import coco_metrics

SIZE = 100


def rect(x: int, y: int, w: int, h: int) -> dict:
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[y:y + h, x:x + w] = 1
    return encode(m)


def case(same_supercategory: bool = False) -> tuple[dict, list[dict]]:
    """Four images. Humans: A exact (score .9), B IoU 2/3 (.8), C IoU 1/3 (.7), D missed;
    a human detection on D's ball (.85, class confusion) and one on A's background (.75).
    The ball of D is found exactly (.9)."""
    boxes = {1: [0, 0, 40, 40], 2: [0, 0, 40, 40], 3: [0, 0, 40, 40], 4: [50, 50, 40, 40]}
    anns = [(i, 1, b) for i, b in boxes.items()] + [(4, 2, [0, 0, 20, 20])]
    gt = {"images": [{"id": i, "file_name": f"{i}.png", "height": SIZE, "width": SIZE}
                     for i in boxes],
          "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b,
                           "area": b[2] * b[3], "iscrowd": 0, "segmentation": rect(*b)}
                          for n, (i, c, b) in enumerate(anns)],
          "categories": [{"id": 1, "name": "human", "supercategory": "thing"},
                         {"id": 2, "name": "ball",
                          "supercategory": "thing" if same_supercategory else "sport"}]}
    dets = [(1, 1, [0, 0, 40, 40], .9), (2, 1, [8, 0, 40, 40], .8), (3, 1, [20, 0, 40, 40], .7),
            (4, 1, [0, 0, 20, 20], .85), (1, 1, [60, 60, 30, 30], .75), (4, 2, [0, 0, 20, 20], .9)]
    results = [{"image_id": i, "category_id": c, "bbox": b, "score": s, "segmentation": rect(*b)}
               for i, c, b, s in dets]
    return gt, results


# Areas under the human curves (101 recall points). Human detections by score: .9 TP (IoU 1),
# .85 confusion, .8 (IoU 2/3), .75 background, .7 (IoU 1/3); 4 humans.
HUMAN = {
    "C75": 26 / 101,                        # recall .25 at precision 1
    "C50": (26 + 25 * 2 / 3) / 101,         # then recall .5 at precision 2/3
    "Loc": (26 + 25 * 2 / 3 + 25 * .6) / 101,  # then recall .75 at 3/5
    "Oth": (51 + 25 * .75) / 101,           # confusion ignored: 1, 1, (bg), 3/4
    "BG": 76 / 101,                         # precision 1 up to recall .75
    "FN": 1.0,
}


@pytest.mark.parametrize("same_supercategory", [False, True])
def test_error_breakdown_matches_the_hand_computed_areas(same_supercategory):
    gt, results = case(same_supercategory)
    out = error_breakdown(gt, results)
    human = out.areas["human"]
    expected = dict(HUMAN, Sim=HUMAN["Oth"] if same_supercategory else HUMAN["Loc"])
    assert list(human) == list(ERROR_TYPES)
    for kind, value in expected.items():
        assert human[kind] == pytest.approx(value, abs=1e-9), kind
    assert out.areas["ball"] == pytest.approx({t: 1.0 for t in ERROR_TYPES})  # found exactly
    assert out.areas["all"]["C50"] == pytest.approx((HUMAN["C50"] + 1) / 2)
    assert out.curves["human"].shape == (7, 101)
    assert np.all(np.diff(out.curves["human"], axis=0) >= -1e-12)  # each forgives more
    # C75 per class is COCO's per-class AP75: their mean is segm/AP75.
    ap75 = coco_metrics(gt, results, iou_types=["segm"])["segm/AP75"]
    assert out.areas["all"]["C75"] == pytest.approx(ap75)


def test_pr_curves_at_iou_half_and_three_quarters():
    gt, results = case()
    pr = pr_curves(gt, results)
    assert pr.recall.shape == (101,) and pr.recall[50] == pytest.approx(0.5)
    human50, human75 = pr.precision["human"][0.5], pr.precision["human"][0.75]
    assert np.allclose(human50[:26], 1) and np.allclose(human50[26:51], 2 / 3)
    assert np.allclose(human50[51:], 0)
    assert np.allclose(human75[:26], 1) and np.allclose(human75[26:], 0)
    assert np.allclose(pr.precision["ball"][0.75], 1)


def test_per_image_ap_and_ranking():
    gt, results = case()
    ap = per_image_ap(gt, results)
    # A: the human found exactly (the background FP scores lower) -> 1; B: IoU 2/3 passes
    # 4 of the 10 IoU thresholds -> 0.4; C: IoU 1/3 -> 0; D: human missed 0, ball 1 -> 0.5.
    assert ap == pytest.approx({1: 1.0, 2: 0.4, 3: 0.0, 4: 0.5})
    worst, best = rank_images(ap, n=2)
    assert [i for i, _ in worst] == [3, 2] and [i for i, _ in best] == [1, 4]
    gt["images"].append({"id": 5, "file_name": "5.png", "height": SIZE, "width": SIZE})
    assert 5 not in per_image_ap(gt, results)  # no ground truth: not ranked
