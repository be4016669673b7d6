"""The Dataset contract: raw samples, tv_tensors targets, label ↔ category mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from tests.helpers import make_shapes_dataset
from vipseg.data.dataset import CocoInstanceDataset, collate, read_image
from vipseg.errors import DataError
from vipseg.data.transforms.basic import TestTransform


def test_sample_contract(tmp_path):
    ann = make_shapes_dataset(tmp_path, "train", n_images=3, seed=1)
    ds = CocoInstanceDataset(ann, tmp_path / "train", ["human", "ball"])
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 128, 160)
    n = len(target["labels"])
    assert n > 0 and target["labels"].dtype == torch.int64 and target["labels"].max() <= 1
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].dtype == torch.bool
    assert target["masks"].shape == (n, 128, 160)
    # COCO boxes are pixel-edge boxes: x1 = first column, x2 = last column + 1.
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    assert ds.label_to_category_id(0) == 1 and ds.label_to_category_id(1) == 2
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == 2 and len(targets) == 2


def test_test_transform_resizes_and_reports_scale(tmp_path):
    ann = make_shapes_dataset(tmp_path, "val", n_images=1)
    ds = CocoInstanceDataset(ann, tmp_path / "val", ["human", "ball"], transform=TestTransform([80, 64]))
    image, target = ds[0]
    assert image.shape == (3, 64, 80)
    assert target["orig_size"] == (128, 160) and target["scale_factor"] == (0.5, 0.5)


def test_filter_empty_and_min_size(tmp_path):
    import json

    ann = make_shapes_dataset(tmp_path, "train", n_images=4, seed=1)
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in (2, 3)]
    data["images"][2]["width"], data["images"][2]["height"] = 31, 200  # shorter side < 32
    data["annotations"][0]["iscrowd"] = 1  # image 1 keeps others; crowd ones do not count
    ann.write_text(json.dumps(data))

    def ids(**kw) -> list[int]:
        return [im["id"] for im in CocoInstanceDataset(ann, tmp_path / "train", ["human", "ball"],
                                                       **kw).images]

    assert ids() == [1, 2, 3, 4]
    assert ids(filter_empty=True) == [1, 4]
    assert ids(min_size=32) == [1, 2, 4] and ids(min_size=31) == [1, 2, 3, 4]


def test_ram_cache_bytes_identical_to_disk(tmp_path):
    import numpy as np

    ann = make_shapes_dataset(tmp_path, "train", n_images=3, seed=2)
    disk = CocoInstanceDataset(ann, tmp_path / "train", ["human", "ball"])
    ram = CocoInstanceDataset(ann, tmp_path / "train", ["human", "ball"], cache_ram=True)
    assert ram.cache_note == "dataset cache: 3 images of train.json decoded into 0.2 MiB of RAM"
    assert disk.cache_note == ""
    from_disk = [disk.load_raw(i) for i in range(3)]
    for f in (tmp_path / "train").iterdir():  # from now on only the cache can serve them
        f.unlink()
    for i, d in enumerate(from_disk):
        r = ram.load_raw(i)
        assert r["image"].dtype == d["image"].dtype and r["image"].shape == d["image"].shape
        assert r["image"].tobytes() == d["image"].tobytes()
        assert not r["image"].flags.writeable  # shared by workers: never modified in place
        assert r["rles"] == d["rles"] and np.array_equal(r["boxes"], d["boxes"])
    image, target = ram[0]  # the default transform copies: a writable tensor
    assert image.shape == (3, 128, 160) and len(target["labels"]) == len(from_disk[0]["labels"])


def test_ram_cache_refuses_what_does_not_fit(tmp_path, monkeypatch):
    import pytest

    from vipseg.data import dataset as dataset_module
    from vipseg.errors import DataError

    ann = make_shapes_dataset(tmp_path, "train", n_images=2, seed=2)
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 100_000)  # 2 x 61 kB needed
    with pytest.raises(DataError, match=r"train.json: dataset.cache ram needs 0.1 MiB for 2 images but "
                                        r"only 0.1 MiB of memory is available") as e:
        CocoInstanceDataset(ann, tmp_path / "train", ["human", "ball"], cache_ram=True)
    assert "\n" not in str(e.value)


def test_a_corrupt_png_gives_one_error_naming_the_file_and_libpngs_words(tmp_path, capfd):
    """libpng prints on file descriptor 2 from C; read_image folds that into its DataError."""
    image = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    assert np.array_equal(read_image(path), image[..., ::-1])  # BGR on disk, RGB back
    data = bytearray(path.read_bytes())
    for i in range(60, 200):  # inside the IDAT chunk: the file stays complete
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(DataError, match=r"a\.png: cannot read image \(corrupt or unsupported "
                                        r"format: libpng error: .+\)"):
        read_image(path)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""
    print("still here")  # the descriptor is back
    assert capfd.readouterr().out == "still here\n"


def test_captured_stderr_takes_any_amount_and_restores_the_descriptor(capfd):
    import os

    from vipseg.data.dataset import captured_stderr_fd

    with captured_stderr_fd() as said:
        os.write(2, b"x" * 200_000 + b"\nsecond line\n")  # past a pipe's 64 KiB buffer
    assert said() == ["x" * 200_000, "second line"]
    os.write(2, b"back\n")
    assert capfd.readouterr().err == "back\n"
