"""Fixtures: a small shapes dataset with its object bank (``extract-objects``), raw samples."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import make_shapes_dataset
from vipseg.data.dataset import CocoInstanceDataset
from vipseg.data.masks import encode
from vipseg.data.tools.extract_objects import extract_objects

CLASSES = ["human", "ball"]


def write_bank(folder: Path, objects: list[tuple[str, np.ndarray, np.ndarray]]) -> Path:
    """Write an object bank (docs/architecture.md "Object bank") of (class, RGB, mask) crops."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (name, rgb, mask) in enumerate(objects):
        (folder / name).mkdir(exist_ok=True)
        cv2.imwrite(str(folder / name / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / name / f"{i}_mask.png"), mask.astype(np.uint8) * 255)
        h, w = mask.shape
        entries.append({"id": i, "image_id": 0, "source_image": "x.png",
                        "category_id": CLASSES.index(name) + 1, "category": name,
                        "bbox": [0, 0, w, h], "crop": f"{name}/{i}.png",
                        "mask_file": f"{name}/{i}_mask.png", "mask": encode(mask),
                        "area": int(mask.sum())})
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    (folder / "index.json").write_text(json.dumps({"categories": cats, "objects": entries}))
    return folder


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """Dataset root: train.json + train/ (6 images 160x120) and objects/ (their bank)."""
    root = tmp_path_factory.mktemp("shapes")
    ann = make_shapes_dataset(root, "train", n_images=6, size=(160, 120), seed=3)
    extract_objects(ann, root / "train", root / "objects")
    return root


@pytest.fixture(scope="session")
def raws(shapes) -> list[dict]:
    """The raw samples of the shapes dataset."""
    ds = CocoInstanceDataset(shapes / "train.json", shapes / "train", CLASSES)
    return [ds.load_raw(i) for i in range(len(ds))]
