"""One poll of one IDaaS instance: read new and changed jobs, count each finished job once.

Reading strategy (the cost follows new and changed jobs, not the window):

1. ``ListSynchronizationJobs`` from ``cursor - overlap`` to now, newest first, 100 per
   page. The cursor is the latest job start time the API has shown us, so it runs on
   the API's clock; the overlap catches jobs that appear late.
2. Jobs seen pending/running whose start lies before that window are read back in
   batches (one listing per group of their targets, bounded to their start times);
   long-running ones with one ``Status=running`` listing. Anything a batch did not
   return is read with ``GetSynchronizationJob``.

Counting: a job enters the ``_total`` counters once, when first seen final, and its
id is remembered while it can still be returned. On a cold start, jobs already final
set the last-job gauges but are not counted, so a restart without state never fakes
an ``increase()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.api.client import EiamClient, JobFilter
from exporter.api.errors import ApiError
from exporter.api.models import IN_PROGRESS_STATUSES, SynchronizationJob
from exporter.state import InstanceState, PollWork, StateStore, TargetKey, TrackedJob

log = logging.getLogger(__name__)

# How many target ids one batched re-read asks for; keeps query strings short.
TARGET_IDS_PER_QUERY = 100


@dataclass(frozen=True, slots=True)
class PollOptions:
    lookback_seconds: float = 86400.0
    overlap_seconds: float = 30.0
    stuck_after_seconds: float = 7200.0
    # Followed jobs older than this are checked with a running-jobs listing instead of
    # batches, and only every long_running_check_seconds: they rarely finish.
    long_running_seconds: float = 1800.0
    long_running_check_seconds: float = 300.0
    target_types: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    target_ids: tuple[str, ...] = ()

    def job_filter(self, **overrides: Any) -> JobFilter:
        """The configured target filters as API filters, with ``overrides`` applied."""
        return dataclasses.replace(
            JobFilter(
                target_type=self.target_types[0] if len(self.target_types) == 1 else None,
                direction=self.directions[0] if len(self.directions) == 1 else None,
                target_ids=list(self.target_ids),
            ),
            **overrides,
        )

    def wanted(self, job: SynchronizationJob) -> bool:
        return (
            (not self.target_types or job.target_type in self.target_types)
            and (not self.directions or job.direction in self.directions)
            and (not self.target_ids or job.target_id in self.target_ids)
        )


@dataclass(frozen=True, slots=True)
class PollResult:
    jobs_read: int
    jobs_counted: int
    api_calls: int
    cold: bool
    # Followed jobs read one by one because they finished behind the re-read window.
    fetched_individually: int = 0
    # New jobs plus jobs whose status changed: the least a poll has to learn.
    jobs_changed: int = 0


class InstancePoller:
    """Owns one instance's state; ``poll()`` is never run concurrently for the same instance."""

    def __init__(
        self,
        instance_id: str,
        client: EiamClient,
        store: StateStore,
        options: PollOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance_id = instance_id
        self._client = client
        self._store = store
        self._options = options
        self._clock = clock
        self._state = store.load(instance_id)
        self._long_running_checked: float | None = None

    @property
    def state(self) -> InstanceState:
        return self._state

    async def poll(self) -> PollResult:
        now = self._clock()
        work = self._state.begin()
        cold = self._state.is_cold
        opts = self._options
        overlap_ms = int(opts.overlap_seconds * 1000)
        lookback_floor_ms = int((now - opts.lookback_seconds) * 1000)
        window_start_ms = lookback_floor_ms if work.cursor_ms is None else work.cursor_ms - overlap_ms
        stats = _PollStats()
        newest_start_ms: int | None = None

        # Pages are applied as they arrive, so memory holds one page, not the window.
        # A job met twice (pages shift while we read) is harmless: a final job is
        # counted once (its id is remembered) and a running one is just followed.
        async for page in self._client.list_synchronization_job_pages(
            self.instance_id, opts.job_filter(start_time=window_start_ms / 1000)
        ):
            stats.calls += 1
            for index, job in enumerate(page.jobs):
                start_ms = round(job.start_time * 1000)
                newest_start_ms = start_ms if newest_start_ms is None else max(newest_start_ms, start_ms)
                self._apply(work, job, cold=cold, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)
                if index % 25 == 24:
                    await asyncio.sleep(0)  # scrapes are served between slices of a page

        behind = {job_id: tracked for job_id, tracked in work.tracked.items() if tracked.start_ms < window_start_ms}
        if behind:
            await self._follow_behind(work, behind, stats, now=now, lookback_floor_ms=lookback_floor_ms)

        for job_id, tracked in list(work.tracked.items()):
            if tracked.start_ms < lookback_floor_ms:
                log.warning(
                    "in-progress job left the lookback window; no longer followed",
                    extra={"instance_id": self.instance_id, "job_id": job_id, "target_id": tracked.target.target_id},
                )
                del work.tracked[job_id]

        base_ms = window_start_ms + overlap_ms if work.cursor_ms is None else work.cursor_ms
        work.cursor_ms = max(base_ms, newest_start_ms) if newest_start_ms is not None else base_ms
        # Ids older than the next re-read window can never be returned again.
        prune_before = work.cursor_ms - overlap_ms - 60_000
        work.counted = {job_id: start for job_id, start in work.counted.items() if start >= prune_before}

        state = work.result()
        # The only commit point: a crash before it redoes the poll. Off the event loop,
        # because an fsync can take milliseconds that scrapes should not wait for.
        await asyncio.to_thread(self._store.save, state, work.touched)
        self._state = state
        return PollResult(
            jobs_read=stats.read,
            jobs_counted=stats.counted,
            api_calls=stats.calls,
            cold=cold,
            fetched_individually=stats.individually,
            jobs_changed=stats.changed,
        )

    async def _follow_behind(
        self,
        work: PollWork,
        behind: dict[str, TrackedJob],
        stats: _PollStats,
        *,
        now: float,
        lookback_floor_ms: int,
    ) -> None:
        """Re-read followed jobs that started before this poll's window.

        Recently started ones are read back in batches: one listing per group of
        targets, bounded to the start times of those jobs. Long-running ones are
        checked with one running-jobs listing; those that left it are read one by one.
        Whatever a batch did not return is read one by one too, so nothing depends on
        how the API interprets EndTime.
        """
        opts = self._options
        long_running_ms = int(opts.long_running_seconds * 1000)
        cutoff = round(now * 1000) - long_running_ms
        recent = {job_id: t for job_id, t in behind.items() if t.start_ms >= cutoff}
        old = {job_id: t for job_id, t in behind.items() if t.start_ms < cutoff}
        if (
            old
            and self._long_running_checked is not None
            and (now - self._long_running_checked < opts.long_running_check_seconds)
        ):
            behind = {job_id: t for job_id, t in behind.items() if job_id not in old}
            old = {}
        elif old:
            self._long_running_checked = now
        found: set[str] = set()

        targets = sorted({t.target.target_id for t in recent.values()})
        for chunk_start in range(0, len(targets), TARGET_IDS_PER_QUERY):
            chunk = set(targets[chunk_start : chunk_start + TARGET_IDS_PER_QUERY])
            wanted = {job_id: t for job_id, t in recent.items() if t.target.target_id in chunk}
            first = min(t.start_ms for t in wanted.values())
            last = max(t.start_ms for t in wanted.values())
            job_filter = opts.job_filter(start_time=first / 1000, end_time=last / 1000, target_ids=sorted(chunk))
            async for page in self._client.list_synchronization_job_pages(self.instance_id, job_filter):
                stats.calls += 1
                for job in page.jobs:
                    # Only the followed jobs: others in the range were settled long ago and
                    # their ids may have been forgotten, so applying them could count twice.
                    if job.job_id in wanted:
                        found.add(job.job_id)
                        self._apply(work, job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)

        if old:
            first = min(t.start_ms for t in old.values())
            job_filter = opts.job_filter(
                start_time=first / 1000, status="running", target_ids=sorted({t.target.target_id for t in old.values()})
            )
            async for page in self._client.list_synchronization_job_pages(self.instance_id, job_filter):
                stats.calls += 1
                for job in page.jobs:
                    if job.job_id in old:
                        found.add(job.job_id)
                        self._apply(work, job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)

        for job_id in behind:
            if job_id in found:
                continue
            stats.calls += 1
            stats.individually += 1
            try:
                job = await self._client.get_synchronization_job(self.instance_id, job_id)
            except ApiError as exc:
                if not exc.code.startswith("EntityNotExists"):
                    raise
                log.warning(
                    "followed job no longer exists; it will not be counted",
                    extra={"instance_id": self.instance_id, "job_id": job_id},
                )
                work.tracked.pop(job_id, None)
                continue
            self._apply(work, job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)

    def _apply(
        self,
        work: PollWork,
        job: SynchronizationJob,
        *,
        cold: bool,
        now: float,
        lookback_floor_ms: int,
        stats: _PollStats,
    ) -> None:
        stats.read += 1
        if not self._options.wanted(job):
            return
        key = TargetKey(job.target_type, job.target_id, job.direction)
        start_ms = round(job.start_time * 1000)
        previous = work.tracked.get(job.job_id)
        if job.is_final:
            if job.job_id in work.counted:
                return
            work.tracked.pop(job.job_id, None)
            tally = work.tally(key)
            work.counted[job.job_id] = start_ms
            tally.observe_latest(job)
            stats.changed += 1
            if cold:
                return
            tally.count(job)
            stats.counted += 1
            return
        if key not in work.targets:
            work.tally(key)  # all series of a target exist from its first sighting
        if job.job_id in work.counted:
            log.warning(
                "job reported in progress after it was final; keeping the first final result",
                extra={"instance_id": self.instance_id, "job_id": job.job_id, "status": job.status},
            )
            return
        if job.status not in IN_PROGRESS_STATUSES:
            log.warning(
                "job has an unknown status; followed like a running job",
                extra={"instance_id": self.instance_id, "job_id": job.job_id, "status": job.status},
            )
        if start_ms < lookback_floor_ms:
            return
        status = job.status if job.status in IN_PROGRESS_STATUSES else "running"
        if previous is not None and previous.status == status:
            return
        stats.changed += 1
        work.tracked[job.job_id] = TrackedJob(key, status, start_ms)
        age = now - job.start_time
        if age > self._options.stuck_after_seconds:
            log.warning(
                "job in progress for longer than the stuck threshold",
                extra={
                    "instance_id": self.instance_id,
                    "job_id": job.job_id,
                    "target_id": job.target_id,
                    "age_seconds": round(age),
                },
            )


@dataclass(slots=True)
class _PollStats:
    calls: int = 0
    read: int = 0
    counted: int = 0
    changed: int = 0
    individually: int = 0
