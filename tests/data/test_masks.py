"""Mask codecs added for the data tools: RLE parsing, box crops, components, polygons."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vipseg.data.masks import (count_components, decode, decode_crop, encode, mask_to_polygons,
                               rle_box, rle_counts, rle_iou, rle_to_polygons, segmentation_to_rle)


def random_masks(n=150, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        yield (rng.random((h, w)) < rng.random()).astype(np.uint8)


def test_rle_counts_matches_pycocotools():
    for m in random_masks():
        rle = encode(m)
        counts = rle_counts(rle)
        back = mask_utils.frPyObjects({"size": rle["size"], "counts": counts.tolist()}, *rle["size"])
        assert back["counts"].decode() == rle["counts"]


@pytest.mark.parametrize("counts", ["!!!!", "2o", "oooooooo1", "0\u00e9"])
def test_rle_counts_rejects_corrupt_strings(counts):
    with pytest.raises(ValueError, match="counts string"):
        rle_counts({"size": [2, 2], "counts": counts})


def test_decode_crop_equals_full_decode_window():
    rng = np.random.default_rng(1)
    for m in random_masks():
        h, w = m.shape
        rle = encode(m)
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        assert np.array_equal(decode_crop(rle, (x0, y0, x1, y1)), m[y0:y1, x0:x1])
        if m.any():
            bx0, by0, bx1, by1 = rle_box(rle)
            assert decode_crop(rle).sum() == m.sum() and np.array_equal(decode_crop(rle), m[by0:by1, bx0:bx1])


def test_polygons_are_exact_with_holes_and_parts():
    m = np.zeros((30, 40), np.uint8)
    m[2:20, 2:20] = 1
    m[6:10, 6:10] = 0       # a hole
    m[12:16, 12:16] = 0     # a second hole
    m[13:15, 13:15] = 1     # an island inside it
    m[25:28, 30:39] = 1     # a separate part
    m[0, 39] = 1            # a single pixel
    polys = mask_to_polygons(m)
    assert np.array_equal(decode(segmentation_to_rle(polys, 30, 40)), m)
    assert count_components(encode(m)) == 4
    for m in random_masks(n=60, seed=2):  # any mask survives the round trip
        h, w = m.shape
        polys = mask_to_polygons(m)
        if not m.any():
            assert polys == []
            continue
        assert np.array_equal(decode(segmentation_to_rle(polys, h, w)), m)


def test_rle_to_polygons_uses_image_coordinates():
    m = np.zeros((50, 60), np.uint8)
    m[10:20, 30:45] = 1
    rle = encode(m)
    assert rle_to_polygons(rle) == [[30.0, 10.0, 30.0, 20.0, 45.0, 20.0, 45.0, 10.0]]
    assert rle_iou(rle, segmentation_to_rle(rle_to_polygons(rle), 50, 60)) == pytest.approx(1.0)
    assert rle_to_polygons(encode(np.zeros((5, 5), np.uint8))) == []
