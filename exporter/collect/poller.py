"""One poll of one IDaaS instance: read new and changed jobs, count each finished job once.

Reading strategy (the cost follows new and changed jobs, not the window):

1. ``ListSynchronizationJobs`` from ``cursor - overlap`` to now, newest first, 100 per
   page. The cursor is the latest job start time the API has shown us, so it runs on
   the API's clock; the overlap catches jobs that appear late. Once the pages reach
   jobs older than the cursor, the first page's ``TotalCount`` tells how many jobs are
   left; when that equals the jobs already known there, nothing appeared late and the
   rest of the overlap is not read.
2. Followed (pending/running) jobs that step 1 did not return are re-read in batches:
   one listing per group of up to 100 targets, bounded to their start times; jobs
   running for a long time with one ``Status=running`` listing. Anything a complete
   batch did not return is read with ``GetSynchronizationJob``.

Re-reads are paid from what the poll learns. A poll makes at most one call more than
one per 100 new or changed jobs it has seen so far; re-reads that would exceed that
wait for a later poll, which by then has more finished jobs to show for its calls.
No followed job waits longer than ``recheck_max_seconds``: when it would, it is read
whatever the cost.

Counting: a job enters the ``_total`` counters once, when first seen final, and its
id is remembered while it can still be returned. On a cold start, jobs already final
set the last-job gauges but are not counted, so a restart without state never fakes
an ``increase()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from exporter.api.client import MAX_PAGE_SIZE, EiamClient, JobFilter, JobPage
from exporter.api.errors import ApiError, EiamError
from exporter.api.models import IN_PROGRESS_STATUSES, REPAIR_REASONS, Anomaly, SynchronizationJob
from exporter.collect.counting import TargetKey
from exporter.collect.state import InstanceState, PollWork, TrackedJob
from exporter.collect.store import StateStore

log = logging.getLogger(__name__)

# How many target ids one batched re-read asks for, and how many characters they may
# take together: API fronts refuse request lines over 8 KB (400 LineTooLong), and the
# rest of a signed query needs about 1 KB.
TARGET_IDS_PER_QUERY = 100
TARGET_ID_CHARS_PER_QUERY = 5000
# A job may start this far after the API's own clock (the Date header rounds to seconds)
# before its StartTime is treated as wrong: it then never moves the cursor.
FUTURE_TOLERANCE_MS = 60_000
# Jobs whose anomalies were logged, so that each is logged once, not every poll.
REPORTED_LIMIT = 10_000
# Every reason of idaas_exporter_jobs_anomalous_total, so that each series exists from the start.
ANOMALY_REASONS = ("malformed", *REPAIR_REASONS, "future_start", "late")
_ANOMALY_MESSAGES = {
    "malformed": "job quarantined: not used until the API shows it usable",
    "future_start": "job starts after the API's clock; followed and counted, but it does not move the cursor",
    "late": "job appeared after the overlap had passed its start; counted now",
}


class PollDeadlineError(EiamError):
    """A poll read for longer than its deadline; nothing of it is committed."""

    def __init__(self, deadline_seconds: float, calls: int) -> None:
        self.action = "poll"
        super().__init__(
            f"poll did not finish within {deadline_seconds:g} s ({calls} API calls made); nothing was saved, "
            "the next poll starts over (raise IDAAS_EXPORTER_POLL_TIMEOUT_SECONDS if the API is just slow)"
        )

    @property
    def metric_code(self) -> str:
        return "PollDeadline"


@dataclass(frozen=True, slots=True)
class PollOptions:
    lookback_seconds: float = 86400.0
    overlap_seconds: float = 30.0
    stuck_after_seconds: float = 7200.0
    # The longest a followed job goes unread when polls have no calls to spare.
    recheck_max_seconds: float = 600.0
    # Followed jobs older than this are checked with one running-jobs listing instead of
    # batches, and only after waiting half of recheck_max_seconds: they rarely finish.
    long_running_seconds: float = 1800.0
    target_types: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    target_ids: tuple[str, ...] = ()
    # The longest one poll may spend reading; a poll past it fails (and is counted) like any other.
    deadline_seconds: float = 900.0
    # How far behind the cursor the late check looks for jobs that appeared after the overlap passed them.
    late_horizon_seconds: float = 1800.0

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
    # Followed jobs read one by one because a batch did not return them.
    fetched_individually: int = 0
    # New jobs plus jobs whose status changed: the least a poll has to learn.
    jobs_changed: int = 0
    # Calls spent on the window listing and on re-reading followed jobs behind it.
    window_calls: int = 0
    recheck_calls: int = 0
    # Followed jobs not seen in this poll, left for a later one (see the module doc).
    jobs_deferred: int = 0
    # Re-read listings made whatever the cost because their jobs had waited recheck_max_seconds.
    forced_rechecks: int = 0
    # Jobs newly found odd in this poll, by reason (quarantined, repaired, dated in the future, late).
    anomalies: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Recheck:
    """One listing that re-reads a group of followed jobs."""

    jobs: dict[str, TrackedJob]
    job_filter: JobFilter
    # Seconds since the least recently seen of these jobs was seen.
    waited: float
    forced: bool


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
        # When each followed job was last returned by the API, in this process. Not
        # persisted: after a restart every followed job is due at once.
        self._last_seen: dict[str, float] = {}
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        # When jobs behind the window were last checked for (not persisted: due at once after a restart).
        self._last_late_check = -math.inf

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
        seen: set[str] = set()

        try:
            async with asyncio.timeout(opts.deadline_seconds):
                newest_start_ms = await self._read_window(
                    work, window_start_ms, seen, stats, cold=cold, now=now, lookback_floor_ms=lookback_floor_ms
                )
                # Job ages and the cursor follow the API's clock (its Date header), or ours without one.
                api_now_ms = round((self._client.api_now() or now) * 1000)
                unseen = {job_id: tracked for job_id, tracked in work.tracked.items() if job_id not in seen}
                if unseen:
                    await self._recheck(
                        work, unseen, seen, stats, now=now, api_now_ms=api_now_ms, lookback_floor_ms=lookback_floor_ms
                    )
                await self._check_late(work, window_start_ms, seen, stats, now=now, lookback_floor_ms=lookback_floor_ms)
        except TimeoutError:
            raise PollDeadlineError(opts.deadline_seconds, stats.calls) from None

        for job_id, tracked in list(work.tracked.items()):
            if tracked.start_ms < lookback_floor_ms:
                log.warning(
                    "in-progress job left the lookback window; no longer followed",
                    extra={"instance_id": self.instance_id, "job_id": job_id, "target_id": tracked.target.target_id},
                )
                del work.tracked[job_id]

        base_ms = window_start_ms + overlap_ms if work.cursor_ms is None else work.cursor_ms
        work.cursor_ms = max(base_ms, newest_start_ms) if newest_start_ms is not None else base_ms
        # Ids are kept as long as the late check looks back; older ones are never asked for again.
        prune_before = work.cursor_ms - max(int(opts.late_horizon_seconds * 1000), overlap_ms + 60_000)
        work.counted = {job_id: start for job_id, start in work.counted.items() if start >= prune_before}

        state = work.result()
        # The only commit point: a crash before it redoes the poll. Off the event loop,
        # because an fsync can take milliseconds that scrapes should not wait for.
        await asyncio.to_thread(self._store.save, state, work.touched)
        self._state = state
        self._last_seen = {
            job_id: now if job_id in seen else self._last_seen.get(job_id, -math.inf) for job_id in state.tracked
        }
        return PollResult(
            jobs_read=stats.read,
            jobs_counted=stats.counted,
            api_calls=stats.calls,
            cold=cold,
            fetched_individually=stats.individually,
            jobs_changed=stats.changed,
            window_calls=stats.window_calls,
            recheck_calls=stats.calls - stats.window_calls,
            jobs_deferred=sum(1 for job_id in state.tracked if job_id not in seen),
            forced_rechecks=stats.forced,
            anomalies=dict(stats.anomalies),
        )

    async def _read_window(
        self,
        work: PollWork,
        window_start_ms: int,
        seen: set[str],
        stats: _PollStats,
        *,
        cold: bool,
        now: float,
        lookback_floor_ms: int,
    ) -> int | None:
        """List every job started since ``window_start_ms``; returns the newest start time seen."""
        newest_start_ms: int | None = None
        total: int | None = None
        pages = self._client.list_synchronization_job_pages(
            self.instance_id, self._options.job_filter(start_time=window_start_ms / 1000)
        )
        # Pages are applied as they arrive, so memory holds one page, not the window.
        # A job met twice (pages shift while we read) is harmless: a final job is
        # counted once (its id is remembered) and a running one is just followed.
        async with contextlib.aclosing(pages):
            async for page in pages:
                stats.calls += 1
                stats.window_calls += 1
                if total is None:
                    total = page.total_count
                self._note_anomalies(page.anomalies, seen, stats)
                # The cursor never passes the API's own clock: a job dated in the future would
                # otherwise move every later window past the jobs that really come next.
                latest_plausible_ms = round((self._client.api_now() or now) * 1000) + FUTURE_TOLERANCE_MS
                for index, job in enumerate(page.jobs):
                    start_ms = round(job.start_time * 1000)
                    if start_ms > latest_plausible_ms:
                        self._note_anomalies(
                            [Anomaly(job.job_id, "future_start", f"StartTime {start_ms} is after the API's clock")],
                            seen,
                            stats,
                        )
                    else:
                        newest_start_ms = start_ms if newest_start_ms is None else max(newest_start_ms, start_ms)
                    seen.add(job.job_id)
                    self._apply(work, job, cold=cold, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)
                    if index % 25 == 24:
                        await asyncio.sleep(0)  # scrapes are served between slices of a page
                if page.next_token and page.jobs and self._rest_is_known(work.base, window_start_ms, page, total, seen):
                    break
        return newest_start_ms

    @staticmethod
    def _rest_is_known(
        base: InstanceState, window_start_ms: int, page: JobPage, total: int | None, seen: set[str]
    ) -> bool:
        """Whether the pages after ``page`` can only hold jobs the last poll already saw.

        They can once the listing has passed the cursor (everything after is older)
        and the jobs left to list, by ``TotalCount``, are exactly the known ones not
        met yet. Followed jobs among them are then re-read like those behind the window.
        """
        if total is None or base.cursor_ms is None:
            return False
        last_ms = round(page.jobs[-1].start_time * 1000)
        if last_ms >= base.cursor_ms:
            return False
        known = sum(
            1 for job_id, start in base.counted.items() if window_start_ms <= start <= last_ms and job_id not in seen
        ) + sum(
            1
            for job_id, tracked in base.tracked.items()
            if window_start_ms <= tracked.start_ms <= last_ms and job_id not in seen and job_id not in base.counted
        )
        return total - len(seen) == known

    def _waited(self, job_ids: Iterable[str], now: float) -> float:
        """Seconds since the least recently seen of ``job_ids`` was seen (infinite if never)."""
        return now - min(self._last_seen.get(job_id, -math.inf) for job_id in job_ids)

    def _rechecks(self, unseen: dict[str, TrackedJob], *, now: float, api_now_ms: int) -> list[_Recheck]:
        """The listings that would re-read ``unseen``, those that must run first, then by how long they waited."""
        opts = self._options
        cutoff = api_now_ms - int(opts.long_running_seconds * 1000)
        recent = {job_id: tracked for job_id, tracked in unseen.items() if tracked.start_ms >= cutoff}
        old = {job_id: tracked for job_id, tracked in unseen.items() if tracked.start_ms < cutoff}
        rechecks: list[_Recheck] = []

        for group in _recheck_groups(recent, self._last_seen):
            waited = self._waited(group, now)
            starts = [tracked.start_ms for tracked in group.values()]
            job_filter = opts.job_filter(
                start_time=min(starts) / 1000,
                end_time=max(starts) / 1000,
                target_ids=sorted({tracked.target.target_id for tracked in group.values()}),
            )
            rechecks.append(_Recheck(group, job_filter, waited, forced=waited >= opts.recheck_max_seconds))

        waited = self._waited(old, now) if old else 0.0
        if waited >= opts.recheck_max_seconds / 2:
            for group in _recheck_groups(old, {}):
                job_filter = opts.job_filter(
                    start_time=min(tracked.start_ms for tracked in group.values()) / 1000,
                    status="running",
                    target_ids=sorted({tracked.target.target_id for tracked in group.values()}),
                )
                rechecks.append(_Recheck(group, job_filter, waited, forced=waited >= opts.recheck_max_seconds))
        rechecks.sort(key=lambda recheck: (not recheck.forced, -recheck.waited))
        return rechecks

    async def _recheck(
        self,
        work: PollWork,
        unseen: dict[str, TrackedJob],
        seen: set[str],
        stats: _PollStats,
        *,
        now: float,
        api_now_ms: int,
        lookback_floor_ms: int,
    ) -> None:
        """Re-read followed jobs the window listing did not return, within the poll's call budget.

        Whatever a complete listing did not return is read one by one, so nothing depends
        on how the API interprets EndTime or on a job having left the running state.
        """
        for recheck in self._rechecks(unseen, now=now, api_now_ms=api_now_ms):
            if not recheck.forced and stats.spare_calls() < 1:
                continue
            if recheck.forced:
                stats.forced += 1
            complete = True
            pages = self._client.list_synchronization_job_pages(self.instance_id, recheck.job_filter)
            async with contextlib.aclosing(pages):
                async for page in pages:
                    stats.calls += 1
                    self._note_anomalies(page.anomalies, set(), stats)
                    for job in page.jobs:
                        # Only followed jobs: others in the range were settled long ago and
                        # their ids may have been forgotten, so applying them could count twice.
                        if job.job_id in unseen and job.job_id not in seen:
                            seen.add(job.job_id)
                            self._apply(
                                work, job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats
                            )
                    if page.next_token and not recheck.forced and stats.spare_calls() < 1:
                        complete = False
                        break
            if not complete:
                continue
            for job_id in recheck.jobs:
                if job_id not in seen:
                    await self._read_one(work, job_id, seen, stats, now=now, lookback_floor_ms=lookback_floor_ms)

    async def _check_late(
        self,
        work: PollWork,
        window_start_ms: int,
        seen: set[str],
        stats: _PollStats,
        *,
        now: float,
        lookback_floor_ms: int,
    ) -> None:
        """Find jobs that appeared behind the window after it had passed them, and count them.

        One call asks only for ``TotalCount`` between ``cursor - late_horizon`` and the window;
        only when that exceeds the jobs already known there is the range listed. Paid from the
        poll's spare calls like re-reads, and made at least every ``recheck_max_seconds``.
        """
        opts = self._options
        cursor_ms = work.base.cursor_ms
        if cursor_ms is None:
            self._last_late_check = now  # a cold start has just read the whole lookback window
            return
        waited = now - self._last_late_check
        forced = waited >= opts.recheck_max_seconds
        if not forced and (waited < opts.recheck_max_seconds / 2 or stats.spare_calls() < 1):
            return
        start_ms = max(cursor_ms - int(opts.late_horizon_seconds * 1000), lookback_floor_ms)
        end_ms = window_start_ms - 1
        if end_ms < start_ms:
            return
        self._last_late_check = now
        stats.forced += forced
        job_filter = opts.job_filter(start_time=start_ms / 1000, end_time=end_ms / 1000)
        total = await self._count(job_filter, stats)
        known = sum(1 for start in work.counted.values() if start_ms <= start <= end_ms) + sum(
            1
            for job_id, tracked in work.tracked.items()
            if start_ms <= tracked.start_ms <= end_ms and job_id not in work.counted
        )
        if total is None or total <= known:
            return
        pages = self._client.list_synchronization_job_pages(self.instance_id, job_filter)
        async with contextlib.aclosing(pages):
            async for page in pages:
                stats.calls += 1
                self._note_anomalies(page.anomalies, seen, stats)
                for job in page.jobs:
                    if job.job_id in work.counted or job.job_id in work.tracked or job.job_id in seen:
                        continue
                    seen.add(job.job_id)
                    self._note_anomalies(
                        [Anomaly(job.job_id, "late", f"StartTime {round(job.start_time * 1000)} is behind the window")],
                        seen,
                        stats,
                    )
                    self._apply(work, job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)

    async def _count(self, job_filter: JobFilter, stats: _PollStats) -> int | None:
        """The API's ``TotalCount`` for ``job_filter``, for the price of one smallest page."""
        pages = self._client.list_synchronization_job_pages(self.instance_id, job_filter, max_results=1)
        async with contextlib.aclosing(pages):
            async for page in pages:
                stats.calls += 1
                return page.total_count
        return None

    async def _read_one(
        self, work: PollWork, job_id: str, seen: set[str], stats: _PollStats, *, now: float, lookback_floor_ms: int
    ) -> None:
        stats.calls += 1
        stats.individually += 1
        try:
            examined = await self._client.get_synchronization_job(self.instance_id, job_id)
        except ApiError as exc:
            if not exc.code.startswith("EntityNotExists"):
                raise
            log.warning(
                "followed job no longer exists; it will not be counted",
                extra={"instance_id": self.instance_id, "job_id": job_id},
            )
            work.tracked.pop(job_id, None)
            return
        seen.add(job_id)
        self._note_anomalies(examined.anomalies, seen, stats)
        if examined.job is not None:  # a quarantined job stays followed and is read again
            self._apply(work, examined.job, cold=False, now=now, lookback_floor_ms=lookback_floor_ms, stats=stats)

    def _note_anomalies(self, anomalies: Iterable[Anomaly], seen: set[str], stats: _PollStats) -> None:
        """Log and count each odd job once (again only if it turns odd another way)."""
        for anomaly in anomalies:
            if anomaly.job_id is not None:
                seen.add(anomaly.job_id)  # listed, even if not usable: the TotalCount check counts it
            key = (anomaly.job_id or anomaly.detail, anomaly.reason)
            if key in self._reported:
                continue
            self._reported[key] = None
            if len(self._reported) > REPORTED_LIMIT:
                self._reported.popitem(last=False)
            stats.anomalies[anomaly.reason] += 1
            log.warning(
                _ANOMALY_MESSAGES.get(anomaly.reason, "job has a problem; counted without the bad part"),
                extra={
                    "instance_id": self.instance_id,
                    "job_id": anomaly.job_id,
                    "reason": anomaly.reason,
                    "problem": anomaly.detail,
                },
            )

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
            if job.is_final:
                work.counted[job.job_id] = round(job.start_time * 1000)  # settled, so the count checks add up
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
        if start_ms < lookback_floor_ms:
            return
        # A status the documentation does not list (the console also shows "init") is
        # followed like a running job and exported under its own name.
        status = job.status
        if previous is not None and previous.status == status:
            return
        if status not in IN_PROGRESS_STATUSES:
            log.warning(
                "job has an undocumented status; followed until it is final",
                extra={"instance_id": self.instance_id, "job_id": job.job_id, "status": job.status},
            )
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


def _recheck_groups(jobs: dict[str, TrackedJob], last_seen: dict[str, float]) -> list[dict[str, TrackedJob]]:
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
    chars = sum(map(_query_chars, distinct))
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
            and (len(targets) == per_group or group_chars + _query_chars(target_id) > TARGET_ID_CHARS_PER_QUERY)
        ):
            groups.append({})
            targets = set()
            group_chars = 0
        groups[-1][job_id] = tracked
        if target_id not in targets:
            targets.add(target_id)
            group_chars += _query_chars(target_id)
    return groups


def _query_chars(target_id: str) -> int:
    """Characters one target id adds to a signed query: ``&TargetIds.100=`` and the percent-encoded id."""
    return 16 + len(quote(target_id, safe="-_.~"))


@dataclass(slots=True)
class _PollStats:
    calls: int = 0
    window_calls: int = 0
    read: int = 0
    counted: int = 0
    changed: int = 0
    individually: int = 0
    forced: int = 0
    anomalies: Counter[str] = dataclasses.field(default_factory=Counter)

    def spare_calls(self) -> int:
        """Calls this poll may still make and stay within one per 100 jobs learned, plus one."""
        return math.ceil(self.changed / MAX_PAGE_SIZE) + 1 - self.calls
