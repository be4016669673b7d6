"""The training DataLoader: built once per run, its workers alive for the whole run.

A loader rebuilt every epoch respawns its workers and loses what they cached (the copy-paste
object bank, decoded images). Here one ``DataLoader`` with ``persistent_workers`` serves every
epoch: :meth:`TrainLoader.epoch` re-seeds the index sampler (``set_epoch``: the shuffle of
that epoch), drops the batches a resumed run already did (mid-epoch resume) and iterates.

Randomness does not depend on which worker runs a sample, nor on how many workers there
are: every index travels with its own seed, ``sample_seed(seed, epoch, rank, batch, slot)``,
and :class:`SeededSamples` seeds Python's ``random``, NumPy's global state and torch with it
around the sample (restoring them afterwards, so the main process's streams — with
``num_workers=0`` — are untouched). So an epoch's samples are the same for the same
``train.seed`` (0, 1 or 2 workers alike), differ from epoch to epoch, and a run resumed in the
middle of an epoch draws exactly the samples the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vipseg.data.dataset import collate
from vipseg.engine import distributed as ddp


def sample_seed(seed: int, epoch: int, rank: int, batch: int, slot: int) -> int:
    """A 63-bit seed for the sample in ``slot`` of batch ``batch`` of ``epoch`` on ``rank``."""
    words = [seed % 2**63, epoch, rank, batch, slot]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed ``random``, NumPy's global generator and torch (CPU) with ``seed`` for the body;
    their previous states are restored afterwards."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededSamples(Dataset):
    """``dataset[index]`` drawn under :func:`seeded` (``seed``) for items ``(index, seed)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with seeded(seed):
            return self.dataset[index]


class SeededBatches(Sampler[list[tuple[int, int]]]):
    """One epoch of ``batch_sampler``'s batches, the first ``skip`` left out, every index
    paired with its :func:`sample_seed`. ``index_sampler`` (a ``DistributedSampler``) is the
    sampler that ``batch_sampler`` draws from; :meth:`set_epoch` re-seeds it."""

    def __init__(self, batch_sampler: Sampler[list[int]], index_sampler: Any, *, seed: int,
                 rank: int) -> None:
        self.batch_sampler, self.index_sampler = batch_sampler, index_sampler
        self.seed, self.rank = seed, rank
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Iterate epoch ``epoch`` (0-based) from batch ``skip`` on."""
        self.index_sampler.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b, batch in enumerate(self.batch_sampler):
            if b >= self.skip:
                yield [(int(i), sample_seed(self.seed, self.epoch, self.rank, b, s))
                       for s, i in enumerate(batch)]

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)  # type: ignore[arg-type]


class TrainLoader:
    """The run's training batches: ``epoch(e, skip)`` yields ``(images, targets)`` lists.

    Args:
        dataset: ``(image, target)`` samples (the training transform draws from torch's RNG).
        batch_sampler: this rank's batches of indices; index_sampler: what it draws from.
        num_workers: loader processes (0: load in the main process); with workers they
            persist from the first epoch to :meth:`close`.
        seed, rank: for :func:`sample_seed` and the workers' base seed.
        pin_memory: page-locked batches (CUDA).
    """

    def __init__(self, dataset: Dataset, batch_sampler: Sampler[list[int]], index_sampler: Any,
                 *, num_workers: int, seed: int, rank: int, pin_memory: bool = False) -> None:
        self.batches = SeededBatches(batch_sampler, index_sampler, seed=seed, rank=rank)
        self._loader: DataLoader | None = DataLoader(
            SeededSamples(dataset), batch_sampler=self.batches, collate_fn=collate,
            num_workers=num_workers, persistent_workers=num_workers > 0,
            worker_init_fn=ddp.worker_init_fn, generator=ddp.loader_generator(seed, rank),
            pin_memory=pin_memory)

    def epoch(self, epoch: int, skip: int = 0) -> DataLoader:
        """The loader set to epoch ``epoch`` from batch ``skip``: iterate it once."""
        if self._loader is None:
            raise RuntimeError("TrainLoader used after close()")
        self.batches.set_epoch(epoch, skip)
        return self._loader

    def close(self) -> None:
        """Let the workers go (they stop when the loader's iterator is collected)."""
        self._loader = None
