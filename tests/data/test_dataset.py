"""The Dataset contract: raw samples, tv_tensors targets, label ↔ category mapping."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from tests.helpers import make_shapes_dataset
from vipseg.data.dataset import CocoInstanceDataset, collate
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
