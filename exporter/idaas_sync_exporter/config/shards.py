"""Splitting the configured instances between replicas: each instance belongs to exactly one shard.

Replicas with the same configuration and ``--shard-count N`` poll disjoint sets that together
cover every instance once. The shard of an instance is a stable hash of its id (the same on
every machine and Python version), so adding an instance moves no other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# StatefulSet pods are named <statefulset>-<ordinal>, and that is their hostname. ASCII digits only:
# \d would read x-\u0663 (Arabic-Indic three) as shard 3, and $ would accept a trailing newline.
_ORDINAL = re.compile(r"-([0-9]{1,6})\Z")


class ShardError(ValueError):
    """The shard cannot be determined; the message is one line naming the fix."""


def shard_of(instance_id: str, count: int) -> int:
    digest = hashlib.sha256(instance_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    def owns(self, instance_id: str) -> bool:
        return shard_of(instance_id, self.count) == self.index

    def owned(self, instance_ids: Iterable[str]) -> list[str]:
        return [instance_id for instance_id in instance_ids if self.owns(instance_id)]


def resolve(count: int, index: int | None, hostname: str) -> Shard:
    """The shard of this replica: ``index`` when given, else the StatefulSet pod ordinal in ``hostname``."""
    if count == 1:
        return Shard(0, 1)
    if index is None:
        match = _ORDINAL.search(hostname)
        if match is None:
            raise ShardError(
                f"--shard-count is {count} but --shard-index is not set and the hostname {hostname[:64]!r} "
                "has no StatefulSet ordinal (-N); set --shard-index (IDAAS_EXPORTER_SHARD_INDEX)"
            )
        index = int(match.group(1))
    if not 0 <= index < count:
        raise ShardError(f"shard index {index} is not below --shard-count {count}; use 0 to {count - 1}")
    return Shard(index, count)
