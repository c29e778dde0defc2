"""Shards split the configured instances between replicas: every instance exactly once."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idaas_sync_exporter.config.shards import Shard, ShardError, resolve, shard_of

INSTANCE_IDS = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True)


@settings(max_examples=200, deadline=None)
@given(instance_ids=INSTANCE_IDS, count=st.integers(min_value=1, max_value=64))
def test_shards_partition_the_instances(instance_ids: list[str], count: int) -> None:
    owned = [Shard(index, count).owned(instance_ids) for index in range(count)]
    every = [instance_id for shard in owned for instance_id in shard]
    assert sorted(every) == sorted(instance_ids)  # each once, none left out
    # Adding an instance moves no other.
    grown = [Shard(index, count).owned([*instance_ids, "idaas_new_one"]) for index in range(count)]
    assert [[i for i in shard if i != "idaas_new_one"] for shard in grown] == owned


def test_the_shard_of_an_instance_is_the_same_everywhere() -> None:
    # A stable hash (not Python's per-process hash()): replicas on other machines agree.
    for instance_id in ("idaas_6af7b0d0bcd3ef1b93525fdde5", "idaas_x", "实例"):
        digest = int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:8], "big")
        assert shard_of(instance_id, 7) == digest % 7


def test_the_shard_comes_from_the_flag_or_the_statefulset_ordinal() -> None:
    assert resolve(1, None, "anything") == Shard(0, 1)
    assert resolve(3, None, "idaas-sync-exporter-2") == Shard(2, 3)
    assert resolve(3, 1, "idaas-sync-exporter-2") == Shard(1, 3)
    with pytest.raises(ShardError, match="--shard-index"):
        resolve(3, None, "laptop")
    with pytest.raises(ShardError, match="not below --shard-count 3"):
        resolve(3, None, "idaas-sync-exporter-5")
