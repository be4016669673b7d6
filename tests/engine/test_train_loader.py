"""The run-long training loader: persistent workers, per-epoch shuffles and sample seeds."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import BatchSampler, Dataset, DistributedSampler

from vipseg.engine.train_loader import TrainLoader, sample_seed


class Draws(Dataset):
    """Item i: (i, a torch draw, a NumPy draw, the pid of the process that loaded it)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        import numpy as np

        return torch.rand(()).item(), {"index": i, "np": float(np.random.rand()), "pid": os.getpid()}


def epochs(num_workers: int, seed: int = 0, n: int = 3, skip: dict | None = None) -> list[list]:
    data = Draws()
    index = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed)
    loader = TrainLoader(data, BatchSampler(index, 2, drop_last=False), index,
                         num_workers=num_workers, seed=seed, rank=0)
    out = []
    for e in range(n):
        out.append([(t["index"], x, t["np"], t["pid"])
                    for xs, ts in loader.epoch(e, (skip or {}).get(e, 0)) for x, t in zip(xs, ts)])
    loader.close()
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_persistent_workers_reshuffle_and_redraw_every_epoch(workers):
    runs = epochs(workers)
    pids = {pid for epoch in runs for *_, pid in epoch}
    assert len(pids) == workers and os.getpid() not in pids  # the same workers all run long
    orders = [[i for i, *_ in epoch] for epoch in runs]
    assert all(sorted(o) == list(range(6)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3  # the sampler's set_epoch reshuffles
    draws = [{i: (x, y) for i, x, y, _ in epoch} for epoch in runs]
    for i in range(6):  # an image gets new random draws each epoch
        assert len({d[i] for d in draws}) == 3


def test_samples_depend_on_the_seed_only_not_on_the_workers():
    strip = lambda runs: [[s[:3] for s in epoch] for epoch in runs]  # noqa: E731
    main = strip(epochs(0))
    assert strip(epochs(2)) == main and strip(epochs(1)) == main
    assert strip(epochs(1, seed=1)) != main


def test_a_resumed_epoch_draws_what_the_full_epoch_drew():
    full = epochs(1, n=2)
    cut = epochs(1, n=2, skip={1: 2})  # epoch 1 from its third batch on (batches of 2)
    assert [s[:3] for s in cut[1]] == [s[:3] for s in full[1][4:]]


def test_main_process_random_streams_are_untouched():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    epochs(0, n=1)
    assert torch.equal(torch.rand(3), expected)


def test_sample_seeds_differ_by_every_coordinate():
    seeds = {sample_seed(*c) for c in [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (0, 1, 0, 0, 0),
                                       (0, 0, 1, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1)]}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
