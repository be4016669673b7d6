"""vipseg data images-json: images-only COCO files with stable ids."""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.coco import load_coco
from vipseg.data.tools.images_json import images_json
from vipseg.errors import DataError


def test_from_folder_list_and_existing_ids(tmp_path):
    ann = make_shapes_dataset(tmp_path, "test", n_images=3, seed=6)
    ref = json.loads(ann.read_text())
    a = tmp_path / "a.json"
    images_json(tmp_path / "test", a)
    c = load_coco(a, images_dir=tmp_path / "test")
    assert [(i["id"], i["file_name"]) for i in c.images] == [
        (1, "test_0000.png"), (2, "test_0001.png"), (3, "test_0002.png")]
    assert c.annotations == [] and c.images[0]["width"] == 160 and c.images[0]["height"] == 128

    lst = tmp_path / "test" / "names.txt"
    lst.write_text("# test set\ntest_0002.png\n\ntest_0000.png\n")
    b = tmp_path / "b.json"
    images_json(lst, b)
    assert [i["file_name"] for i in json.loads(b.read_text())["images"]] == ["test_0000.png", "test_0002.png"]

    # ids and categories from the "server's" file, matched by name
    ref["annotations"] = []
    for img in ref["images"]:
        img["id"] += 1000
    server = tmp_path / "server.json"
    server.write_text(json.dumps(ref))
    c2 = tmp_path / "c.json"
    images_json(tmp_path / "test", c2, ids_from=server)
    out = json.loads(c2.read_text())
    assert [i["id"] for i in out["images"]] == [1001, 1002, 1003]
    assert out["categories"] == ref["categories"]


def test_errors(tmp_path):
    make_shapes_dataset(tmp_path, "test", n_images=2, seed=7)
    lst = tmp_path / "names.txt"
    lst.write_text("test/test_0000.png\ntest/missing.png\n")
    with pytest.raises(DataError, match="missing.png: image file not found") as e:
        images_json(lst, tmp_path / "x.json")
    assert str(e.value).startswith(f"{lst}: line 2: ")
    lst.write_text("test/test_0000.png\ntest/test_0000.png\n")
    with pytest.raises(DataError, match="listed twice"):
        images_json(lst, tmp_path / "x.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 5, "file_name": "test_0000.png", "width": 160,
                                             "height": 128}]}))
    with pytest.raises(DataError, match="no image with file_name 'test_0001.png'"):
        images_json(tmp_path / "test", tmp_path / "x.json", ids_from=other)
    assert not (tmp_path / "x.json").exists()


def test_json_file_is_not_a_list_of_names(tmp_path):
    ann = make_shapes_dataset(tmp_path, "test", n_images=1, seed=7)
    with pytest.raises(DataError, match="expected a folder or a text list of file names") as e:
        images_json(ann, tmp_path / "x.json")
    assert str(e.value).startswith(f"{ann}: a JSON file")
    renamed = tmp_path / "coco.txt"  # JSON content under another name
    renamed.write_text(ann.read_text())
    with pytest.raises(DataError, match=f"{renamed}: a JSON file"):
        images_json(renamed, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
