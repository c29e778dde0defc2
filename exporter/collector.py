"""Render a :class:`Snapshot` into the Prometheus exposition, once per snapshot.

Metric families are built fresh from the snapshot (never mutated global metric
objects), and the rendered bytes are cached per snapshot version and format, so
a scrape is a dictionary lookup.

Exposition (abridged)::

    idaas_sync_jobs_total{instance_id="i",target_type="identity_provider",target_id="idp_1",
                          direction="ingress",trigger_type="auto",status="failed"} 2
    idaas_sync_last_job_status{...,status="success"} 1
    idaas_up{instance_id="i"} 1
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.snapshot import Snapshot
from exporter.state import ACTIONS, DURATION_BUCKETS, FINAL, OBJECT_TYPES, TRIGGER_TYPES, LastJob

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TARGET_LABELS = ["instance_id", "target_type", "target_id", "direction"]
API_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESULTS = ("success", "failed", "skipped")
IN_PROGRESS = ("pending", "running")


def _refreshed(what: str) -> str:
    return f"{what} Refreshed every poll interval from the IDaaS API, not at scrape time."


class SnapshotCollector(Collector):
    """Yields the metric families of one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        jobs = CounterMetricFamily(
            "idaas_sync_jobs",
            _refreshed("Finished synchronization jobs, counted once each."),
            labels=[*TARGET_LABELS, "trigger_type", "status"],
        )
        objects = CounterMetricFamily(
            "idaas_sync_objects",
            _refreshed("Objects processed by finished jobs, by object type, action and result."),
            labels=[*TARGET_LABELS, "object_type", "action", "result"],
        )
        errors = CounterMetricFamily(
            "idaas_sync_job_errors",
            _refreshed("Finished jobs that reported an error code."),
            labels=[*TARGET_LABELS, "error_code"],
        )
        duration = HistogramMetricFamily(
            "idaas_sync_job_duration_seconds",
            _refreshed("Duration of finished jobs (EndTime - StartTime)."),
            labels=TARGET_LABELS,
        )
        last_objects = GaugeMetricFamily(
            "idaas_sync_last_job_objects",
            _refreshed("Objects processed by the latest finished job."),
            labels=[*TARGET_LABELS, "object_type", "action", "result"],
        )
        last_status = GaugeMetricFamily(
            "idaas_sync_last_job_status",
            _refreshed("1 for the status of the latest finished job, 0 for the others."),
            labels=[*TARGET_LABELS, "status"],
        )
        last_start = GaugeMetricFamily(
            "idaas_sync_last_job_start_timestamp_seconds",
            _refreshed("Start time of the latest finished job."),
            labels=TARGET_LABELS,
        )
        last_end = GaugeMetricFamily(
            "idaas_sync_last_job_end_timestamp_seconds",
            _refreshed("End time of the latest finished job."),
            labels=TARGET_LABELS,
        )
        last_success = GaugeMetricFamily(
            "idaas_sync_last_success_timestamp_seconds",
            _refreshed("End time of the latest successful job."),
            labels=TARGET_LABELS,
        )
        in_progress = GaugeMetricFamily(
            "idaas_sync_jobs_in_progress",
            _refreshed("Jobs currently pending or running."),
            labels=[*TARGET_LABELS, "status"],
        )
        oldest = GaugeMetricFamily(
            "idaas_sync_oldest_in_progress_start_timestamp_seconds",
            _refreshed("Start time of the oldest job still pending or running."),
            labels=TARGET_LABELS,
        )
        info = GaugeMetricFamily(
            "idaas_sync_target_info",
            _refreshed("Names of synchronization targets; always 1."),
            labels=["instance_id", "target_type", "target_id", "target_name", "provider_type"],
        )
        up = GaugeMetricFamily("idaas_up", "1 when the last poll of the instance succeeded.", labels=["instance_id"])
        last_poll = GaugeMetricFamily(
            "idaas_exporter_last_poll_success_timestamp_seconds",
            "When the last successful poll finished.",
            labels=["instance_id"],
        )
        poll_duration = GaugeMetricFamily(
            "idaas_exporter_poll_duration_seconds", "How long the last poll took.", labels=["instance_id"]
        )
        poll_failures = CounterMetricFamily(
            "idaas_exporter_poll_failures",
            "Polls that failed (the API could not be read or state not saved).",
            labels=["instance_id"],
        )
        for instance_id, view in snap.instances.items():
            up.add_metric([instance_id], 1.0 if view.up else 0.0)
            if view.last_success is not None:
                last_poll.add_metric([instance_id], view.last_success)
            if view.poll_duration is not None:
                poll_duration.add_metric([instance_id], view.poll_duration)
            poll_failures.add_metric([instance_id], view.poll_failures)
            for (target_type, target_id), named in view.target_info.items():
                info.add_metric([instance_id, target_type, target_id, named.name, named.provider_type], 1.0)
            for key, target in view.targets.items():
                labels = [instance_id, key.target_type, key.target_id, key.direction]
                triggers = sorted(set(TRIGGER_TYPES) | {t for t, _ in target.jobs})
                for trigger in triggers:
                    for status in sorted(set(FINAL) | {s for t, s in target.jobs if t == trigger}):
                        jobs.add_metric([*labels, trigger, status], target.jobs.get((trigger, status), 0))
                for object_type, action, result in _object_keys(target.objects, target.last_job):
                    objects.add_metric(
                        [*labels, object_type, action, result], target.objects.get((object_type, action, result), 0)
                    )
                    last_value = target.last_job.objects.get((object_type, action, result), 0) if target.last_job else 0
                    if target.last_job is not None:
                        last_objects.add_metric([*labels, object_type, action, result], last_value)
                for code, count in sorted(target.errors.items()):
                    errors.add_metric([*labels, code], count)
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip((*DURATION_BUCKETS, float("inf")), target.duration_buckets, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else _fmt(bound), cumulative))
                duration.add_metric(labels, buckets, target.duration_sum)
                if target.last_job is not None:
                    for status in FINAL:
                        last_status.add_metric([*labels, status], 1.0 if target.last_job.status == status else 0.0)
                    last_start.add_metric(labels, target.last_job.start)
                    if target.last_job.end is not None:
                        last_end.add_metric(labels, target.last_job.end)
                if target.last_success_end is not None:
                    last_success.add_metric(labels, target.last_success_end)
                for status in IN_PROGRESS:
                    in_progress.add_metric([*labels, status], target.in_progress.get(status, 0))
                if target.oldest_in_progress_start is not None:
                    oldest.add_metric(labels, target.oldest_in_progress_start)
        yield from self._pull_config()
        yield from (jobs, objects, errors, duration, last_objects, last_status, last_start, last_end, last_success)
        yield from (in_progress, oldest, info, up, last_poll, poll_duration, poll_failures)

        requests = CounterMetricFamily(
            "idaas_exporter_api_requests",
            "HTTP attempts to the IDaaS API by action and outcome (OK, the API error Code, or a transport error).",
            labels=["instance_id", "action", "code"],
        )
        for (instance_id, action, code), count in sorted(snap.api.counts.items()):
            requests.add_metric([instance_id, action, code], count)
        request_duration = HistogramMetricFamily(
            "idaas_exporter_api_request_duration_seconds",
            "Duration of HTTP attempts to the IDaaS API.",
            labels=["action"],
        )
        for action, (counts, total, _count) in sorted(snap.api.durations.items()):
            cumulative = 0
            buckets = []
            for bound, count in zip((*API_DURATION_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else _fmt(bound), cumulative))
            request_duration.add_metric([action], buckets, total)
        build = GaugeMetricFamily("idaas_exporter_build_info", "Exporter version; always 1.", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield from (requests, request_duration, build)

    def _pull_config(self) -> Iterator[Metric]:
        refreshed = "Read with GetIdentityProviderUdPullConfiguration every target refresh interval."
        threshold = GaugeMetricFamily(
            "idaas_sync_pull_deletion_threshold",
            f"Deletion protection threshold of an identity provider's inbound sync. {refreshed}",
            labels=["instance_id", "target_id", "object_type"],
        )
        feature = GaugeMetricFamily(
            "idaas_sync_pull_feature_enabled",
            f"1 when an inbound-sync feature is enabled, else 0. {refreshed}",
            labels=["instance_id", "target_id", "feature"],
        )
        interval = GaugeMetricFamily(
            "idaas_sync_pull_schedule_max_interval_seconds",
            f"Longest gap between two scheduled inbound syncs; absent when periodic sync is off. {refreshed}",
            labels=["instance_id", "target_id"],
        )
        failures = CounterMetricFamily(
            "idaas_exporter_pull_config_failures",
            "Inbound-sync configurations that could not be read (skipped), by error code.",
            labels=["instance_id", "code"],
        )
        for instance_id, view in self._snapshot.instances.items():
            for idp_id, config in sorted(view.pull_configs.items()):
                for object_type, value in sorted(config.thresholds.items()):
                    threshold.add_metric([instance_id, idp_id, object_type], value)
                for name, enabled in sorted(config.features.items()):
                    feature.add_metric([instance_id, idp_id, name], 1.0 if enabled else 0.0)
                if config.max_interval_seconds is not None:
                    interval.add_metric([instance_id, idp_id], config.max_interval_seconds)
            for code, count in sorted(view.pull_config_failures.items()):
                failures.add_metric([instance_id, code], count)
        yield from (threshold, feature, interval, failures)


def _fmt(bound: float) -> str:
    return repr(float(bound))


_STANDARD_OBJECT_KEYS = frozenset((o, a, r) for o in OBJECT_TYPES for a in ACTIONS for r in RESULTS)


def _object_keys(counted: Mapping[tuple[str, str, str], int], last_job: LastJob | None) -> list[tuple[str, str, str]]:
    """Every standard combination (so each series exists at 0) plus any new key the API sent."""
    keys = set(_STANDARD_OBJECT_KEYS)
    keys.update(counted)
    if last_job is not None:
        keys.update(last_job.objects)
    return sorted(keys)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    gzipped: bool


class ExpositionCache:
    """The latest snapshot's exposition, rendered at most once per format and encoding."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._cache: dict[tuple[bool, bool], Rendered] = {}
        self.renders = 0

    def get(self, snapshot: Snapshot, *, openmetrics: bool, gzipped: bool) -> Rendered:
        key = (openmetrics, gzipped)
        with self._lock:
            if snapshot.version != self._version:
                self._version = snapshot.version
                self._cache = {}
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            plain = self._cache.get((openmetrics, False))
            if plain is None:
                plain = Rendered(
                    render(snapshot, openmetrics=openmetrics),
                    OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
                    False,
                )
                self.renders += 1
                self._cache[(openmetrics, False)] = plain
            if not gzipped:
                return plain
            packed = Rendered(gzip.compress(plain.body, compresslevel=6), plain.content_type, True)
            self._cache[key] = packed
            return packed


def render(snapshot: Snapshot, *, openmetrics: bool = False) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    if openmetrics:
        body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return body
    return generate_latest(registry)
