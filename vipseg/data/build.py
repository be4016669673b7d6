"""``build_dataset(cfg, split)``: map the dataset config onto a ``CocoInstanceDataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vipseg.config.schema import Config
from vipseg.data.dataset import CocoInstanceDataset
from vipseg.data.transforms.basic import TestTransform
from vipseg.data.transforms.pipeline import build_train_transform

Split = Literal["train", "val", "test"]


def split_paths(cfg: Config, split: Split, root: str | Path | None = None) -> tuple[Path, Path]:
    """(annotation file, image folder) of ``split``; ``root`` overrides ``cfg.dataset.root``."""
    base = Path(root if root is not None else cfg.dataset.root)
    s = getattr(cfg.dataset, split)
    return base / s.ann, base / s.images


def build_dataset(cfg: Config, split: Split, *, train: bool,
                  root: str | Path | None = None) -> CocoInstanceDataset:
    """Dataset of ``split`` with the training pipeline (``train``: also ``dataset.filter_empty``,
    ``min_size`` and ``cache``) or the evaluation resize."""
    ann, images = split_paths(cfg, split, root)
    base = Path(root if root is not None else cfg.dataset.root)
    transform = (build_train_transform(cfg.augment, str(base), cfg.dataset.classes,
                                       cfg.dataset.mean)
                 if train else TestTransform(cfg.dataset.test_scale))
    d = cfg.dataset
    if not train:
        return CocoInstanceDataset(ann, images, d.classes, transform=transform)
    return CocoInstanceDataset(ann, images, d.classes, transform=transform,
                               filter_empty=d.filter_empty, min_size=d.min_size,
                               cache_ram=d.cache == "ram")
