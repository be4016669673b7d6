"""Test data: small generated COCO datasets of simple shapes (no real images needed)."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vipseg.data.masks import decode, encode, rle_area, rle_to_bbox


TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs/exp/mask_rcnn/tiny_cpu.yaml"
# The tiny config on a 128x96 shapes train split that also serves as its val split.
SHAPES_128x96 = ["dataset.val.ann=train.json", "dataset.val.images=train",
                 "augment.scales=[[128,96]]", "dataset.test_scale=[128,96]", "train.batch_size=2"]


def shapes_train_root(tmp_path_factory, *, size: tuple[int, int] = (160, 128),
                      n_images: int = 4) -> Path:
    """A fresh dataset root holding a ``train`` split of :func:`make_shapes_dataset` (``size``
    is (W, H)): what the tests' module-scoped ``shapes`` fixtures return."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, "train", n_images=n_images, size=size)
    return root


def make_shapes_dataset(root: Path, split: str = "train", n_images: int = 4,
                        size: tuple[int, int] = (160, 128), seed: int = 0,
                        max_objects: int = 4) -> Path:
    """Write ``root/<split>/*.png`` and ``root/<split>.json`` (classes human=1 ellipses,
    ball=2 discs) on a textured background; later shapes occlude earlier ones exactly.

    ``size`` is (width, height). Returns the JSON path.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    (root / split).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
        owner = np.full((h, w), -1, np.int32)
        objs = []
        for k in range(int(rng.integers(1, max_objects + 1))):
            cls = 1 if k % 3 != 2 else 2
            m = np.zeros((h, w), np.uint8)
            cx, cy = int(rng.integers(15, w - 15)), int(rng.integers(15, h - 15))
            if cls == 1:
                ax, ay = int(rng.integers(6, 14)), int(rng.integers(14, 30))
                cv2.ellipse(m, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
                color = (200, 40, 40)
            else:
                cv2.circle(m, (cx, cy), int(rng.integers(4, 8)), 1, -1)
                color = (240, 150, 20)
            img[m > 0] = color
            owner[m > 0] = len(objs)
            objs.append(cls)
        name = f"{split}_{i:04d}.png"
        cv2.imwrite(str(root / split / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for j, cls in enumerate(objs):
            rle = encode(owner == j)
            area = rle_area(rle)
            if area == 0:
                continue
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls,
                         "segmentation": rle, "area": area, "bbox": rle_to_bbox(rle), "iscrowd": 0})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "human"}, {"id": 2, "name": "ball"}]}
    path = root / f"{split}.json"
    path.write_text(json.dumps(coco))
    return path


def perturbed_predictions(coco: dict, seed: int = 0, drop_images: tuple = ()) -> list[dict]:
    """COCO results derived from the ground truth ``coco``: each object's mask shifted by up
    to 2 px (bbox from the shifted mask), a random score, and one false positive per image;
    images whose id is in ``drop_images`` get no prediction."""
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    preds = []
    for ann in coco["annotations"]:
        if ann["image_id"] in drop_images:
            continue
        m = decode(ann["segmentation"])
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        rle = encode(np.roll(m, (dy, dx), axis=(0, 1)))
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "segmentation": rle, "bbox": rle_to_bbox(rle),
                      "score": float(rng.uniform(0.3, 1.0))})
    for image_id, (h, w) in sizes.items():
        if image_id in drop_images:
            continue
        m = np.zeros((h, w), np.uint8)
        m[5:15, 5:25] = 1
        rle = encode(m)
        preds.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)),
                      "segmentation": rle, "bbox": rle_to_bbox(rle),
                      "score": float(rng.uniform(0.0, 0.6))})
    return preds


@pytest.fixture
def one_torch_thread():
    """Run a test with one intra-op torch thread (more threads only contend on a busy 2-core
    machine); use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fork_gloo_ranks(worker, *args, world: int = 2) -> None:
    """Run ``worker(rank, world, port, *args)`` in ``world`` forked processes (fork: they reuse
    the imported modules; spawn would import torch again) and wait for them; ``port`` is a
    free local TCP port for :func:`gloo_group`."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(worker, args=(world, port, *args), nprocs=world, start_method="fork")


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int):
    """A one-thread gloo process group for the body of a :func:`fork_gloo_ranks` worker."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    try:
        yield
    finally:
        dist.destroy_process_group()
