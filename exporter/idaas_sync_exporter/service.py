"""The running exporter: polls each instance on a schedule, keeps its health, publishes snapshots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from idaas_sync_exporter.api.errors import EiamError
from idaas_sync_exporter.collect.finished import write_events
from idaas_sync_exporter.collect.health import InstanceHealth
from idaas_sync_exporter.collect.poller import InstancePoller, PollResult
from idaas_sync_exporter.collect.store import StateError, StateStore
from idaas_sync_exporter.collect.targets import TargetCatalogue
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.metrics.builder import InstanceSources, SnapshotBuilder
from idaas_sync_exporter.metrics.snapshot import Snapshot

log = logging.getLogger(__name__)


class Exporter:
    """Holds the pollers and the current snapshot; the HTTP server only reads ``snapshot``."""

    def __init__(
        self,
        *,
        store: StateStore,
        pollers: dict[str, InstancePoller],
        api_stats: ApiStats,
        poll_intervals: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.pollers = pollers
        # Seconds between polls of an instance that has its own; the others take schedule()'s.
        self.poll_intervals = dict(poll_intervals or {})
        self.api_stats = api_stats
        self._clock = clock
        self._monotonic = monotonic
        self.health = {instance_id: InstanceHealth() for instance_id in pollers}
        self.targets = {
            instance_id: TargetCatalogue(instance_id, poller.client, clock=clock)
            for instance_id, poller in pollers.items()
        }
        self._builder = SnapshotBuilder()
        self.snapshot = self._build()
        # Called with each new snapshot (the HTTP layer prepares its exposition).
        self.listeners: list[Callable[[Snapshot], None]] = []
        # The scheduler runs polls as its own tasks; these are the ones running now.
        self._polls_in_flight: set[asyncio.Task[Any]] = set()
        # Target refreshes the scheduler runs now; like polls, ended by stop_jobs() on shutdown.
        self._refreshes_in_flight: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def poll(self, instance_id: str) -> PollResult | None:
        """Poll one instance; failures are logged and counted, never raised."""
        task = asyncio.current_task()
        if task is not None:
            self._polls_in_flight.add(task)
        try:
            return await self._poll(instance_id)
        finally:
            if task is not None:
                self._polls_in_flight.discard(task)

    @property
    def polls_in_flight(self) -> int:
        return len(self._polls_in_flight)

    async def wait_for_polls(self, limit_seconds: float = 5.0) -> None:
        """On shutdown, let polls in flight commit their state instead of cutting them off.

        Briefly: a poll normally ends in well under a second, and one still retrying
        after that is simply redone on the next start, while container runtimes send
        SIGKILL 10 seconds after SIGTERM.
        """
        running = set(self._polls_in_flight)
        if running:
            await asyncio.wait(running, timeout=limit_seconds)

    async def stop_jobs(self, limit_seconds: float = 5.0) -> None:
        """On shutdown: polls in flight get ``limit_seconds`` to commit, then they and target refreshes end.

        The scheduled jobs end quietly (see :meth:`_scheduled`): a poll cut off is simply redone
        at the next start, which is no error to log.
        """
        self._stopping = True
        await self.wait_for_polls(limit_seconds)
        running = {task for task in self._polls_in_flight | self._refreshes_in_flight if not task.done()}
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def _scheduled(self, job: str, instance_id: str) -> None:
        """What the scheduler runs: a poll or a target refresh, ended without an error by stop_jobs()."""
        try:
            if job == "poll":
                await self.poll(instance_id)
            else:
                await self._tracked_refresh(instance_id)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.info(
                "cut off by the shutdown; redone at the next start", extra={"instance_id": instance_id, "job": job}
            )

    async def _tracked_refresh(self, instance_id: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._refreshes_in_flight.add(task)
        try:
            await self.refresh_targets(instance_id)
        finally:
            if task is not None:
                self._refreshes_in_flight.discard(task)

    async def _poll(self, instance_id: str) -> PollResult | None:
        health = self.health[instance_id]
        started = self._monotonic()
        try:
            result = await self.pollers[instance_id].poll()
        except (EiamError, StateError) as exc:
            log.error("poll failed", extra={"instance_id": instance_id, "error": str(exc)})  # noqa: TRY400 - the error text is enough, a traceback would hide it
            health.failed(str(exc), duration=self._monotonic() - started)
            self.publish()
            return None
        except Exception as exc:
            # A bug must still show as a failed poll (idaas_up 0, counted), not vanish into the scheduler's log.
            log.exception("poll failed unexpectedly", extra={"instance_id": instance_id})
            error = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
            health.failed(error, duration=self._monotonic() - started)
            self.publish()
            return None
        health.succeeded(at=self._clock(), duration=self._monotonic() - started, anomalies=dict(result.anomalies))
        # Scrapes see the poll's counts first; its events follow, then the line that closes the poll.
        self.publish()
        # After the commit (poll() returned): a restart never repeats an event; a crash between
        # the commit and these lines loses this poll's events (docs/counting.md).
        await write_events(instance_id, result.finished, self.targets[instance_id].names)
        log.info(
            "poll finished",
            extra={
                "instance_id": instance_id,
                "jobs_read": result.jobs_read,
                "jobs_counted": result.jobs_counted,
                "api_calls": result.api_calls,
                "jobs_changed": result.jobs_changed,
                "window_calls": result.window_calls,
                "recheck_calls": result.recheck_calls,
                "late_check_calls": result.late_check_calls,
                "forced_rechecks": result.forced_rechecks,
                "jobs_deferred": result.jobs_deferred,
                "cold": result.cold,
                "seconds": round(health.poll_duration or 0.0, 3),
            },
        )
        return result

    async def refresh_targets(self, instance_id: str) -> None:
        """List identity providers and applications for ``idaas_sync_target_info`` and the pull metrics."""
        if await self.targets[instance_id].refresh():
            self.publish()

    def publish(self) -> None:
        self.snapshot = self._build()
        for listener in self.listeners:
            listener(self.snapshot)

    def _build(self) -> Snapshot:
        sources = {
            instance_id: InstanceSources(poller.state, self.health[instance_id], self.targets[instance_id])
            for instance_id, poller in self.pollers.items()
        }
        return self._builder.build(sources, self.api_stats.view(), now=self._clock())

    def interval_of(self, instance_id: str, default: float) -> float:
        return self.poll_intervals.get(instance_id, default)

    def schedule(self, scheduler: AsyncIOScheduler, poll_interval: float, target_refresh: float) -> None:
        for instance_id in self.pollers:
            for seconds, prefix in (
                (self.interval_of(instance_id, poll_interval), "poll"),
                (target_refresh, "targets"),
            ):
                scheduler.add_job(
                    self._scheduled,
                    "interval",
                    seconds=seconds,
                    args=[prefix, instance_id],
                    id=f"{prefix}:{instance_id}",
                    max_instances=1,
                    coalesce=True,
                    next_run_time=datetime.now(UTC),
                    misfire_grace_time=max(1, int(seconds)),
                )
