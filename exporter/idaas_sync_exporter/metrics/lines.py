"""The sample lines of the sync families: which series a target or an instance has, and their text.

Lines are returned per family, encoded, for exposition.py to cache and compress. The two
formats write the same lines except on the counters that carry exemplars (the latest job
that moved each series), which OpenMetrics alone shows; :class:`Lines` holds those
OpenMetrics lines beside the shared ones, only where a target has exemplars.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from idaas_sync_exporter.api.models import FINAL_STATUSES, IN_PROGRESS_STATUSES, TRIGGER_TYPES
from idaas_sync_exporter.collect.counting import Exemplar, TargetKey
from idaas_sync_exporter.metrics import catalogue
from idaas_sync_exporter.metrics.catalogue import STANDARD_OBJECT_KEYS, Family, escape
from idaas_sync_exporter.metrics.snapshot import InstanceView, TargetView

# OpenMetrics bounds an exemplar's label names and values to 128 characters together.
_EXEMPLAR_LABEL_ROOM = 128 - len("job_id")


def exemplar_suffix(exemplar: Exemplar | None) -> str:
    """`` # {job_id="..."} 1 <end time>`` for one counter sample, or "" when there is none to give."""
    if exemplar is None or len(exemplar.job_id) > _EXEMPLAR_LABEL_ROOM:
        return ""
    stamp = "" if exemplar.end_ms is None else " " + catalogue.number(exemplar.end_ms / 1000)
    return f' # {{job_id="{escape(exemplar.job_id)}"}} 1{stamp}'


@dataclass(frozen=True, slots=True)
class Lines:
    """Sample lines per family: ``text`` in both formats, except where ``openmetrics`` has the family's own."""

    text: Mapping[Family, bytes]
    openmetrics: Mapping[Family, bytes]


class _LineWriter:
    """Sample lines grouped by family, in the order they are added."""

    def __init__(self) -> None:
        self.by_family: dict[Family, list[str]] = {}
        self.openmetrics: dict[Family, list[str]] = {}

    def add(self, family: Family, labels: str, value: int | float, suffix: str = "") -> None:
        self.by_family.setdefault(family, []).append(family.line(labels, value, suffix))

    def add_counted(
        self, family: Family, labels: str, value: int, exemplar: Exemplar | None, with_exemplars: bool
    ) -> None:
        """A counter sample, and when the target has exemplars its OpenMetrics line with this one's."""
        line = family.line(labels, value)
        self.by_family.setdefault(family, []).append(line)
        if with_exemplars:
            self.openmetrics.setdefault(family, []).append(line[:-1] + exemplar_suffix(exemplar) + "\n")

    def extend(self, family: Family, lines: list[str]) -> None:
        self.by_family.setdefault(family, []).extend(lines)

    def encoded(self) -> Lines:
        def encode(by_family: dict[Family, list[str]]) -> Mapping[Family, bytes]:
            return {family: "".join(lines).encode() for family, lines in by_family.items()}

        return Lines(encode(self.by_family), encode(self.openmetrics))


def target_lines(instance_id: str, key: TargetKey, view: TargetView) -> Lines:
    """All sample lines of one target, per family (labels as in :data:`catalogue.TARGET_LABELS`)."""
    base = (
        f'instance_id="{escape(instance_id)}",target_type="{escape(key.target_type)}",'
        f'target_id="{escape(key.target_id)}",direction="{escape(key.direction)}"'
    )
    out = _LineWriter()
    job_exemplars = bool(view.job_exemplars)
    for trigger in sorted(set(TRIGGER_TYPES) | {t for t, _ in view.jobs}):
        for status in sorted(set(FINAL_STATUSES) | {s for t, s in view.jobs if t == trigger}):
            labels = f'{base},trigger_type="{escape(trigger)}",status="{escape(status)}"'
            series = (trigger, status)
            count = view.jobs.get(series, 0)
            out.add_counted(catalogue.JOBS, labels, count, view.job_exemplars.get(series), job_exemplars)
    _object_lines(out, base, view)
    error_exemplars = bool(view.error_exemplars)
    for code, count in sorted(view.errors.items()):
        labels = f'{base},error_code="{escape(code)}"'
        out.add_counted(catalogue.JOB_ERRORS, labels, count, view.error_exemplars.get(code), error_exemplars)
    duration = catalogue.JOB_DURATION
    out.extend(duration, duration.histogram(base, view.duration_buckets, view.duration_sum, view.duration_count))
    _last_job_lines(out, base, view)
    for status in sorted(set(IN_PROGRESS_STATUSES) | set(view.in_progress)):
        out.add(catalogue.JOBS_IN_PROGRESS, f'{base},status="{escape(status)}"', view.in_progress.get(status, 0))
    if view.oldest_in_progress_start is not None:
        out.add(catalogue.OLDEST_IN_PROGRESS_START, base, view.oldest_in_progress_start)
    return out.encoded()


def _object_lines(out: _LineWriter, base: str, view: TargetView) -> None:
    """Objects of every finished job, and of the latest one, for every documented and seen combination."""
    last = view.last_job
    keys = set(STANDARD_OBJECT_KEYS) | set(view.objects)
    if last is not None:
        keys |= set(last.objects)
    for object_key in sorted(keys):
        object_type, action, result = object_key
        labels = f'{base},object_type="{escape(object_type)}",action="{escape(action)}",result="{escape(result)}"'
        out.add(catalogue.OBJECTS, labels, view.objects.get(object_key, 0))
        if last is not None:
            out.add(catalogue.LAST_JOB_OBJECTS, labels, last.objects.get(object_key, 0))


def _last_job_lines(out: _LineWriter, base: str, view: TargetView) -> None:
    last = view.last_job
    if last is not None:
        for status in FINAL_STATUSES:
            out.add(catalogue.LAST_JOB_STATUS, f'{base},status="{status}"', 1 if last.status == status else 0)
    for family, seconds in (
        (catalogue.LAST_JOB_START, view.last_job_start),
        (catalogue.LAST_JOB_END, view.last_job_end),
        (catalogue.LAST_SUCCESS, view.last_success_end),
    ):
        if seconds is not None:
            out.add(family, base, seconds)
    failure = view.last_failure
    if failure is not None:
        labels = (
            f'{base},job_id="{escape(failure.job_id)}",status="{escape(failure.status)}",'
            f'error_code="{escape(failure.error_code)}"'
        )
        out.add(catalogue.LAST_FAILED_JOB_INFO, labels, 1)


def catalogue_lines(view: InstanceView) -> Lines:
    """What the target refresh learns: names, pull configurations, their failures (rarely changes)."""
    instance = f'instance_id="{escape(view.instance_id)}"'
    out = _LineWriter()
    for idp_id, config in sorted(view.pull_configs.items()):
        idp = f'{instance},target_id="{escape(idp_id)}"'
        for object_type, value in sorted(config.thresholds.items()):
            out.add(catalogue.PULL_DELETION_THRESHOLD, f'{idp},object_type="{escape(object_type)}"', value)
        for feature, enabled in sorted(config.features.items()):
            out.add(catalogue.PULL_FEATURE_ENABLED, f'{idp},feature="{escape(feature)}"', 1 if enabled else 0)
        if config.max_interval_seconds is not None:
            out.add(catalogue.PULL_SCHEDULE_MAX_INTERVAL, idp, config.max_interval_seconds)
    for code, count in sorted(view.pull_config_failures.items()):
        out.add(catalogue.PULL_CONFIG_FAILURES, f'{instance},code="{escape(code)}"', count)
    for reason, targets in sorted(view.target_anomalies.items()):
        out.add(catalogue.TARGETS_ANOMALOUS, f'{instance},reason="{escape(reason)}"', targets)
    for (target_type, target_id), named in sorted(view.target_info.items()):
        labels = (
            f'{instance},target_type="{escape(target_type)}",target_id="{escape(target_id)}",'
            f'target_name="{escape(named.name)}",provider_type="{escape(named.provider_type)}"'
        )
        out.add(catalogue.TARGET_INFO, labels, 1)
    return out.encoded()


def health_lines(view: InstanceView) -> Lines:
    """The instance's own line, which changes with each poll's outcome (the rest: selfmetrics.py)."""
    out = _LineWriter()
    out.add(catalogue.UP, f'instance_id="{escape(view.instance_id)}"', 1 if view.up else 0)
    return out.encoded()
