"""Prediction overlays: a colour per class, or a distinct colour per instance."""

from __future__ import annotations

import cv2
import numpy as np

from vipseg.data.masks import encode
from vipseg.engine.visualize import draw_predictions, instance_colours


def _preds() -> list[dict]:
    out = []
    for k, x in enumerate((4, 30, 56)):  # three humans side by side
        m = np.zeros((40, 90), np.uint8)
        m[10:30, x:x + 20] = 1
        out.append({"segmentation": encode(m), "bbox": [x, 10, 20, 20], "score": 0.9 - 0.1 * k})
    return out


def _fill_colour(canvas: np.ndarray, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in canvas[20, x + 10])  # the middle of the mask: blended fill


def test_per_instance_colours_are_distinct_and_per_class_shared():
    image = np.full((40, 90, 3), 128, np.uint8)
    preds = _preds()
    per_class = draw_predictions(image, preds, [0, 0, 0], ["human", "ball"])
    assert len({_fill_colour(per_class, x) for x in (4, 30, 56)}) == 1
    per_instance = draw_predictions(image, preds, [0, 0, 0], ["human", "ball"], per_instance=True)
    colours = [_fill_colour(per_instance, x) for x in (4, 30, 56)]
    assert len(set(colours)) == 3 and all(c != (128, 128, 128) for c in colours)
    many = instance_colours(50)
    assert len(set(many)) == 50
    hsv = np.array(many, np.uint8)[None]
    assert (cv2.cvtColor(hsv, cv2.COLOR_BGR2HSV)[0, :, 1] > 150).all()  # saturated, visible


def test_an_image_without_predictions_is_drawn_unchanged_in_either_mode():
    # The demo's overlay step crashed on a test image where nothing passed the threshold.
    image = np.full((40, 90, 3), 128, np.uint8)
    assert instance_colours(0) == []
    for per_instance in (False, True):
        out = draw_predictions(image, [], [], ["human", "ball"], per_instance=per_instance)
        assert np.array_equal(out, image)
