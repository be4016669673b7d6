"""Same seed, same samples; DataLoader workers draw different augmentations."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from tests.data.transforms.conftest import CLASSES
from vipseg.config.schema import AugmentConfig, CopyPasteConfig, GeometricConfig, PhotometricConfig
from vipseg.data.dataset import collate
from vipseg.data.transforms.pipeline import build_train_transform


class SameImage(Dataset):
    """``n`` items, all the same raw sample through ``transform``."""

    def __init__(self, raw: dict, transform, n: int = 4) -> None:
        self.raw, self.transform, self.n = raw, transform, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.transform(self.raw)


def _transform(shapes):
    aug = AugmentConfig(scales=[[200, 150], [160, 120], [120, 90]], crop_size=[96, 80],
                        photometric=PhotometricConfig(), geometric=GeometricConfig(10, 0.5, 0.1, 0.5),
                        copy_paste=CopyPasteConfig(enabled=True, bank="objects"))
    return build_train_transform(aug, str(shapes), CLASSES)


def _same(a, b) -> bool:
    return (torch.equal(a[0], b[0]) and torch.equal(a[1]["mask_data"], b[1]["mask_data"])
            and torch.equal(a[1]["mask_boxes"], b[1]["mask_boxes"])
            and torch.equal(a[1]["labels"], b[1]["labels"]))


def test_same_seed_same_samples(shapes, raws):
    transform = _transform(shapes)
    torch.manual_seed(5)
    first = [transform(r) for r in raws]
    torch.manual_seed(5)
    again = [transform(r) for r in raws]
    assert all(_same(a, b) for a, b in zip(first, again))
    torch.manual_seed(6)
    other = [transform(r) for r in raws]
    assert not all(_same(a, b) for a, b in zip(first, other))


def test_workers_draw_different_samples_reproducibly(shapes, raws):
    ds = SameImage(raws[0], _transform(shapes))

    def run(seed: int) -> list:
        g = torch.Generator().manual_seed(seed)
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate, generator=g)
        return [(images[0], targets[0]) for images, targets in loader]

    items = run(0)
    assert not _same(items[0], items[1])  # item 0 from worker 0, item 1 from worker 1
    assert all(_same(a, b) for a, b in zip(items, run(0)))
