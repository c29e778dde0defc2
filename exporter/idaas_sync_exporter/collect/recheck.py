"""Which followed jobs a poll re-reads, in which listings, and how many calls it may spend on them.

Followed (pending/running) jobs the window listing did not return are re-read in batches: one
listing per group of up to TARGET_IDS_PER_QUERY targets, bounded to their start times; jobs running
for longer than ``long_running`` with one ``Status=running`` listing. Those re-reads are paid from
what the poll learns (:func:`spare_calls`), except that no followed job waits longer than
``recheck_max``: when it would, its listing is forced, whatever the cost. The poller makes the calls
(:meth:`idaas_sync_exporter.collect.poller.PollRun.recheck`); this module only plans them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from idaas_sync_exporter.api.client import MAX_PAGE_SIZE, JobFilter
from idaas_sync_exporter.api.models import TARGET_ID_CHARS_PER_QUERY, TARGET_IDS_PER_QUERY
from idaas_sync_exporter.collect.state import TrackedJob

# A poll may make one call per this many new or changed jobs it has seen, plus one: a call is worth
# making once there is a full page of news to show for it, so the cost follows what changed.
CHANGED_JOBS_PER_CALL = MAX_PAGE_SIZE


def spare_calls(jobs_changed: int, calls_made: int) -> int:
    """Calls a poll may still make and stay within one per CHANGED_JOBS_PER_CALL jobs learned, plus one."""
    return math.ceil(jobs_changed / CHANGED_JOBS_PER_CALL) + 1 - calls_made


@dataclass(frozen=True, slots=True)
class Recheck:
    """One listing that re-reads a group of followed jobs."""

    jobs: dict[str, TrackedJob]
    job_filter: JobFilter
    # Milliseconds since the least recently seen of these jobs was seen.
    waited: float
    # Made even without a call to spare, because its jobs could wait no longer.
    forced: bool


@dataclass(frozen=True, slots=True)
class RecheckPlanner:
    """Plans one poll's re-reads of the followed jobs its window listing did not return."""

    # When each followed job was last returned by the API (ms), in this process; absent: never.
    last_seen_ms: Mapping[str, float]
    now_ms: int
    # The API's clock: whether a job counts as long-running is judged on the clock that dated it.
    api_now_ms: int
    recheck_max_ms: int
    long_running_ms: int
    # The poll's configured target filters, with the given overrides (PollOptions.job_filter).
    job_filter: Callable[..., JobFilter]

    def waited_ms(self, job_ids: Iterable[str]) -> float:
        """How long ago the least recently seen of ``job_ids`` was seen (infinite if never)."""
        last_seen = self.last_seen_ms
        return self.now_ms - min(last_seen.get(job_id, -math.inf) for job_id in job_ids)

    def any_due(self, unseen: Iterable[str]) -> bool:
        """Whether one of ``unseen`` has waited ``recheck_max``, so that its listing is made whatever the cost."""
        return self.waited_ms(unseen) >= self.recheck_max_ms

    def plan(self, unseen: Mapping[str, TrackedJob]) -> list[Recheck]:
        """The listings that would re-read ``unseen``, those that must run first, then by how long they waited."""
        recheck_max_ms = self.recheck_max_ms
        cutoff = self.api_now_ms - self.long_running_ms
        recent = {job_id: tracked for job_id, tracked in unseen.items() if tracked.start_ms >= cutoff}
        old = {job_id: tracked for job_id, tracked in unseen.items() if tracked.start_ms < cutoff}
        rechecks: list[Recheck] = []
        for group in recheck_groups(recent, self.last_seen_ms):
            waited = self.waited_ms(group)
            starts = [tracked.start_ms for tracked in group.values()]
            job_filter = self.job_filter(start_ms=min(starts), end_ms=max(starts), target_ids=targets_of(group))
            rechecks.append(Recheck(group, job_filter, waited, forced=waited >= recheck_max_ms))
        # Long-running jobs rarely finish: they wait half the maximum before their listing is even considered.
        waited = self.waited_ms(old) if old else 0.0
        if waited >= recheck_max_ms / 2:
            for group in recheck_groups(old, {}):
                start_ms = min(tracked.start_ms for tracked in group.values())
                job_filter = self.job_filter(start_ms=start_ms, status="running", target_ids=targets_of(group))
                rechecks.append(Recheck(group, job_filter, waited, forced=waited >= recheck_max_ms))
        rechecks.sort(key=lambda recheck: (not recheck.forced, -recheck.waited))
        return rechecks


def targets_of(group: Mapping[str, TrackedJob]) -> list[str]:
    return sorted({tracked.target.target_id for tracked in group.values()})


def recheck_groups(jobs: Mapping[str, TrackedJob], last_seen: Mapping[str, float]) -> list[dict[str, TrackedJob]]:
    """``jobs`` in groups of at most TARGET_IDS_PER_QUERY targets: those last seen together, by start time.

    Jobs last seen in the same poll go together, so the longest-waiting jobs are read
    in the first listings instead of each listing holding a few of them (which would let
    them all reach the recheck maximum at once). Within that, adjacent start times keep
    each listing's time range (and the settled jobs of the same targets inside it)
    small. As few groups as the target limit allows, of even size, so that none barely
    spills onto a second page.
    """
    ordered = sorted(jobs, key=lambda job_id: (last_seen.get(job_id, -math.inf), jobs[job_id].start_ms))
    distinct = {tracked.target.target_id for tracked in jobs.values()}
    chars = sum(map(query_chars, distinct))
    needed = max(math.ceil(len(distinct) / TARGET_IDS_PER_QUERY), math.ceil(chars / TARGET_ID_CHARS_PER_QUERY), 1)
    per_group = math.ceil(len(distinct) / needed)
    groups: list[dict[str, TrackedJob]] = []
    targets: set[str] = set()
    group_chars = 0
    for job_id in ordered:
        tracked = jobs[job_id]
        target_id = tracked.target.target_id
        if not groups or (
            target_id not in targets
            and (len(targets) == per_group or group_chars + query_chars(target_id) > TARGET_ID_CHARS_PER_QUERY)
        ):
            groups.append({})
            targets = set()
            group_chars = 0
        groups[-1][job_id] = tracked
        if target_id not in targets:
            targets.add(target_id)
            group_chars += query_chars(target_id)
    return groups


@functools.lru_cache(maxsize=16384)
def query_chars(target_id: str) -> int:
    """Characters one target id adds to a signed query: ``&TargetIds.100=`` and the percent-encoded id."""
    return 16 + len(quote(target_id, safe="-_.~"))
