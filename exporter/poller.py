"""One poll of one IDaaS instance: read new and changed jobs, count each finished job once.

Reading strategy (the cost follows new and changed jobs, not the window):

1. ``ListSynchronizationJobs`` from ``cursor - overlap`` to now, newest first, 100 per
   page. The cursor is the latest job start time the API has shown us, so it runs on
   the API's clock; the overlap catches jobs that appear late.
2. Jobs seen pending/running whose start lies before that window are followed with one
   ``Status=running`` listing from the oldest of them; any that left it have changed and
   are read with ``GetSynchronizationJob``.

Counting: a job enters the ``_total`` counters once, when first seen final, and its
id is remembered while it can still be returned. On a cold start, jobs already final
set the last-job gauges but are not counted, so a restart without state never fakes
an ``increase()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.api.client import EiamClient, JobFilter
from exporter.api.errors import ApiError
from exporter.api.models import IN_PROGRESS_STATUSES, SynchronizationJob
from exporter.state import InstanceState, StateStore, TargetKey, TargetTally, TrackedJob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollOptions:
    lookback_seconds: float = 86400.0
    overlap_seconds: float = 120.0
    stuck_after_seconds: float = 7200.0
    target_types: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    target_ids: tuple[str, ...] = ()

    def job_filter(self, **kwargs: object) -> JobFilter:
        job_filter = JobFilter(
            target_type=self.target_types[0] if len(self.target_types) == 1 else None,
            direction=self.directions[0] if len(self.directions) == 1 else None,
            target_ids=list(self.target_ids),
        )
        for key, value in kwargs.items():
            setattr(job_filter, key, value)
        return job_filter

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
        self._api_calls = 0

    @property
    def state(self) -> InstanceState:
        return self._state

    async def poll(self) -> PollResult:
        now = self._clock()
        state = self._state.clone()
        cold = state.is_cold
        opts = self._options
        overlap_ms = int(opts.overlap_seconds * 1000)
        lookback_floor_ms = int((now - opts.lookback_seconds) * 1000)
        window_start_ms = lookback_floor_ms if state.cursor_ms is None else state.cursor_ms - overlap_ms
        calls = 0
        individually = 0

        jobs: dict[str, SynchronizationJob] = {}
        newest_start_ms: int | None = None
        async for page in self._client.list_synchronization_job_pages(
            self.instance_id, opts.job_filter(start_time=window_start_ms / 1000)
        ):
            calls += 1
            for job in page.jobs:
                start_ms = round(job.start_time * 1000)
                newest_start_ms = start_ms if newest_start_ms is None else max(newest_start_ms, start_ms)
                _merge(jobs, job)

        behind = {
            job_id: tracked
            for job_id, tracked in state.tracked.items()
            if tracked.start_ms < window_start_ms and job_id not in jobs
        }
        if behind:
            oldest_ms = min(t.start_ms for t in behind.values())
            async for page in self._client.list_synchronization_job_pages(
                self.instance_id, opts.job_filter(start_time=oldest_ms / 1000, status="running")
            ):
                calls += 1
                for job in page.jobs:
                    if job.job_id in behind:
                        _merge(jobs, job)
            for job_id in behind:
                if job_id in jobs:
                    continue
                calls += 1
                individually += 1
                try:
                    jobs[job_id] = await self._client.get_synchronization_job(self.instance_id, job_id)
                except ApiError as exc:
                    if not exc.code.startswith("EntityNotExists"):
                        raise
                    log.warning(
                        "followed job no longer exists; it will not be counted",
                        extra={"instance_id": self.instance_id, "job_id": job_id},
                    )
                    state.tracked.pop(job_id, None)

        counted = 0
        for job in sorted(jobs.values(), key=lambda j: (j.start_time, j.job_id)):
            if not self._options.wanted(job):
                continue
            counted += self._apply(state, job, cold=cold, now=now, lookback_floor_ms=lookback_floor_ms)

        for job_id, tracked in list(state.tracked.items()):
            if tracked.start_ms < lookback_floor_ms:
                log.warning(
                    "in-progress job left the lookback window; no longer followed",
                    extra={"instance_id": self.instance_id, "job_id": job_id, "target_id": tracked.target.target_id},
                )
                del state.tracked[job_id]

        base_ms = window_start_ms + overlap_ms if state.cursor_ms is None else state.cursor_ms
        state.cursor_ms = max(base_ms, newest_start_ms) if newest_start_ms is not None else base_ms
        # Ids older than the next re-read window can never be returned again.
        prune_before = state.cursor_ms - overlap_ms - 60_000
        state.counted = {job_id: start for job_id, start in state.counted.items() if start >= prune_before}

        self._store.save(state)  # the only commit point: a crash before it redoes the poll
        self._state = state
        self._api_calls += calls
        return PollResult(
            jobs_read=len(jobs), jobs_counted=counted, api_calls=calls, cold=cold, fetched_individually=individually
        )

    def _apply(
        self, state: InstanceState, job: SynchronizationJob, *, cold: bool, now: float, lookback_floor_ms: int
    ) -> int:
        key = TargetKey(job.target_type, job.target_id, job.direction)
        start_ms = round(job.start_time * 1000)
        if job.is_final:
            state.tracked.pop(job.job_id, None)
            if job.job_id in state.counted:
                return 0
            tally = state.targets.setdefault(key, TargetTally())
            state.counted[job.job_id] = start_ms
            tally.observe_latest(job)
            if cold:
                return 0
            tally.count(job)
            return 1
        state.targets.setdefault(key, TargetTally())
        if job.job_id in state.counted:
            log.warning(
                "job reported in progress after it was final; keeping the first final result",
                extra={"instance_id": self.instance_id, "job_id": job.job_id, "status": job.status},
            )
            return 0
        if job.status not in IN_PROGRESS_STATUSES:
            log.warning(
                "job has an unknown status; followed like a running job",
                extra={"instance_id": self.instance_id, "job_id": job.job_id, "status": job.status},
            )
        if start_ms < lookback_floor_ms:
            return 0
        previous = state.tracked.get(job.job_id)
        status = job.status if job.status in IN_PROGRESS_STATUSES else "running"
        state.tracked[job.job_id] = TrackedJob(key, status, start_ms)
        age = now - job.start_time
        if age > self._options.stuck_after_seconds and (previous is None or previous.status != status):
            log.warning(
                "job in progress for longer than the stuck threshold",
                extra={
                    "instance_id": self.instance_id,
                    "job_id": job.job_id,
                    "target_id": job.target_id,
                    "age_seconds": round(age),
                },
            )
        return 0


def _merge(jobs: dict[str, SynchronizationJob], job: SynchronizationJob) -> None:
    """The same job may come back twice (pages shift while we read): a final version wins."""
    existing = jobs.get(job.job_id)
    if existing is None or (job.is_final and not existing.is_final):
        jobs[job.job_id] = job
