"""Validation and test shards: every item goes to exactly one of N processes, in order, unpadded (the padded
DistributedSampler they replace repeats items), and a split smaller than N is refused in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch.utils.data import DistributedSampler

from lavish.errors import DataError
from lavish.tasks.ave.dataset import AveDataModule
from lavish.engine.runner import ShardSampler

MICRO = "lavish_vit_micro_patch8_64"


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [4, 5, 7, 9])
def test_every_item_in_exactly_one_shard(n, world):
    items = list(range(n))
    shards = [list(ShardSampler(items, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == items
    assert all(s == sorted(s) for s in shards) and max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardSampler(items, num_replicas=world, rank=r)) for r in range(world)] == list(map(len, shards))
    padded = [i for r in range(world) for i in DistributedSampler(items, num_replicas=world, rank=r, shuffle=False)]
    assert len(padded) == n + (-n) % world  # what the old loaders evaluated: n % world != 0 repeats items


def test_shuffling_is_refused():
    with pytest.raises(ValueError, match="order"):
        ShardSampler(range(3), shuffle=True)


def test_eval_loaders_shard_unpadded_and_refuse_more_processes_than_items(ave_cache):
    dm = AveDataModule(ave_cache, backbone=MICRO, batch_size=2)
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0)
    assert isinstance(dm.val_dataloader().sampler, ShardSampler)
    assert isinstance(dm.train_dataloader().sampler, DistributedSampler)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    with pytest.raises(DataError, match=r"split 'val' has 1 prepared videos, fewer than the 2 processes"):
        dm.val_dataloader()
