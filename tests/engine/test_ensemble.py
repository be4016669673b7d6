"""Ensembles: result-level fusion by hand (mask vote, score fusion, weights), a file fused
with itself, refused inputs; member specs; a model ensembled with itself equals the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine.stage_detector import StageDetector
from tests.engine.test_tta import make_dataset, shapes  # noqa: F401 (fixture)
from tests.helpers import one_torch_thread  # noqa: F401 (fixture)
from vipseg.data.masks import decode, encode
from vipseg.engine.ensemble import fuse_predictions, parse_member
from vipseg.engine.predict import PredictOptions, predict_dataset
from vipseg.engine.tta import Member, View
from vipseg.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rows(r0, r1, size=(10, 10)):
    m = np.zeros(size, np.uint8)
    m[r0:r1, 2:8] = 1
    return m


def pred(mask, score, image_id=1, category_id=1):
    rle = encode(mask)
    return {"image_id": image_id, "category_id": category_id, "segmentation": rle,
            "score": score, "bbox": [0, 0, 1, 1]}


def test_fusion_votes_masks_and_fuses_scores_by_hand():
    a = [pred(rows(0, 4), 0.8), pred(rows(7, 9), 0.5), pred(rows(0, 4), 0.9, category_id=2)]
    b = [pred(rows(1, 5), 0.6)]  # IoU with a[0]: 3 / 5 rows
    fused = fuse_predictions([a, b], ["a.json", "b.json"])
    got = {(r["category_id"], round(r["score"], 6)): decode(r["segmentation"]) for r in fused}
    assert set(got) == {(1, 0.7), (1, 0.25), (2, 0.45)}
    assert (got[1, 0.7] == rows(0, 5)).all()  # each pixel has >= half of the 2 votes
    assert (got[1, 0.25] == rows(7, 9)).all()  # found by one file of two: half the score
    assert [r["score"] for r in fused] == sorted((r["score"] for r in fused), reverse=True)
    weighted = fuse_predictions([a, b], ["a.json", "b.json"], weights=[3, 1])
    top = max(weighted, key=lambda r: r["score"] if r["category_id"] == 1 else 0)
    assert top["score"] == pytest.approx((3 * 0.8 + 0.6) / 4)
    assert (decode(top["segmentation"]) == rows(0, 4)).all()  # b's row 4 has 1 of 4 votes
    # below the IoU threshold nothing is fused
    assert len(fuse_predictions([a, b], ["a", "b"], iou_thresh=0.7)) == 4


def test_a_file_fused_with_itself_is_itself():
    a = [pred(rows(0, 4), 0.8), pred(rows(5, 9), 0.3), pred(rows(0, 3), 0.6, image_id=2)]
    fused = fuse_predictions([a, a], ["a", "a"])
    key = lambda r: (r["image_id"], -r["score"])  # noqa: E731
    assert [(r["image_id"], r["score"], r["segmentation"]) for r in sorted(fused, key=key)] == \
        [(r["image_id"], r["score"], r["segmentation"]) for r in sorted(a, key=key)]


def test_fusion_refuses_different_image_sets_and_bad_files():
    a = [pred(rows(0, 4), 0.8), pred(rows(0, 4), 0.8, image_id=2)]
    with pytest.raises(DataError, match="b.json: predicts images other than a.json's") as e:
        fuse_predictions([a, a[:1]], ["a.json", "b.json"])
    assert "\n" not in str(e.value)
    other = [dict(a[0], segmentation=encode(rows(0, 4, (12, 10)))), a[1]]
    with pytest.raises(DataError, match="has masks of size"):
        fuse_predictions([a, other], ["a.json", "b.json"])
    with pytest.raises(DataError, match="lacks one of"):
        fuse_predictions([a, [{"image_id": 1}]], ["a.json", "b.json"])
    with pytest.raises(DataError, match="at least two"):
        fuse_predictions([a], ["a.json"])


@pytest.mark.parametrize("spec, message", [
    ("cfg.yaml", "expected CONFIG:CKPT"),
    ("cfg.yaml:", "expected CONFIG:CKPT"),
    ("cfg.yaml:a.pth:x", "is not a number"),
    ("cfg.yaml:a.pth:0", "must be > 0"),
])
def test_bad_member_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_member(spec)
    assert parse_member("c.yaml:a.pth:2.5") == ("c.yaml", "a.pth", 2.5)


def test_model_ensembled_with_itself_equals_the_model(shapes):  # noqa: F811
    dataset, model = make_dataset(shapes), StageDetector()
    views = (View((200, 150)), View(0.9, flip=True))
    alone = predict_dataset(model, dataset, device="cpu", options=PredictOptions(views=views),
                            progress=False)
    twice = predict_dataset([Member(model, views), Member(model, views, weight=2.0)], dataset,
                            device="cpu", options=PredictOptions(), progress=False)
    assert alone
    assert [(r["image_id"], r["category_id"], r["segmentation"]) for r in alone] == \
        [(r["image_id"], r["category_id"], r["segmentation"]) for r in twice]
    torch.testing.assert_close(torch.tensor([r["score"] for r in alone]),
                               torch.tensor([r["score"] for r in twice]))
