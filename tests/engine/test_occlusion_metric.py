"""The DeepSportradar occlusion metric on hand-computed cases: the challenge's own known
answers (a prediction covering several parts, overlapping predictions), a perfect and an
empty prediction, and totals summed over images before dividing."""

from __future__ import annotations

import numpy as np
import pytest

from vipseg.data.masks import encode
from vipseg.engine.occlusion import greedy_match, occlusion_metric, secondary_parts

# Three instances on 3 x 11 pixels (0 = background); instance 2 has two parts (3 + 2 px).
INSTANCES = np.array([
    [1, 0, 1, 0, 2, 0, 2, 0, 3, 0, 3],
    [1, 1, 1, 0, 2, 0, 2, 0, 3, 0, 3],
    [1, 0, 1, 0, 2, 0, 0, 0, 0, 3, 3]])
PRED = np.array([
    [1, 0, 1, 0, 2, 0, 2, 0, 3, 0, 3],
    [1, 0, 1, 0, 2, 0, 3, 0, 3, 0, 3],
    [1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0]])


def coco(ids: np.ndarray, image_id: int = 1, first_ann: int = 1) -> tuple[list, list]:
    h, w = ids.shape
    anns = [{"id": first_ann + k, "image_id": image_id, "category_id": 1,
             "segmentation": encode(ids == i), "iscrowd": 0, "area": int((ids == i).sum())}
            for k, i in enumerate(range(1, ids.max() + 1))]
    return [{"id": image_id, "height": h, "width": w}], anns


def gt_dict(*id_maps):
    images, anns = [], []
    for n, ids in enumerate(id_maps, 1):
        im, an = coco(ids, n, len(anns) + 1)
        images += im
        anns += an
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "human"}]}


def preds_from(masks, scores, image_id=1):
    return [{"image_id": image_id, "category_id": 1, "segmentation": encode(m), "score": s}
            for m, s in zip(masks, scores)]


def test_parts_but_the_largest():
    parts = secondary_parts((INSTANCES == 2).astype(np.uint8))
    assert len(parts) == 1 and parts[0].sum() == 2 and parts[0][:2, 6].all()
    assert secondary_parts((INSTANCES == 1).astype(np.uint8)) == []  # 8-connected: one part
    assert secondary_parts((INSTANCES == 3).astype(np.uint8)) == []  # joined diagonally
    tie = np.array([[1, 0, 1]], np.uint8)  # equal areas: the part ending first is the largest
    (rest,) = secondary_parts(tie)
    assert rest.tolist() == [[False, False, True]]


def test_greedy_matching_takes_the_best_pair_first():
    iou = np.array([[0.6, 0.9], [0.0, 0.7], [0.55, 0.0]])
    # 0.9 first; row 1's 0.7 is then gone with column 1, and row 2 takes column 0
    assert greedy_match(iou) == {0: 1, 2: 0}
    assert greedy_match(np.array([[0.5]])) == {}  # strictly above 0.5


def test_reference_known_answer():
    """The challenge's test_om: scores 1, 1/2, 1/3 for predictions 1..3; instance 2 (parts 3
    and 2 px) is matched to prediction 2 (IoU 4/5); of its 2-pixel part, (0, 6) lies only in
    prediction 2 (reward 1) and (1, 6) in prediction 3 only (reward 0): DPR 1/2."""
    masks = [PRED == i for i in (1, 2, 3)]
    m = occlusion_metric(gt_dict(INSTANCES), preds_from(masks, [1.0, 0.5, 1 / 3]))
    assert m == pytest.approx({"OM": 0.5, "OIR": 1.0, "DPR": 0.5})


def test_reference_complex_known_answer():
    """The challenge's test_complex_om: instance 3 gains a 1-pixel part at (2, 6), covered by
    predictions 2 and 3 (overlapping there). Two occluded instances, both matched; 3 part
    pixels; reward 1 (pixel (0, 6)) + s3 / (s2 + s3) (pixel (2, 6), matched to prediction 3)."""
    inst = INSTANCES.copy()
    inst[2, 6] = 3
    masks = [PRED == i for i in (1, 2, 3)]
    masks[1][2, 6] = masks[2][2, 6] = True
    s = [1.0, 0.5, 1 / 3]
    m = occlusion_metric(gt_dict(inst), preds_from(masks, s))
    dpr = (1 + s[2] / (s[1] + s[2])) / 3
    assert m == pytest.approx({"OM": dpr, "OIR": 1.0, "DPR": dpr})


def test_one_prediction_covering_several_parts_and_totals_over_images():
    """Image 1: one prediction equal to the 2-part instance covers both parts; a second,
    overlapping prediction (score 0.2) shares one pixel of the small part, which then rewards
    0.8 / (0.8 + 0.2). Image 2: the same occluded instance, missed: it counts in OIR only."""
    a = np.zeros((6, 8), int)
    a[0:2, 0:3] = 1  # part of 6 px
    a[4:6, 5:7] = 1  # part of 4 px
    full = a == 1
    over = np.zeros_like(full)
    over[5, 6] = True  # overlaps one pixel of the small part
    b = a.copy()  # image 2: same instance, nothing predicted
    gt = gt_dict(a, b)
    preds = preds_from([full, over], [0.8, 0.2], image_id=1)
    m = occlusion_metric(gt, preds)
    reward = 3 + 0.8 / (0.8 + 0.2)  # 3 pixels alone in the match, one shared with score 0.2
    assert m["OIR"] == pytest.approx(0.5)
    assert m["DPR"] == pytest.approx(reward / 4)
    assert m["OM"] == pytest.approx((1 * reward) / (2 * 4))


def test_perfect_empty_and_unoccluded():
    gt = gt_dict(INSTANCES)
    perfect = preds_from([INSTANCES == i for i in (1, 2, 3)], [0.9, 0.8, 0.7])
    assert occlusion_metric(gt, perfect) == {"OM": 1.0, "OIR": 1.0, "DPR": 1.0}
    assert occlusion_metric(gt, []) == {"OM": 0.0, "OIR": 0.0, "DPR": 0.0}
    solid = np.ones((4, 4), int)
    assert occlusion_metric(gt_dict(solid), []) == {"OM": 0.0, "OIR": 0.0, "DPR": 0.0}
