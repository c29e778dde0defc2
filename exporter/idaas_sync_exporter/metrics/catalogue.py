"""Every metric family the exporter exposes, declared once: name, type, help, label names, buckets.

The renderer emits samples through these families (``family.line(labels, value)``), the
snapshot and counting code take their vocabularies and buckets from here, and a test checks
docs/metrics.md against this catalogue, so code and documentation cannot drift apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from idaas_sync_exporter.api.models import ACTIONS, COUNT_RESULTS, OBJECT_TYPES
from idaas_sync_exporter.histogram import API_DURATION_BUCKETS, JOB_DURATION_BUCKETS

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Every (object type, action, result) the documentation lists, rendered at 0 when absent.
STANDARD_OBJECT_KEYS = tuple((o, a, r) for o in OBJECT_TYPES for a in ACTIONS for r in COUNT_RESULTS)

TARGET_LABELS = ("instance_id", "target_type", "target_id", "direction")
_REFRESHED = " Refreshed every poll interval from the IDaaS API, not at scrape time."
_CONFIG = " Read with GetIdentityProviderUdPullConfiguration every target refresh interval."


# eq=False: each family is declared once here, so identity is equality, and hashing by
# identity keeps the renderer's per-family dictionaries cheap.
@dataclass(frozen=True, slots=True, eq=False)
class Family:
    name: str  # without _total for counters
    kind: str  # counter, gauge, histogram
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def sample_name(self) -> str:
        """The name samples carry: counters end in ``_total`` in both formats."""
        return self.name + "_total" if self.kind == "counter" else self.name

    def header(self, openmetrics: bool) -> bytes:
        exposed = self.name if openmetrics else self.sample_name
        help_text = escape_help(self.help, openmetrics=openmetrics)
        return f"# HELP {exposed} {help_text}\n# TYPE {exposed} {self.kind}\n".encode()

    def line(self, labels: str, value: int | float, suffix: str = "") -> str:
        """One sample line; ``labels`` is the rendered label list, in the order of ``self.labels``."""
        return f"{self.sample_name}{suffix}{{{labels}}} {number(value)}\n"

    def histogram(self, labels: str, buckets: tuple[int, ...] | list[int], total: float, count: int) -> list[str]:
        """The ``_bucket`` (cumulative), ``_count`` and ``_sum`` lines of one histogram."""
        lines = []
        cumulative = 0
        for bound, in_bucket in zip((*self.buckets, math.inf), buckets, strict=True):
            cumulative += in_bucket
            lines.append(self.line(f'{labels},le="{le_label(bound)}"', cumulative, "_bucket"))
        lines.append(self.line(labels, count, "_count"))
        lines.append(self.line(labels, total, "_sum"))
        return lines


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")


def escape(value: str) -> str:
    """A label value as the exposition formats require, whatever the API sent.

    Backslash, double quote and line feed are escaped; other control characters
    become U+FFFD and unpaired surrogates '?', so the output is always valid UTF-8
    that Prometheus parses back to the same value.
    """
    if not value.isascii() or _CONTROL.search(value):
        value = _CONTROL.sub("\ufffd", value).encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str, *, openmetrics: bool) -> str:
    """HELP text: backslash and line feed escaped in both formats, double quotes in OpenMetrics too."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def le_label(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


PULL_DELETION_THRESHOLD = Family(
    "idaas_sync_pull_deletion_threshold",
    "gauge",
    "Deletion protection threshold of an identity provider's inbound sync." + _CONFIG,
    ("instance_id", "target_id", "object_type"),
)
PULL_FEATURE_ENABLED = Family(
    "idaas_sync_pull_feature_enabled",
    "gauge",
    "1 when an inbound-sync feature is enabled, else 0." + _CONFIG,
    ("instance_id", "target_id", "feature"),
)
PULL_SCHEDULE_MAX_INTERVAL = Family(
    "idaas_sync_pull_schedule_max_interval_seconds",
    "gauge",
    "Longest gap between two scheduled inbound syncs; absent when periodic sync is off." + _CONFIG,
    ("instance_id", "target_id"),
)
PULL_CONFIG_FAILURES = Family(
    "idaas_exporter_pull_config_failures",
    "counter",
    "Inbound-sync configurations that could not be read (skipped), by error code.",
    ("instance_id", "code"),
)
TARGETS_ANOMALOUS = Family(
    "idaas_exporter_targets_anomalous",
    "gauge",
    "Targets in the latest listing of names whose labels had to be changed: long_label (name or provider type "
    "cut to 256 characters, ending in \u2026), bad_target_id (id not a plain identifier; left out of "
    "idaas_sync_target_info).",
    ("instance_id", "reason"),
)
JOBS = Family(
    "idaas_sync_jobs",
    "counter",
    "Finished synchronization jobs, counted once each." + _REFRESHED,
    (*TARGET_LABELS, "trigger_type", "status"),
)
OBJECTS = Family(
    "idaas_sync_objects",
    "counter",
    "Objects processed by finished jobs, by object type, action and result." + _REFRESHED,
    (*TARGET_LABELS, "object_type", "action", "result"),
)
JOB_ERRORS = Family(
    "idaas_sync_job_errors",
    "counter",
    "Finished jobs that reported an error code." + _REFRESHED,
    (*TARGET_LABELS, "error_code"),
)
JOB_DURATION = Family(
    "idaas_sync_job_duration_seconds",
    "histogram",
    "Duration of finished jobs (EndTime - StartTime)." + _REFRESHED,
    TARGET_LABELS,
    JOB_DURATION_BUCKETS,
)
LAST_JOB_OBJECTS = Family(
    "idaas_sync_last_job_objects",
    "gauge",
    "Objects processed by the latest finished job." + _REFRESHED,
    (*TARGET_LABELS, "object_type", "action", "result"),
)
LAST_JOB_STATUS = Family(
    "idaas_sync_last_job_status",
    "gauge",
    "1 for the status of the latest finished job, 0 for the others." + _REFRESHED,
    (*TARGET_LABELS, "status"),
)
LAST_FAILED_JOB_INFO = Family(
    "idaas_sync_last_failed_job_info",
    "gauge",
    "The latest failed or partially successful job of a target, by id and error code (empty when it reported "
    "none); always 1, one series per target, replaced when a newer one finishes." + _REFRESHED,
    (*TARGET_LABELS, "job_id", "status", "error_code"),
)
LAST_JOB_START = Family(
    "idaas_sync_last_job_start_timestamp_seconds",
    "gauge",
    "Start time of the latest finished job." + _REFRESHED,
    TARGET_LABELS,
)
LAST_JOB_END = Family(
    "idaas_sync_last_job_end_timestamp_seconds",
    "gauge",
    "End time of the latest finished job." + _REFRESHED,
    TARGET_LABELS,
)
LAST_SUCCESS = Family(
    "idaas_sync_last_success_timestamp_seconds",
    "gauge",
    "End time of the latest successful job." + _REFRESHED,
    TARGET_LABELS,
)
JOBS_IN_PROGRESS = Family(
    "idaas_sync_jobs_in_progress",
    "gauge",
    "Jobs currently pending or running." + _REFRESHED,
    (*TARGET_LABELS, "status"),
)
OLDEST_IN_PROGRESS_START = Family(
    "idaas_sync_oldest_in_progress_start_timestamp_seconds",
    "gauge",
    "Start time of the oldest job still pending or running." + _REFRESHED,
    TARGET_LABELS,
)
TARGET_INFO = Family(
    "idaas_sync_target_info",
    "gauge",
    "Names of synchronization targets; always 1." + _REFRESHED,
    ("instance_id", "target_type", "target_id", "target_name", "provider_type"),
)
UP = Family("idaas_up", "gauge", "1 when the last poll of the instance succeeded.", ("instance_id",))
LAST_POLL_SUCCESS = Family(
    "idaas_exporter_last_poll_success_timestamp_seconds",
    "gauge",
    "When the last successful poll finished.",
    ("instance_id",),
)
POLL_DURATION = Family(
    "idaas_exporter_poll_duration_seconds", "gauge", "How long the last poll took.", ("instance_id",)
)
POLL_FAILURES = Family(
    "idaas_exporter_poll_failures",
    "counter",
    "Polls that failed (the API could not be read or state not saved).",
    ("instance_id",),
)
JOBS_ANOMALOUS = Family(
    "idaas_exporter_jobs_anomalous",
    "counter",
    "Jobs the API showed with a problem, each counted once per reason: malformed (quarantined, not used), "
    "bad_* (used without the bad part), future_start (dated after the API's clock), late (appeared after "
    "the overlap had passed it).",
    ("instance_id", "reason"),
)
API_REQUESTS = Family(
    "idaas_exporter_api_requests",
    "counter",
    "HTTP attempts to the IDaaS API by action and outcome (OK, the API error Code, or a transport error).",
    ("instance_id", "action", "code"),
)
API_REQUEST_DURATION = Family(
    "idaas_exporter_api_request_duration_seconds",
    "histogram",
    "Duration of HTTP attempts to the IDaaS API.",
    ("action",),
    API_DURATION_BUCKETS,
)
INSTANCE_INFO = Family(
    "idaas_instance_info",
    "gauge",
    "An IDaaS instance this exporter polls, with its region and the configured account whose "
    "credentials it is polled with; always 1. Join on instance_id to group other series by region or account.",
    ("instance_id", "region", "account"),
)
SHARD_INFO = Family(
    "idaas_exporter_shard_info",
    "gauge",
    "This replica's shard when --shard-count splits the instances between replicas; always 1. "
    "The instances it polls are those with idaas_up series.",
    ("shard_index", "shard_count"),
)
BUILD_INFO = Family(
    "idaas_exporter_build_info",
    "gauge",
    "Version, source revision and Python version of the running exporter; always 1.",
    ("version", "revision", "python_version"),
)
CONFIG_RELOAD_SUCCESSFUL = Family(
    "idaas_exporter_config_last_reload_successful",
    "gauge",
    "1 when the web config file was last read successfully (at start or on a change), 0 when its last "
    "change was refused and the one before stays in force. Only with a web config file; updated at "
    "each poll.",
    (),
)
CONFIG_RELOAD_SUCCESS_TIME = Family(
    "idaas_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the web config in force was read (at start, or the last change that was accepted), in seconds "
    "since the epoch. Only with a web config file.",
    (),
)

# The order of the exposition: the sync families, rendered by exposition.py ...
FAMILIES = (
    PULL_DELETION_THRESHOLD,
    PULL_FEATURE_ENABLED,
    PULL_SCHEDULE_MAX_INTERVAL,
    PULL_CONFIG_FAILURES,
    TARGETS_ANOMALOUS,
    JOBS,
    OBJECTS,
    JOB_ERRORS,
    JOB_DURATION,
    LAST_JOB_OBJECTS,
    LAST_JOB_STATUS,
    LAST_JOB_START,
    LAST_JOB_END,
    LAST_SUCCESS,
    LAST_FAILED_JOB_INFO,
    JOBS_IN_PROGRESS,
    OLDEST_IN_PROGRESS_START,
    TARGET_INFO,
    UP,
)
# ... then the exporter's own, rendered through prometheus-client by selfmetrics.py (with the
# process_* families of its ProcessCollector, which are prometheus-client's to declare).
SELF_FAMILIES = (
    LAST_POLL_SUCCESS,
    POLL_DURATION,
    POLL_FAILURES,
    JOBS_ANOMALOUS,
    API_REQUESTS,
    API_REQUEST_DURATION,
    INSTANCE_INFO,
    SHARD_INFO,
    CONFIG_RELOAD_SUCCESSFUL,
    CONFIG_RELOAD_SUCCESS_TIME,
    BUILD_INFO,
)
ALL_FAMILIES = FAMILIES + SELF_FAMILIES
