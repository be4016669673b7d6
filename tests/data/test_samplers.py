"""Aspect-ratio grouped batches, alone and on DDP shards."""

from __future__ import annotations

from torch.utils.data import DistributedSampler

from vipseg.data.samplers import GroupedBatchSampler, aspect_groups

SIZES = [(100, 200), (200, 100), (120, 160), (300, 150), (90, 90), (400, 200), (50, 80),
         (80, 50), (60, 100), (100, 60), (70, 70)]  # (height, width)


def test_aspect_groups():
    assert aspect_groups([(10, 20), (20, 10), (5, 5)]) == [0, 1, 0]


def _batches(rank: int, world: int, epoch: int, batch_size: int) -> list[list[int]]:
    index = DistributedSampler(range(len(SIZES)), num_replicas=world, rank=rank, shuffle=True,
                               seed=3)
    index.set_epoch(epoch)
    return list(GroupedBatchSampler(index, aspect_groups(SIZES), batch_size))


def test_batches_are_grouped_and_complete():
    groups = aspect_groups(SIZES)
    batches = _batches(0, 1, 0, 3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(SIZES)))
    full_single_group = [b for b in batches if len({groups[i] for i in b}) == 1]
    assert len(full_single_group) >= len(batches) - 1  # only the left-over batch may mix
    assert len(batches) == len(GroupedBatchSampler(range(len(SIZES)), groups, 3)) == 4


def test_ddp_shards_have_equal_batch_counts_and_cover_the_data():
    world = 2
    per_rank = [_batches(r, world, epoch=1, batch_size=2) for r in range(world)]
    assert len(per_rank[0]) == len(per_rank[1]) == 3  # 11 images padded to 12 → 6 per rank
    seen = {i for batches in per_rank for b in batches for i in b}
    assert seen == set(range(len(SIZES)))


def test_epochs_reshuffle():
    assert _batches(0, 1, 0, 2) != _batches(0, 1, 1, 2)
    assert _batches(0, 1, 5, 2) == _batches(0, 1, 5, 2)
