"""load_coco: accepted variants, one clear one-line error per bad input, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vipseg.data.coco import image_size, load_coco
from vipseg.data.masks import encode
from vipseg.errors import DataError

H, W = 10, 20


def _mask(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def good() -> dict:
    return {
        "info": {"description": "tiny"},
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": encode(_mask(2, 2, 6, 8)),
             "bbox": [2, 2, 4, 6], "area": 24, "iscrowd": 0},
            {"id": 11, "image_id": 2, "category_id": 2,
             "segmentation": [[10, 1, 15, 1, 15, 5, 10, 5]], "bbox": [10, 1, 5, 4], "area": 20,
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "human"}, {"id": 2, "name": "ball"}],
    }


def write(tmp_path: Path, data, name: str = "ann.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def error_of(path: Path, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_coco(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


# --- accepted variants -----------------------------------------------------------------------------

def test_good_file_loads_with_indexes(tmp_path):
    c = load_coco(write(tmp_path, good()))
    assert len(c.images) == 2 and len(c.annotations) == 2 and c.category_names == ["human", "ball"]
    assert c.info == {"description": "tiny"} and c.warnings == []
    assert [a["id"] for a in c.anns_by_image[1]] == [10]
    assert c.rle(c.anns_by_id[11])["size"] == [H, W]
    assert set(c.to_dict()) == {"info", "images", "annotations", "categories"}


def test_variants_list_counts_str_ids_zero_based_categories(tmp_path):
    d = good()
    del d["info"]
    for img in d["images"]:
        img["id"] = f"img-{img['id']}"
    for a in d["annotations"]:
        a["image_id"] = f"img-{a['image_id']}"
        a["category_id"] -= 1
    d["categories"] = [{"id": 0, "name": "human"}, {"id": 1, "name": "ball"}]
    m = _mask(2, 2, 6, 8)
    counts, run, val = [], 0, 0
    for v in m.flatten(order="F"):  # uncompressed column-major RLE
        if v != val:
            counts.append(run)
            run, val = 0, v
        run += 1
    counts.append(run)
    d["annotations"][0]["segmentation"] = {"size": [H, W], "counts": counts}
    c = load_coco(write(tmp_path, d))
    assert c.info is None and c.warnings == []
    assert c.rle(c.annotations[0])["counts"] == encode(m)["counts"]


def test_images_only_file_when_allowed(tmp_path):
    d = {"images": good()["images"]}
    c = load_coco(write(tmp_path, d), require_annotations=False)
    assert c.annotations == [] and c.warnings == []


# --- errors: one test per bad input ----------------------------------------------------------------

def test_missing_file(tmp_path):
    assert "file not found" in error_of(tmp_path / "nope.json")


def test_invalid_json(tmp_path):
    p = write(tmp_path, '{"images": [}\n')
    assert "invalid JSON at line 1" in error_of(p)


def test_not_an_object(tmp_path):
    assert "expected an object" in error_of(write(tmp_path, "[1, 2]"))


def test_missing_top_level_key(tmp_path):
    d = good()
    del d["annotations"]
    assert "missing top-level key 'annotations'" in error_of(write(tmp_path, d))


def test_duplicate_image_id(tmp_path):
    d = good()
    d["images"][1]["id"] = 1
    assert "duplicate image id 1" in error_of(write(tmp_path, d))


def test_duplicate_annotation_id(tmp_path):
    d = good()
    d["annotations"][1]["id"] = 10
    assert "duplicate annotation id 10" in error_of(write(tmp_path, d))


def test_unknown_image(tmp_path):
    d = good()
    d["annotations"][1]["image_id"] = 99
    msg = error_of(write(tmp_path, d))
    assert "annotation 11" in msg and "unknown image id 99" in msg


def test_unknown_category(tmp_path):
    d = good()
    d["annotations"][0]["category_id"] = 7
    msg = error_of(write(tmp_path, d))
    assert "annotation 10" in msg and "unknown category id 7" in msg


def test_rle_size_differs_from_image(tmp_path):
    d = good()
    d["annotations"][0]["segmentation"] = encode(np.zeros((H + 1, W), np.uint8))
    msg = error_of(write(tmp_path, d))
    assert "annotation 10" in msg and f"RLE size [{H + 1}, {W}]" in msg and "image size" in msg


def test_polygon_with_fewer_than_3_points(tmp_path):
    d = good()
    d["annotations"][1]["segmentation"] = [[10, 1, 15, 1]]
    msg = error_of(write(tmp_path, d))
    assert "annotation 11" in msg and "2 point(s), at least 3" in msg


def test_rle_string_counts_of_another_pixel_total(tmp_path):
    d = good()
    d["annotations"][0]["segmentation"] = {"size": [H, W],
                                           "counts": encode(np.zeros((H, W + 3), np.uint8))["counts"]}
    msg = error_of(write(tmp_path, d))
    assert "annotation 10" in msg and f"add up to {H * (W + 3)} pixels, the image has {H * W}" in msg


@pytest.mark.parametrize("counts, problem", [
    ("!!!!", "characters outside '0'..'o'"),
    ("2o", "ends in the middle of a number"),
    ("oooooooo1", "longer than 7 characters"),
    ("0" + "1" * 40, "add up to 420 pixels"),  # runs 0, 1, 1, then +1 on the one 2 before
    ("@", "decodes to a negative run length"),  # 0x10 on the last character = sign
])
def test_corrupt_rle_string_counts(tmp_path, counts, problem):
    d = good()
    d["annotations"][0]["segmentation"] = {"size": [H, W], "counts": counts}
    msg = error_of(write(tmp_path, d))
    assert "annotation 10" in msg and problem in msg


@pytest.mark.parametrize("x", [1000, 1e9, -5])
def test_polygon_point_outside_image(tmp_path, x):
    d = good()
    d["annotations"][1]["segmentation"] = [[10, 1, x, 1, 15, 5]]
    msg = error_of(write(tmp_path, d))
    assert "annotation 11" in msg and "polygon 0 has points outside the 20x10 image" in msg


@pytest.mark.parametrize("v", [float("nan"), float("inf")])
def test_polygon_point_not_finite(tmp_path, v):
    d = good()
    d["annotations"][1]["segmentation"] = [[10, 1, 15, v, 15, 5]]
    msg = error_of(write(tmp_path, d))  # json.dumps writes NaN / Infinity, json.loads reads them
    assert "annotation 11" in msg and "flat list of finite numbers" in msg


def test_polygon_within_one_pixel_tolerance_is_fine(tmp_path):
    d = good()
    d["annotations"][1]["segmentation"] = [[-1, -1, W + 1, 0, W + 1, H + 1]]
    d["annotations"][1]["bbox"] = [-1, -1, W + 2, H + 2]
    load_coco(write(tmp_path, d))


def test_bbox_outside_image(tmp_path):
    d = good()
    d["annotations"][0]["bbox"] = [15, 2, 8, 6]  # x + w = 23 > 20 + 1
    msg = error_of(write(tmp_path, d))
    assert "annotation 10" in msg and "outside the 20x10 image" in msg


def test_bbox_within_one_pixel_tolerance_is_fine(tmp_path):
    d = good()
    d["annotations"][0]["bbox"] = [-0.5, 2, 20.9, 6]
    load_coco(write(tmp_path, d))


def test_several_problems_are_counted(tmp_path):
    d = good()
    d["annotations"][0]["category_id"] = 7
    d["annotations"][1]["image_id"] = 99
    assert "(and 1 more problem)" in error_of(write(tmp_path, d))


# --- image files -----------------------------------------------------------------------------------

def _images(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / name), np.zeros((H, W, 3), np.uint8))
    return root


def test_image_files_ok(tmp_path):
    load_coco(write(tmp_path, good()), images_dir=_images(tmp_path))


def test_image_file_missing(tmp_path):
    root = _images(tmp_path)
    (root / "b.png").unlink()
    msg = error_of(write(tmp_path, good()), images_dir=root)
    assert "image 2" in msg and "b.png: image file not found" in msg


def test_image_file_unreadable(tmp_path):
    root = _images(tmp_path)
    (root / "b.png").write_bytes(b"this is not an image")
    msg = error_of(write(tmp_path, good()), images_dir=root)
    assert "image 2" in msg and "cannot read image" in msg


def test_image_file_of_another_size(tmp_path):
    root = _images(tmp_path)
    cv2.imwrite(str(root / "a.png"), np.zeros((H, W + 5, 3), np.uint8))
    msg = error_of(write(tmp_path, good()), images_dir=root)
    assert "image 1" in msg and f"is {W + 5}x{H}, the JSON says {W}x{H}" in msg


@pytest.mark.parametrize("name, keep", [("a.png", 200), ("a.jpg", 400), ("a.jpg", -60),
                                        ("a.png", 0)])
def test_truncated_image_is_caught_from_its_header_and_end_corrupt_one_by_decoding(
        tmp_path, name, keep):
    """keep > 0: the first bytes only; < 0: all but the last ones; 0: pixel data scrambled."""
    root = tmp_path / "imgs"
    root.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(root / name), noise)
    cv2.imwrite(str(root / "b.png"), noise)
    data = bytearray((root / name).read_bytes())
    if keep:
        data = data[:keep]
    else:
        data[60:-20] = bytes((v * 7 + 3) % 256 for v in data[60:-20])
    (root / name).write_bytes(bytes(data))
    d = good()
    d["images"][0]["file_name"] = name
    ann = write(tmp_path, d)
    if keep:  # cut short: seen from the header and the file's end, without decoding
        msg = error_of(ann, images_dir=root)
        assert "image 1" in msg and f"{name}: cannot read image (" in msg
        assert "truncated" in msg.lower() or "Truncated" in msg, msg
    else:  # complete but corrupt: only decoding sees it
        load_coco(ann, images_dir=root)
        msg = error_of(ann, images_dir=root, decode_images=True)
        assert "image 1" in msg and f"{name}: cannot read image (corrupt" in msg


def test_duplicate_json_keys_and_file_names_are_refused(tmp_path):
    d = good()
    text = json.dumps(d)
    dup = tmp_path / "dup.json"
    dup.write_text(text[:-1] + ', "annotations": []}')  # a second, empty list would win
    msg = error_of(dup)
    assert "repeats the key 'annotations'" in msg and msg.startswith(str(dup))
    d["images"][1]["file_name"] = d["images"][0]["file_name"]
    msg = error_of(write(tmp_path, d))
    assert f"file_name {d['images'][0]['file_name']!r} is also used by image" in msg


def test_image_size_decoded_equals_header(tmp_path):
    for ext in ("png", "jpg", "bmp"):
        p = tmp_path / f"x.{ext}"
        cv2.imwrite(str(p), np.full((17, 33, 3), 80, np.uint8))
        assert image_size(p, decode=True) == image_size(p) == (33, 17)


def test_image_size_reads_png_and_jpeg_headers(tmp_path):
    for ext in ("png", "jpg", "bmp"):
        p = tmp_path / f"x.{ext}"
        cv2.imwrite(str(p), np.full((17, 33, 3), 80, np.uint8))
        assert image_size(p) == (33, 17)


# --- warnings --------------------------------------------------------------------------------------

def test_empty_mask_is_a_warning(tmp_path):
    d = good()
    d["annotations"][0]["segmentation"] = encode(np.zeros((H, W), np.uint8))
    c = load_coco(write(tmp_path, d))
    assert len(c.warnings) == 1 and "empty mask" in c.warnings[0] and "10" in c.warnings[0]


def test_image_without_annotations_is_a_warning(tmp_path):
    d = good()
    d["annotations"].pop()
    c = load_coco(write(tmp_path, d))
    assert len(c.warnings) == 1 and "1 of 2 images have no annotations (ids 2)" in c.warnings[0]
