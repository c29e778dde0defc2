"""Wires the pieces together: one poller per instance on a schedule, snapshots, the HTTP server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.api.client import EiamClient
from exporter.api.credentials import CredentialsError
from exporter.api.errors import EiamError, bounded_code
from exporter.api.models import UdPullConfiguration
from exporter.collect.counting import TargetKey, TargetTally
from exporter.collect.poller import ANOMALY_REASONS, InstancePoller, PollResult
from exporter.collect.store import StateError, StateStore
from exporter.metrics.catalogue import API_DURATION_BUCKETS, bucket_index
from exporter.metrics.snapshot import ApiRequestView, InstanceView, PullConfigView, Snapshot, TargetInfo, TargetView
from exporter.pullconfig.config import max_interval_seconds

log = logging.getLogger(__name__)


def pull_config_view(config: UdPullConfiguration, *, now: float) -> PullConfigView:
    rule = config.pull_protected_rule
    thresholds: dict[str, int] = {}
    if rule is not None:
        for object_type, value in (
            ("user", rule.user_deleted_threshold),
            ("organizational_unit", rule.organizational_unit_deleted_threshold),
            ("group", rule.group_deleted_threshold),
        ):
            if value is not None:
                thresholds[object_type] = value
    periodic_on = config.periodic_sync_status == "enabled"
    periodic = config.periodic_sync_config
    interval = None
    if periodic_on and periodic is not None:
        interval = max_interval_seconds(periodic.model_dump(by_alias=True, exclude_none=True), now=now)
    return PullConfigView(
        thresholds=MappingProxyType(thresholds),
        features=MappingProxyType(
            {
                "incremental_callback": config.incremental_callback_status == "enabled",
                "periodic_sync": periodic_on,
                "group_sync": config.group_sync_status == "enabled",
            }
        ),
        max_interval_seconds=interval,
    )


class ApiStats:
    """The exporter's own API request counters; fed by the client's observer hook."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self._codes: dict[tuple[str, str], set[str]] = {}
        self.durations: dict[str, tuple[list[int], float, int]] = {}

    def observe(self, instance_id: str, action: str, code: str, duration_seconds: float) -> None:
        codes = self._codes.setdefault((instance_id, action), set())
        code = bounded_code(code, codes)
        codes.add(code)
        key = (instance_id, action, code)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets, total, count = self.durations.get(action) or ([0] * (len(API_DURATION_BUCKETS) + 1), 0.0, 0)
        buckets[bucket_index(API_DURATION_BUCKETS, duration_seconds)] += 1
        self.durations[action] = (buckets, total + duration_seconds, count + 1)

    def view(self) -> ApiRequestView:
        return ApiRequestView(
            counts=MappingProxyType(dict(self.counts)),
            durations=MappingProxyType({a: (tuple(b), s, c) for a, (b, s, c) in self.durations.items()}),
        )


@dataclass(slots=True)
class InstanceHealth:
    polled: bool = False
    up: bool = False
    last_success: float | None = None
    last_error: str | None = None
    poll_duration: float | None = None
    poll_failures: int = 0
    target_info: dict[tuple[str, str], TargetInfo] = field(default_factory=dict)
    target_info_failures: int = 0
    pull_configs: dict[str, PullConfigView] = field(default_factory=dict)
    pull_config_failures: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANOMALY_REASONS, 0))


class Exporter:
    """Holds the pollers and the current snapshot; the HTTP server only reads ``snapshot``."""

    def __init__(
        self,
        *,
        client: EiamClient,
        store: StateStore,
        pollers: dict[str, InstancePoller],
        api_stats: ApiStats,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.pollers = pollers
        self.api_stats = api_stats
        self._clock = clock
        self._monotonic = monotonic
        self.health = {instance_id: InstanceHealth() for instance_id in pollers}
        self._version = 0
        # Views of unchanged targets are reused, so the renderer can keep their lines.
        self._views: dict[
            tuple[str, TargetKey], tuple[TargetTally, tuple[tuple[str, int], ...], float | None, TargetView]
        ] = {}
        self.snapshot = self._build()
        # Called with each new snapshot (the HTTP layer prepares its exposition).
        self.listeners: list[Callable[[Snapshot], None]] = []
        # The scheduler runs polls as its own tasks; these are the ones running now.
        self._polls_in_flight: set[asyncio.Task[Any]] = set()

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

    async def _poll(self, instance_id: str) -> PollResult | None:
        health = self.health[instance_id]
        started = self._monotonic()
        try:
            result = await self.pollers[instance_id].poll()
        except (EiamError, StateError) as exc:
            log.error("poll failed", extra={"instance_id": instance_id, "error": str(exc)})  # noqa: TRY400 - the error text is enough, a traceback would hide it
            self._poll_failed(health, str(exc), started)
            return None
        except Exception as exc:
            # A bug must still show as a failed poll (idaas_up 0, counted), not vanish into the scheduler's log.
            log.exception("poll failed unexpectedly", extra={"instance_id": instance_id})
            self._poll_failed(health, f"internal error: {type(exc).__name__}: {str(exc)[:200]}", started)
            return None
        for reason, count in result.anomalies.items():
            health.anomalies[reason] = health.anomalies.get(reason, 0) + count
        health.polled = True
        health.up = True
        health.last_error = None
        health.last_success = self._clock()
        health.poll_duration = self._monotonic() - started
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
                "forced_rechecks": result.forced_rechecks,
                "jobs_deferred": result.jobs_deferred,
                "cold": result.cold,
                "seconds": round(health.poll_duration, 3),
            },
        )
        self.publish()
        return result

    def _poll_failed(self, health: InstanceHealth, error: str, started: float) -> None:
        health.polled = True
        health.up = False
        health.last_error = error
        health.poll_failures += 1
        health.poll_duration = self._monotonic() - started
        self.publish()

    async def refresh_targets(self, instance_id: str) -> None:
        """List identity providers and applications for ``idaas_sync_target_info``."""
        health = self.health[instance_id]
        info: dict[tuple[str, str], TargetInfo] = {}
        inbound: list[str] = []
        try:
            async for idp in self.client.list_identity_providers(instance_id):
                info[("identity_provider", idp.identity_provider_id)] = TargetInfo(
                    idp.identity_provider_name or idp.identity_provider_id, idp.provider_kind
                )
                if idp.ud_pull_status != "disabled":
                    inbound.append(idp.identity_provider_id)
            async for app in self.client.list_applications(instance_id):
                info[("application", app.application_id)] = TargetInfo(
                    app.application_name or app.application_id, "application"
                )
        except CredentialsError:
            return  # every poll fails the same way and reports it; one line per cause is enough
        except EiamError as exc:
            health.target_info_failures += 1
            log.warning(
                "listing target names failed; keeping the previous names",
                extra={"instance_id": instance_id, "error": str(exc)},
            )
            return
        health.target_info = info
        await self._refresh_pull_configs(instance_id, inbound)
        self.publish()

    async def _refresh_pull_configs(self, instance_id: str, identity_provider_ids: list[str]) -> None:
        """Read each inbound identity provider's configuration; one that cannot be read is counted and skipped."""
        health = self.health[instance_id]
        configs: dict[str, PullConfigView] = {}
        for idp_id in identity_provider_ids:
            try:
                config = await self.client.get_ud_pull_configuration(instance_id, idp_id)
                configs[idp_id] = pull_config_view(config, now=self._clock())
            except (EiamError, ValueError) as exc:
                code = exc.metric_code if isinstance(exc, EiamError) else "InvalidSchedule"
                code = bounded_code(code, health.pull_config_failures)
                health.pull_config_failures[code] = health.pull_config_failures.get(code, 0) + 1
                log.warning(
                    "inbound-sync configuration not readable; skipped",
                    extra={"instance_id": instance_id, "identity_provider_id": idp_id, "error": str(exc)},
                )
                previous = health.pull_configs.get(idp_id)
                if previous is not None:
                    configs[idp_id] = previous
        health.pull_configs = configs

    def publish(self) -> None:
        self.snapshot = self._build()
        for listener in self.listeners:
            listener(self.snapshot)

    def _build(self) -> Snapshot:
        self._version += 1
        instances = {}
        for instance_id, poller in self.pollers.items():
            health = self.health[instance_id]
            state = poller.state
            in_progress: dict[TargetKey, dict[str, int]] = {}
            oldest: dict[TargetKey, float] = {}
            for tracked in state.tracked.values():
                counts = in_progress.setdefault(tracked.target, {})
                counts[tracked.status] = counts.get(tracked.status, 0) + 1
                start = tracked.start_ms / 1000
                oldest[tracked.target] = min(oldest.get(tracked.target, start), start)
            targets = {}
            for key, tally in state.targets.items():
                progress = tuple(sorted(in_progress.get(key, {}).items()))
                first = oldest.get(key)
                cached = self._views.get((instance_id, key))
                if cached is not None and cached[0] is tally and cached[1] == progress and cached[2] == first:
                    targets[key] = cached[3]
                    continue
                view = TargetView.of(tally, dict(progress), first)
                self._views[(instance_id, key)] = (tally, progress, first, view)
                targets[key] = view
            instances[instance_id] = InstanceView(
                instance_id=instance_id,
                up=health.up,
                polled=health.polled,
                last_success=health.last_success,
                last_error=health.last_error,
                poll_duration=health.poll_duration,
                poll_failures=health.poll_failures,
                targets=MappingProxyType(targets),
                target_info=MappingProxyType(dict(health.target_info)),
                target_info_failures=health.target_info_failures,
                pull_configs=MappingProxyType(dict(health.pull_configs)),
                pull_config_failures=MappingProxyType(dict(health.pull_config_failures)),
                anomalies=MappingProxyType(dict(health.anomalies)),
            )
        return Snapshot(self._version, self._clock(), MappingProxyType(instances), self.api_stats.view())

    def schedule(self, scheduler: AsyncIOScheduler, poll_interval: float, target_refresh: float) -> None:
        for instance_id in self.pollers:
            scheduler.add_job(
                self.poll,
                "interval",
                seconds=poll_interval,
                args=[instance_id],
                id=f"poll:{instance_id}",
                max_instances=1,
                coalesce=True,
                next_run_time=_now_for_scheduler(),
                misfire_grace_time=max(1, int(poll_interval)),
            )
            scheduler.add_job(
                self.refresh_targets,
                "interval",
                seconds=target_refresh,
                args=[instance_id],
                id=f"targets:{instance_id}",
                max_instances=1,
                coalesce=True,
                next_run_time=_now_for_scheduler(),
            )


def _now_for_scheduler() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)
