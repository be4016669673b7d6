"""Batch samplers: aspect-ratio grouping on top of any (distributed) index sampler.

Grouping landscape (w >= h) and portrait images into separate batches keeps padding small.
:class:`GroupedBatchSampler` wraps an index sampler (``DistributedSampler`` shards and shuffles
per rank and epoch), so it works unchanged under DDP: every rank yields
``ceil(len(sampler) / batch_size)`` batches, the same number on every rank.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from torch.utils.data import Sampler


def aspect_groups(image_sizes: Sequence[tuple[int, int]]) -> list[int]:
    """Group id per image from (height, width): 0 for landscape / square (w >= h), 1 portrait."""
    return [0 if w >= h else 1 for h, w in image_sizes]


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices drawn from ``sampler``, each from one group.

    Indices come in the sampler's order and fill their group's buffer; a full buffer is
    yielded as a batch. At the end the left-over indices of all groups (fewer than
    ``batch_size`` each) are yielded in mixed batches, so no index is dropped and the number
    of batches is ``ceil(len(sampler) / batch_size)``.

    Args:
        sampler: yields dataset indices (e.g. ``DistributedSampler``).
        group_ids: group of every dataset index (see :func:`aspect_groups`).
        batch_size: indices per batch (per process).
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        for idx in self.sampler:
            buf = buffers.setdefault(self.group_ids[idx], [])
            buf.append(idx)
            if len(buf) == self.batch_size:
                yield list(buf)
                buf.clear()
        rest = [i for g in sorted(buffers) for i in buffers[g]]
        for start in range(0, len(rest), self.batch_size):
            yield rest[start:start + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)  # type: ignore[arg-type]
