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
   batch did not return is read with ``GetSynchronizationJob``. The batches are planned
   in :mod:`idaas_sync_exporter.collect.recheck`.

Re-reads are paid from what the poll learns. A poll makes at most one call more than
one per 100 new or changed jobs it has seen so far; re-reads that would exceed that
wait for a later poll, which by then has more finished jobs to show for its calls.
No followed job waits longer than ``recheck_max_seconds``: when it would, it is read
whatever the cost.

3. Jobs that appear behind the window after it has passed them are looked for with a
   ``TotalCount``-only call over the late horizon; only a mismatch lists that span.
4. A job that cannot be used (no usable id, target, status or start time) is
   quarantined; one with a bad statistic or code is used without it; either is
   reported once. A job dated after the API's clock never moves the cursor.

Counting: a job enters the ``_total`` counters once, when first seen final, and its
id is remembered while the late check can still ask for it. On a cold start, jobs already final
set the last-job gauges but are not counted, so a restart without state never fakes
an ``increase()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from idaas_sync_exporter.api.client import MAX_PAGE_SIZE, EiamClient, JobFilter, JobPage
from idaas_sync_exporter.api.errors import ApiError, EiamError
from idaas_sync_exporter.api.models import IN_PROGRESS_STATUSES, Anomaly, SynchronizationJob
from idaas_sync_exporter.collect.counting import FinishedJob, TargetKey, finish_order

# Re-exported: the settings bound the configured target filters by what one re-read listing can carry.
from idaas_sync_exporter.collect.recheck import Recheck, RecheckPlanner, spare_calls
from idaas_sync_exporter.collect.state import InstanceState, PollWork, TrackedJob
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.pacing import paced

log = logging.getLogger(__name__)

# A job may start this far after the API's own clock (the Date header rounds to seconds)
# before its StartTime is treated as wrong: it then never moves the cursor.
FUTURE_TOLERANCE_MS = 60_000
# Jobs whose anomalies were logged, so that each is logged once, not every poll.
REPORTED_LIMIT = 10_000
# Odd jobs logged one by one in a poll; past this they are counted and summed up in one line, so
# pages full of malformed entries cannot flood the log.
ANOMALIES_LOGGED_PER_POLL = 50
# Jobs of a page applied between returns to the event loop, so that scrapes are served between slices of a page.
JOBS_PER_SLICE = 25
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
    # Finished jobs kept for the recent-jobs page, per instance.
    recent_jobs: int = 100
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
    # Calls spent on the window listing, on re-reading followed jobs behind it, and on the late check
    # (its TotalCount call and any listing of a span it found short).
    window_calls: int = 0
    recheck_calls: int = 0
    late_check_calls: int = 0
    # Followed jobs not seen in this poll, left for a later one (see the module doc).
    jobs_deferred: int = 0
    # Re-read listings made whatever the cost because their jobs had waited recheck_max_seconds.
    forced_rechecks: int = 0
    # Jobs newly found odd in this poll, by reason (quarantined, repaired, dated in the future, late).
    anomalies: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Jobs this poll counted, each once: written as one event each once the poll is committed.
    finished: tuple[FinishedJob, ...] = ()


@dataclass(frozen=True, slots=True)
class PollMemory:
    """What a poll leaves its poller to remember beside the state it commits.

    The poller takes it only once that state is committed (or when there was nothing to commit).
    A poll that fails leaves the poller as it was, so the next poll redoes all of it: it reports
    again the odd jobs whose counts were lost with the failed poll, and runs its late check again.
    """

    # When jobs behind the window were last looked for.
    last_late_check_ms: float
    # The boundary below which settled ids were last let go of.
    pruned_before_ms: float
    # Odd jobs this poll reported first, in the order it did (keys of InstancePoller.reported).
    newly_reported: tuple[tuple[str, str], ...]
    # The jobs the API returned in this poll, and when: followed ones among them are not due for a re-read.
    seen: AbstractSet[str]
    seen_at_ms: int


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
        self.client = client
        self.options = options
        self._store = store
        self._clock = clock
        state = store.load(instance_id)
        if len(state.recent) > options.recent_jobs:  # the limit was lowered since the file was written
            state = dataclasses.replace(state, recent=state.recent[: options.recent_jobs])
        self._state = state
        # What polls leave to remember beside the state (see PollMemory); none of it is persisted.
        # When each followed job was last returned by the API (ms): after a restart every followed job is due at once.
        self.last_seen_ms: dict[str, float] = {}
        # Odd jobs already logged and counted, so that each is logged once, not every poll.
        self.reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        # When jobs behind the window were last checked for: due at once after a restart.
        self.last_late_check_ms = -math.inf
        # The boundary below which settled ids were last let go of: pruned on the first poll.
        self.pruned_before_ms = -math.inf

    @property
    def state(self) -> InstanceState:
        return self._state

    async def poll(self) -> PollResult:
        run = PollRun(self, self._state.begin(), now_ms=round(self._clock() * 1000))
        try:
            async with asyncio.timeout(self.options.deadline_seconds):
                await run.read()
        except TimeoutError:
            raise PollDeadlineError(self.options.deadline_seconds, run.stats.calls) from None
        state = run.finish()
        if run.work.changed_nothing():
            # The committed state already says all this poll learned: no commit, no worker thread.
            state = self._state
        else:
            # The only commit point: a crash before it redoes the poll. Off the event loop,
            # because an fsync can take milliseconds that scrapes should not wait for.
            recent = run.work.new_recent(state)
            await asyncio.to_thread(self._store.save, state, run.work.touched, recent, self.options.recent_jobs)
            self._state = state
        self._remember(run.memory(), state)
        return run.result(state)

    def _remember(self, memory: PollMemory, state: InstanceState) -> None:
        """Take what a poll learned beside ``state``, its committed state; never called for a failed poll."""
        self.last_late_check_ms = memory.last_late_check_ms
        self.pruned_before_ms = memory.pruned_before_ms
        reported = self.reported
        for key in memory.newly_reported:
            reported[key] = None
        while len(reported) > REPORTED_LIMIT:
            reported.popitem(last=False)
        self.last_seen_ms = {
            job_id: memory.seen_at_ms if job_id in memory.seen else self.last_seen_ms.get(job_id, -math.inf)
            for job_id in state.tracked
        }


class PollRun:
    """One poll: what it has read so far and the changes it will commit.

    Reading strategy and counting rules are in the module documentation; the steps are
    :meth:`read_window`, :meth:`recheck`, :meth:`check_late`, then :meth:`finish`. It only reads
    its poller: what the poller is to remember is handed over by :meth:`memory` after the commit.
    """

    def __init__(self, poller: InstancePoller, work: PollWork, *, now_ms: int) -> None:
        self.poller = poller
        self.work = work
        self.now_ms = now_ms
        opts = poller.options
        self.opts = opts
        self.cold = work.base.is_cold
        self.overlap_ms = _ms(opts.overlap_seconds)
        self.lookback_floor_ms = now_ms - _ms(opts.lookback_seconds)
        self.window_start_ms = self.lookback_floor_ms if work.cursor_ms is None else work.cursor_ms - self.overlap_ms
        self.newest_start_ms: int | None = None
        self.seen: set[str] = set()
        self.stats = _PollStats()
        # A cold poll reads a day of jobs and keeps the newest few for the recent-jobs page:
        # a bounded heap of (order, tie-breaker, job, target), made into records at the end.
        self._cold_newest: list[tuple[tuple[int, int, str], int, SynchronizationJob, TargetKey]] = []
        # The poller's memory as this poll leaves it (see PollMemory), until the poller takes it.
        self.last_late_check_ms = poller.last_late_check_ms
        self.pruned_before_ms = poller.pruned_before_ms
        self.newly_reported: dict[tuple[str, str], None] = {}

    @property
    def api_now_ms(self) -> int:
        """The API's clock (its Date header), or ours before it has answered."""
        return self.poller.client.api_now_ms() or self.now_ms

    async def read(self) -> None:
        await self.read_window()
        unseen = {job_id: tracked for job_id, tracked in self.work.tracked.items() if job_id not in self.seen}
        if unseen:
            await self.recheck(unseen)
        await self.check_late()

    def _pages(self, job_filter: JobFilter, max_results: int = MAX_PAGE_SIZE) -> AsyncGenerator[JobPage, None]:
        # Counted jobs need no statistics read again (most of an idle poll's listing).
        return self.poller.client.list_synchronization_job_pages(
            self.poller.instance_id, job_filter, max_results=max_results, counted=self.work.counted
        )

    async def read_window(self) -> None:
        """List every job started since the window start, newest first, applying pages as they arrive.

        Memory holds one page, not the window. A job met twice (pages shift while we read)
        is harmless: a final job is counted once (its id is remembered) and a running one
        is just followed.
        """
        total: int | None = None
        async with contextlib.aclosing(self._pages(self.opts.job_filter(start_ms=self.window_start_ms))) as pages:
            async for page in pages:
                self.stats.calls += 1
                self.stats.window_calls += 1
                if total is None:
                    total = page.total_count
                self.note_anomalies(page.anomalies)
                # The cursor never passes the API's own clock: a job dated in the future would
                # otherwise move every later window past the jobs that really come next.
                latest_plausible_ms = self.api_now_ms + FUTURE_TOLERANCE_MS
                async for job in paced(page.jobs, JOBS_PER_SLICE):
                    if job.start_ms > latest_plausible_ms:
                        self.note_anomalies([Anomaly(job.job_id, "future_start", _after_clock(job))])
                    elif self.newest_start_ms is None or job.start_ms > self.newest_start_ms:
                        self.newest_start_ms = job.start_ms
                    self.seen.add(job.job_id)
                    self.apply(job, cold=self.cold)
                if page.next_token and page.jobs and self.rest_is_known(page, total):
                    break

    def rest_is_known(self, page: JobPage, total: int | None) -> bool:
        """Whether the pages after ``page`` can only hold jobs the last poll already saw.

        They can once the listing has passed the cursor (everything after is older)
        and the jobs left to list, by ``TotalCount``, are exactly the known ones not
        met yet. Followed jobs among them are then re-read like those behind the window.
        """
        base = self.work.base
        if total is None or base.cursor_ms is None:
            return False
        last_ms = page.jobs[-1].start_ms
        if last_ms >= base.cursor_ms:
            return False
        return total - len(self.seen) == _known_between(base, self.window_start_ms, last_ms, skip=self.seen)

    def _recheck_planner(self) -> RecheckPlanner:
        opts = self.opts
        return RecheckPlanner(
            last_seen_ms=self.poller.last_seen_ms,
            now_ms=self.now_ms,
            api_now_ms=self.api_now_ms,
            recheck_max_ms=_ms(opts.recheck_max_seconds),
            long_running_ms=_ms(opts.long_running_seconds),
            job_filter=opts.job_filter,
        )

    async def recheck(self, unseen: dict[str, TrackedJob]) -> None:
        """Re-read followed jobs the window listing did not return, within the poll's call budget.

        Whatever a complete listing did not return is read one by one, so nothing depends
        on how the API interprets EndTime or on a job having left the running state.
        """
        planner = self._recheck_planner()
        if self.stats.spare_calls() < 1 and not planner.any_due(unseen):
            return  # no call to spare and none is due: planning the listings would be wasted work
        for recheck in planner.plan(unseen):
            if not recheck.forced and self.stats.spare_calls() < 1:
                continue
            self.stats.forced += recheck.forced
            if not await self._list_followed(recheck, unseen):
                continue
            for job_id in recheck.jobs:
                if job_id not in self.seen:
                    await self.read_one(job_id)

    async def _list_followed(self, recheck: Recheck, unseen: dict[str, TrackedJob]) -> bool:
        """Apply what one re-read listing returns; False when it stopped early for lack of calls."""
        async with contextlib.aclosing(self._pages(recheck.job_filter)) as pages:
            async for page in pages:
                self.stats.calls += 1
                self.note_anomalies(page.anomalies, mark_seen=False)
                for job in page.jobs:
                    # Only followed jobs: others in the range were settled long ago and
                    # their ids may have been forgotten, so applying them could count twice.
                    if job.job_id in unseen and job.job_id not in self.seen:
                        self.seen.add(job.job_id)
                        self.apply(job, cold=False)
                if page.next_token and not recheck.forced and self.stats.spare_calls() < 1:
                    return False
        return True

    async def check_late(self) -> None:
        """Find jobs that appeared behind the window after it had passed them, and count them.

        One call asks only for ``TotalCount`` between ``cursor - late_horizon`` and the window;
        only when that exceeds the jobs already known there is the range listed.
        """
        work = self.work
        cursor_ms = work.base.cursor_ms
        if cursor_ms is None:
            self.last_late_check_ms = self.now_ms  # a cold start has just read the whole lookback window
            return
        recheck_max_ms = _ms(self.opts.recheck_max_seconds)
        horizon_ms = _ms(self.opts.late_horizon_seconds)
        waited = self.now_ms - self.last_late_check_ms
        # Paid from spare calls every half recheck maximum; forced (over the call bound) only
        # often enough that every job up to half the horizon late is still inside it.
        forced = waited >= max(recheck_max_ms, horizon_ms / 2)
        if not forced and (waited < recheck_max_ms / 2 or self.stats.spare_calls() < 1):
            return
        start_ms = max(cursor_ms - horizon_ms, self.lookback_floor_ms)
        end_ms = self.window_start_ms - 1
        if end_ms < start_ms:
            return
        self.last_late_check_ms = self.now_ms
        self.stats.forced += forced
        job_filter = self.opts.job_filter(start_ms=start_ms, end_ms=end_ms)
        total = await self.count(job_filter)
        if total is not None and total > _known_between(work, start_ms, end_ms):
            await self._read_late(job_filter)

    async def _read_late(self, job_filter: JobFilter) -> None:
        work = self.work
        async with contextlib.aclosing(self._pages(job_filter)) as pages:
            async for page in pages:
                self.stats.calls += 1
                self.stats.late_check_calls += 1
                self.note_anomalies(page.anomalies)
                for job in page.jobs:
                    if job.job_id in work.counted or job.job_id in work.tracked or job.job_id in self.seen:
                        continue
                    self.seen.add(job.job_id)
                    self.note_anomalies([Anomaly(job.job_id, "late", f"StartTime {job.start_ms} is behind the window")])
                    self.apply(job, cold=False)

    async def count(self, job_filter: JobFilter) -> int | None:
        """The API's ``TotalCount`` for ``job_filter``, for the price of one smallest page."""
        async with contextlib.aclosing(self._pages(job_filter, max_results=1)) as pages:
            async for page in pages:
                self.stats.calls += 1
                self.stats.late_check_calls += 1
                return page.total_count
        return None

    async def read_one(self, job_id: str) -> None:
        self.stats.calls += 1
        self.stats.individually += 1
        poller = self.poller
        try:
            examined = await poller.client.get_synchronization_job(poller.instance_id, job_id)
        except ApiError as exc:
            if not exc.code.startswith("EntityNotExists"):
                raise
            log.warning(
                "followed job no longer exists; it will not be counted",
                extra={"instance_id": poller.instance_id, "job_id": job_id},
            )
            self.work.tracked.pop(job_id, None)
            return
        self.seen.add(job_id)
        self.note_anomalies(examined.anomalies)
        if examined.job is not None:  # a quarantined job stays followed and is read again
            self.apply(examined.job, cold=False)

    def note_anomalies(self, anomalies: Iterable[Anomaly], *, mark_seen: bool = True) -> None:
        """Log and count each odd job once (again only if it turns odd another way)."""
        reported_before = self.poller.reported
        for anomaly in anomalies:
            if anomaly.job_id is not None and mark_seen:
                self.seen.add(anomaly.job_id)  # listed, even if not usable: the TotalCount check counts it
            key = (anomaly.job_id or anomaly.detail, anomaly.reason)
            if key in reported_before or key in self.newly_reported:
                continue
            self.newly_reported[key] = None
            self.stats.anomalies[anomaly.reason] += 1
            if self.stats.anomalies.total() > ANOMALIES_LOGGED_PER_POLL:
                self.stats.anomalies_not_logged += 1
                continue
            log.warning(
                _ANOMALY_MESSAGES.get(anomaly.reason, "job has a problem; counted without the bad part"),
                extra={
                    "instance_id": self.poller.instance_id,
                    "job_id": anomaly.job_id,
                    "reason": anomaly.reason,
                    "problem": anomaly.detail,
                },
            )

    def apply(self, job: SynchronizationJob, *, cold: bool) -> None:
        """What one job as the API shows it now changes: a count when it is first final, else following it."""
        self.stats.read += 1
        work = self.work
        if not self.opts.wanted(job):
            if job.is_final:
                work.counted[job.job_id] = job.start_ms  # settled, so the count checks add up
            return
        key = TargetKey(job.target_type, job.target_id, job.direction)
        if job.is_final:
            self._apply_final(job, key, cold=cold)
            return
        if key not in work.targets:
            work.tally(key)  # all series of a target exist from its first sighting
        if job.job_id in work.counted:
            log.warning(
                "job reported in progress after it was final; keeping the first final result",
                extra={"instance_id": self.poller.instance_id, "job_id": job.job_id, "status": job.status},
            )
            return
        if job.start_ms >= self.lookback_floor_ms:
            self._follow(job, key)

    def _apply_final(self, job: SynchronizationJob, key: TargetKey, *, cold: bool) -> None:
        work = self.work
        if job.job_id in work.counted:
            return
        work.tracked.pop(job.job_id, None)
        tally = work.tally(key)
        work.counted[job.job_id] = job.start_ms
        tally.observe_latest(job)
        self.stats.changed += 1
        if cold:
            self._keep_if_newest(job, key)
            return
        code = tally.count(job)
        self.stats.counted += 1
        finished = FinishedJob.of(job, key, code)
        work.seen_final.append(finished)
        work.counted_final.append(finished)

    def _keep_if_newest(self, job: SynchronizationJob, key: TargetKey) -> None:
        limit = self.opts.recent_jobs
        if limit <= 0:
            return
        entry = (
            finish_order(job.start_ms, job.end_ms, job.job_id),
            self.stats.read,
            job,
            key,
        )
        if len(self._cold_newest) < limit:
            heapq.heappush(self._cold_newest, entry)
        elif entry[0] > self._cold_newest[0][0]:
            heapq.heapreplace(self._cold_newest, entry)

    def _follow(self, job: SynchronizationJob, key: TargetKey) -> None:
        # A status the documentation does not list (the console also shows "init") is
        # followed like a running job and exported under its own name.
        previous = self.work.tracked.get(job.job_id)
        if previous is not None and previous.status == job.status:
            return
        instance_id = self.poller.instance_id
        if job.status not in IN_PROGRESS_STATUSES:
            log.warning(
                "job has an undocumented status; followed until it is final",
                extra={"instance_id": instance_id, "job_id": job.job_id, "status": job.status},
            )
        self.stats.changed += 1
        self.work.tracked[job.job_id] = TrackedJob(key, job.status, job.start_ms)
        age_ms = self.now_ms - job.start_ms
        if age_ms > _ms(self.opts.stuck_after_seconds):
            log.warning(
                "job in progress for longer than the stuck threshold",
                extra={
                    "instance_id": instance_id,
                    "job_id": job.job_id,
                    "target_id": job.target_id,
                    "age_seconds": round(age_ms / 1000),
                },
            )

    def finish(self) -> InstanceState:
        """Let go of jobs past the lookback window, move the cursor, forget ids no check asks for."""
        work = self.work
        if self.stats.anomalies_not_logged:
            log.warning(
                "more odd jobs than are logged one by one in a poll; the rest are counted, not logged",
                extra={
                    "instance_id": self.poller.instance_id,
                    "logged": ANOMALIES_LOGGED_PER_POLL,
                    "not_logged": self.stats.anomalies_not_logged,
                },
            )
        for _, _, job, key in self._cold_newest:
            work.seen_final.append(FinishedJob.of(job, key, job.error_code))
        for job_id, tracked in list(work.tracked.items()):
            if tracked.start_ms < self.lookback_floor_ms:
                log.warning(
                    "in-progress job left the lookback window; no longer followed",
                    extra={
                        "instance_id": self.poller.instance_id,
                        "job_id": job_id,
                        "target_id": tracked.target.target_id,
                    },
                )
                del work.tracked[job_id]
        base_ms = self.window_start_ms + self.overlap_ms if work.cursor_ms is None else work.cursor_ms
        work.cursor_ms = base_ms if self.newest_start_ms is None else max(base_ms, self.newest_start_ms)
        # Ids are kept as long as the late check looks back; older ones are never asked for again.
        prune_before = work.cursor_ms - max(_ms(self.opts.late_horizon_seconds), self.overlap_ms + 60_000)
        if prune_before > self.pruned_before_ms:
            # Only when the cursor moved: an idle poll keeps the very same ids (keeping a few
            # ids longer never counts a job twice).
            work.counted = {job_id: start for job_id, start in work.counted.items() if start >= prune_before}
            self.pruned_before_ms = prune_before
        return work.result(self.opts.recent_jobs)

    def memory(self) -> PollMemory:
        """What the poller is to remember of this poll, once its state is committed."""
        return PollMemory(
            last_late_check_ms=self.last_late_check_ms,
            pruned_before_ms=self.pruned_before_ms,
            newly_reported=tuple(self.newly_reported),
            seen=self.seen,
            seen_at_ms=self.now_ms,
        )

    def result(self, state: InstanceState) -> PollResult:
        stats = self.stats
        return PollResult(
            jobs_read=stats.read,
            jobs_counted=stats.counted,
            api_calls=stats.calls,
            cold=self.cold,
            fetched_individually=stats.individually,
            jobs_changed=stats.changed,
            window_calls=stats.window_calls,
            recheck_calls=stats.calls - stats.window_calls - stats.late_check_calls,
            late_check_calls=stats.late_check_calls,
            jobs_deferred=sum(1 for job_id in state.tracked if job_id not in self.seen),
            forced_rechecks=stats.forced,
            anomalies=dict(stats.anomalies),
            finished=tuple(self.work.counted_final),
        )


def _known_between(
    state: InstanceState | PollWork, lowest_ms: int, highest_ms: int, skip: AbstractSet[str] = frozenset()
) -> int:
    """Jobs the state knows (settled or followed) that started in ``[lowest_ms, highest_ms]``, but for ``skip``."""
    settled = sum(
        1 for job_id, start in state.counted.items() if lowest_ms <= start <= highest_ms and job_id not in skip
    )
    followed = sum(
        1
        for job_id, tracked in state.tracked.items()
        if lowest_ms <= tracked.start_ms <= highest_ms and job_id not in skip and job_id not in state.counted
    )
    return settled + followed


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _after_clock(job: SynchronizationJob) -> str:
    return f"StartTime {job.start_ms} is after the API's clock"


@dataclass(slots=True)
class _PollStats:
    calls: int = 0
    window_calls: int = 0
    late_check_calls: int = 0
    read: int = 0
    counted: int = 0
    changed: int = 0
    individually: int = 0
    forced: int = 0
    anomalies: Counter[str] = dataclasses.field(default_factory=Counter)
    anomalies_not_logged: int = 0

    def spare_calls(self) -> int:
        return spare_calls(self.changed, self.calls)
