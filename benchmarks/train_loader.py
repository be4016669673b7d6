"""The run-long training loader against a DataLoader rebuilt every epoch (the old trainer).

Both iterate the same training set (shapes rendered by ``tests.helpers.make_shapes_dataset``
through the training transform of ``configs/exp/mask_rcnn/tiny_cpu.yaml``) for ``--epochs``
short epochs (``--images`` / ``--batch`` batches each, as VIPriors epochs on 8 GPUs are ~12
iterations) with ``--workers`` workers, and print the wall seconds per epoch of each and their
ratio. The reference is what ``engine/trainer.py`` did before: a new ``DataLoader`` (new
worker processes) per epoch.

    PYTHONPATH=. python benchmarks/train_loader.py --epochs 8 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from tests.helpers import make_shapes_dataset
from vipseg.config import load_config
from vipseg.data.build import build_dataset
from vipseg.data.dataset import collate
from vipseg.engine import distributed as ddp
from vipseg.engine.train_loader import TrainLoader

TINY = Path(__file__).resolve().parents[1] / "configs/exp/mask_rcnn/tiny_cpu.yaml"


def rebuilt(dataset, index, batches, epochs: int, workers: int) -> float:
    start = time.perf_counter()
    for e in range(epochs):
        index.set_epoch(e)
        loader = DataLoader(dataset, batch_sampler=list(batches), collate_fn=collate,
                            num_workers=workers, worker_init_fn=ddp.worker_init_fn,
                            generator=ddp.loader_generator(0, 0, e))
        for _ in loader:
            pass
        del loader
    return (time.perf_counter() - start) / epochs


def persistent(dataset, index, batches, epochs: int, workers: int) -> float:
    start = time.perf_counter()
    loader = TrainLoader(dataset, batches, index, num_workers=workers, seed=0, rank=0)
    for e in range(epochs):
        for _ in loader.epoch(e):
            pass
    loader.close()
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes_dataset(Path(tmp), "train", n_images=args.images, size=(256, 192))
        cfg = load_config(TINY, [f"dataset.root={tmp}", "augment.scales=[[256,192]]"])
        dataset = build_dataset(cfg, "train", train=True)
        index = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
        batches = BatchSampler(index, args.batch, drop_last=False)
        rows = []
        for _ in range(2):  # interleaved, twice: the machine is shared
            rows.append((rebuilt(dataset, index, batches, args.epochs, args.workers),
                         persistent(dataset, index, batches, args.epochs, args.workers)))
    ref, new = min(r[0] for r in rows), min(r[1] for r in rows)
    print(f"{len(batches)} batches/epoch, {args.workers} workers, {args.epochs} epochs, best of 2")
    print(f"rebuilt every epoch (reference): {ref:.3f} s/epoch")
    print(f"persistent (TrainLoader):        {new:.3f} s/epoch")
    print(f"ratio reference/persistent: {ref / new:.2f}x")


if __name__ == "__main__":
    main()
