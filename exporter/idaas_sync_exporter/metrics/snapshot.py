"""Immutable views the poller publishes and the HTTP server renders.

The poller builds a new :class:`Snapshot` after each poll; nothing in it is ever
mutated afterwards, so a scrape can read it without locks while the next poll runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from idaas_sync_exporter.collect.counting import Exemplar, FailedJob, FinishedJob, LastJob, TargetKey, TargetTally
from idaas_sync_exporter.collect.targets import PullConfigView, TargetInfo


@dataclass(frozen=True, slots=True)
class TargetView:
    jobs: Mapping[tuple[str, str], int]
    objects: Mapping[tuple[str, str, str], int]
    errors: Mapping[str, int]
    duration_buckets: tuple[int, ...]
    duration_sum: float
    duration_count: int
    last_job: LastJob | None
    # Times in seconds, as exported; everything before the snapshot keeps the API's milliseconds.
    last_job_start: float | None
    last_job_end: float | None
    last_success_end: float | None
    in_progress: Mapping[str, int]  # pending/running -> count
    oldest_in_progress_start: float | None
    job_exemplars: Mapping[tuple[str, str], Exemplar] = field(default_factory=dict)
    error_exemplars: Mapping[str, Exemplar] = field(default_factory=dict)
    last_failure: FailedJob | None = None

    @classmethod
    def of(cls, tally: TargetTally, in_progress: Mapping[str, int], oldest_ms: int | None) -> TargetView:
        # No copies: a committed tally is never mutated (a poll copies the targets it touches),
        # so read-only proxies over its dictionaries are enough.
        last = tally.last_job
        return cls(
            jobs=MappingProxyType(tally.jobs),
            objects=MappingProxyType(tally.objects),
            errors=MappingProxyType(tally.errors),
            duration_buckets=tuple(tally.duration_buckets),
            duration_sum=tally.duration_sum,
            duration_count=tally.duration_count,
            last_job=last,
            last_job_start=_seconds(last.start_ms) if last else None,
            last_job_end=_seconds(last.end_ms) if last else None,
            last_success_end=_seconds(tally.last_success_end_ms),
            in_progress=MappingProxyType(dict(in_progress)),
            oldest_in_progress_start=_seconds(oldest_ms),
            job_exemplars=MappingProxyType(tally.job_exemplars),
            error_exemplars=MappingProxyType(tally.error_exemplars),
            last_failure=tally.last_failure,
        )


def _seconds(millis: int | None) -> float | None:
    return None if millis is None else millis / 1000


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance_id: str
    up: bool
    polled: bool  # at least one poll finished (successfully or not)
    last_success: float | None
    last_error: str | None
    poll_duration: float | None
    poll_failures: int
    targets: Mapping[TargetKey, TargetView] = field(default_factory=dict)
    target_info: Mapping[tuple[str, str], TargetInfo] = field(default_factory=dict)
    pull_configs: Mapping[str, PullConfigView] = field(default_factory=dict)
    pull_config_failures: Mapping[str, int] = field(default_factory=dict)  # error code -> count
    target_anomalies: Mapping[str, int] = field(default_factory=dict)  # reason -> targets in the latest listing
    anomalies: Mapping[str, int] = field(default_factory=dict)  # reason -> jobs
    recent_jobs: tuple[FinishedJob, ...] = ()  # newest first


@dataclass(frozen=True, slots=True)
class ApiRequestView:
    counts: Mapping[tuple[str, str, str], int]  # (instance_id, action, code)
    durations: Mapping[str, tuple[tuple[int, ...], float, int]]  # action -> (buckets, sum, count)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    created: float
    instances: Mapping[str, InstanceView]
    api: ApiRequestView
