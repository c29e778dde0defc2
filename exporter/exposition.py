"""Rendering a :class:`Snapshot` as Prometheus text or OpenMetrics, incrementally.

At a thousand targets the exposition is tens of megabytes, so it is never rebuilt
wholesale. Each target's sample lines are rendered once, when its view changes, and
shared by both formats (they differ only in ``# TYPE``/``# HELP`` headers and the
closing ``# EOF``). A scrape streams the cached pieces; gzip is compressed once per
snapshot and format, off the event loop.

Exposition (abridged)::

    # HELP idaas_sync_jobs_total Finished synchronization jobs, counted once each. ...
    # TYPE idaas_sync_jobs_total counter
    idaas_sync_jobs_total{instance_id="i",target_type="identity_provider",target_id="idp_1",
                          direction="ingress",trigger_type="auto",status="failed"} 2
    idaas_sync_last_job_status{...,status="success"} 1
    idaas_up{instance_id="i"} 1
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from exporter import __version__
from exporter.memory import release_free_memory
from exporter.snapshot import InstanceView, Snapshot, TargetView
from exporter.state import ACTIONS, DURATION_BUCKETS, FINAL, OBJECT_TYPES, TRIGGER_TYPES, TargetKey

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
API_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESULTS = ("success", "failed", "skipped")
# Targets rendered between returns to the event loop (about a millisecond of work).
RENDER_SLICE = 5
IN_PROGRESS = ("pending", "running")
_STANDARD_OBJECT_KEYS = tuple((o, a, r) for o in OBJECT_TYPES for a in ACTIONS for r in RESULTS)
_REFRESHED = " Refreshed every poll interval from the IDaaS API, not at scrape time."
_CONFIG = " Read with GetIdentityProviderUdPullConfiguration every target refresh interval."


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # without _total for counters
    kind: str  # counter, gauge, histogram
    help: str
    per_target: bool

    def header(self, openmetrics: bool) -> bytes:
        exposed = self.name + "_total" if self.kind == "counter" and not openmetrics else self.name
        return f"# HELP {exposed} {_escape_help(self.help)}\n# TYPE {exposed} {self.kind}\n".encode()


FAMILIES = (
    Family(
        "idaas_sync_pull_deletion_threshold",
        "gauge",
        "Deletion protection threshold of an identity provider's inbound sync." + _CONFIG,
        False,
    ),
    Family(
        "idaas_sync_pull_feature_enabled",
        "gauge",
        "1 when an inbound-sync feature is enabled, else 0." + _CONFIG,
        False,
    ),
    Family(
        "idaas_sync_pull_schedule_max_interval_seconds",
        "gauge",
        "Longest gap between two scheduled inbound syncs; absent when periodic sync is off." + _CONFIG,
        False,
    ),
    Family(
        "idaas_exporter_pull_config_failures",
        "counter",
        "Inbound-sync configurations that could not be read (skipped), by error code.",
        False,
    ),
    Family("idaas_sync_jobs", "counter", "Finished synchronization jobs, counted once each." + _REFRESHED, True),
    Family(
        "idaas_sync_objects",
        "counter",
        "Objects processed by finished jobs, by object type, action and result." + _REFRESHED,
        True,
    ),
    Family("idaas_sync_job_errors", "counter", "Finished jobs that reported an error code." + _REFRESHED, True),
    Family(
        "idaas_sync_job_duration_seconds",
        "histogram",
        "Duration of finished jobs (EndTime - StartTime)." + _REFRESHED,
        True,
    ),
    Family("idaas_sync_last_job_objects", "gauge", "Objects processed by the latest finished job." + _REFRESHED, True),
    Family(
        "idaas_sync_last_job_status",
        "gauge",
        "1 for the status of the latest finished job, 0 for the others." + _REFRESHED,
        True,
    ),
    Family(
        "idaas_sync_last_job_start_timestamp_seconds",
        "gauge",
        "Start time of the latest finished job." + _REFRESHED,
        True,
    ),
    Family(
        "idaas_sync_last_job_end_timestamp_seconds", "gauge", "End time of the latest finished job." + _REFRESHED, True
    ),
    Family(
        "idaas_sync_last_success_timestamp_seconds",
        "gauge",
        "End time of the latest successful job." + _REFRESHED,
        True,
    ),
    Family("idaas_sync_jobs_in_progress", "gauge", "Jobs currently pending or running." + _REFRESHED, True),
    Family(
        "idaas_sync_oldest_in_progress_start_timestamp_seconds",
        "gauge",
        "Start time of the oldest job still pending or running." + _REFRESHED,
        True,
    ),
    Family("idaas_sync_target_info", "gauge", "Names of synchronization targets; always 1." + _REFRESHED, False),
    Family("idaas_up", "gauge", "1 when the last poll of the instance succeeded.", False),
    Family(
        "idaas_exporter_last_poll_success_timestamp_seconds", "gauge", "When the last successful poll finished.", False
    ),
    Family("idaas_exporter_poll_duration_seconds", "gauge", "How long the last poll took.", False),
    Family(
        "idaas_exporter_poll_failures",
        "counter",
        "Polls that failed (the API could not be read or state not saved).",
        False,
    ),
    Family(
        "idaas_exporter_jobs_anomalous",
        "counter",
        "Jobs the API showed with a problem, each counted once per reason: malformed (quarantined, not used), "
        "bad_* (used without the bad part), future_start (dated after the API's clock), late (appeared after "
        "the overlap had passed it).",
        False,
    ),
    Family(
        "idaas_exporter_api_requests",
        "counter",
        "HTTP attempts to the IDaaS API by action and outcome (OK, the API error Code, or a transport error).",
        False,
    ),
    Family(
        "idaas_exporter_api_request_duration_seconds", "histogram", "Duration of HTTP attempts to the IDaaS API.", False
    ),
    Family("idaas_exporter_build_info", "gauge", "Exporter version; always 1.", False),
)
FAMILY_NAMES = tuple(f.name for f in FAMILIES)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


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


def number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def target_lines(instance_id: str, key: TargetKey, view: TargetView) -> dict[str, bytes]:
    """All sample lines of one target, per family."""
    base = (
        f'instance_id="{escape(instance_id)}",target_type="{escape(key.target_type)}",'
        f'target_id="{escape(key.target_id)}",direction="{escape(key.direction)}"'
    )
    out: dict[str, list[str]] = {}

    def add(family: str, line: str) -> None:
        out.setdefault(family, []).append(line)

    triggers = sorted(set(TRIGGER_TYPES) | {t for t, _ in view.jobs})
    for trigger in triggers:
        for status in sorted(set(FINAL) | {s for t, s in view.jobs if t == trigger}):
            add(
                "idaas_sync_jobs",
                f'idaas_sync_jobs_total{{{base},trigger_type="{escape(trigger)}",'
                f'status="{escape(status)}"}} {view.jobs.get((trigger, status), 0)}\n',
            )
    last = view.last_job
    keys = set(_STANDARD_OBJECT_KEYS) | set(view.objects)
    if last is not None:
        keys |= set(last.objects)
    for object_key in sorted(keys):
        object_type, action, result = object_key
        labels = f'{base},object_type="{escape(object_type)}",action="{escape(action)}",result="{escape(result)}"'
        add("idaas_sync_objects", f"idaas_sync_objects_total{{{labels}}} {view.objects.get(object_key, 0)}\n")
        if last is not None:
            add(
                "idaas_sync_last_job_objects",
                f"idaas_sync_last_job_objects{{{labels}}} {last.objects.get(object_key, 0)}\n",
            )
    for code, count in sorted(view.errors.items()):
        add("idaas_sync_job_errors", f'idaas_sync_job_errors_total{{{base},error_code="{escape(code)}"}} {count}\n')
    cumulative = 0
    for bound, count in zip((*DURATION_BUCKETS, float("inf")), view.duration_buckets, strict=True):
        cumulative += count
        add(
            "idaas_sync_job_duration_seconds",
            f'idaas_sync_job_duration_seconds_bucket{{{base},le="{_le(bound)}"}} {cumulative}\n',
        )
    add("idaas_sync_job_duration_seconds", f"idaas_sync_job_duration_seconds_count{{{base}}} {view.duration_count}\n")
    add(
        "idaas_sync_job_duration_seconds",
        f"idaas_sync_job_duration_seconds_sum{{{base}}} {number(view.duration_sum)}\n",
    )
    if last is not None:
        for status in FINAL:
            add(
                "idaas_sync_last_job_status",
                f'idaas_sync_last_job_status{{{base},status="{status}"}} {1 if last.status == status else 0}\n',
            )
        add(
            "idaas_sync_last_job_start_timestamp_seconds",
            f"idaas_sync_last_job_start_timestamp_seconds{{{base}}} {number(last.start)}\n",
        )
        if last.end is not None:
            add(
                "idaas_sync_last_job_end_timestamp_seconds",
                f"idaas_sync_last_job_end_timestamp_seconds{{{base}}} {number(last.end)}\n",
            )
    if view.last_success_end is not None:
        add(
            "idaas_sync_last_success_timestamp_seconds",
            f"idaas_sync_last_success_timestamp_seconds{{{base}}} {number(view.last_success_end)}\n",
        )
    for status in sorted(set(IN_PROGRESS) | set(view.in_progress)):
        add(
            "idaas_sync_jobs_in_progress",
            f'idaas_sync_jobs_in_progress{{{base},status="{escape(status)}"}} {view.in_progress.get(status, 0)}\n',
        )
    if view.oldest_in_progress_start is not None:
        add(
            "idaas_sync_oldest_in_progress_start_timestamp_seconds",
            f"idaas_sync_oldest_in_progress_start_timestamp_seconds{{{base}}} "
            f"{number(view.oldest_in_progress_start)}\n",
        )
    return {family: "".join(lines).encode() for family, lines in out.items()}


def instance_lines(view: InstanceView) -> dict[str, bytes]:
    instance = escape(view.instance_id)
    out: dict[str, list[str]] = {}

    def add(family: str, line: str) -> None:
        out.setdefault(family, []).append(line)

    for idp_id, config in sorted(view.pull_configs.items()):
        idp = escape(idp_id)
        for object_type, value in sorted(config.thresholds.items()):
            add(
                "idaas_sync_pull_deletion_threshold",
                f'idaas_sync_pull_deletion_threshold{{instance_id="{instance}",'
                f'target_id="{idp}",object_type="{escape(object_type)}"}} {value}\n',
            )
        for feature, enabled in sorted(config.features.items()):
            add(
                "idaas_sync_pull_feature_enabled",
                f'idaas_sync_pull_feature_enabled{{instance_id="{instance}",'
                f'target_id="{idp}",feature="{escape(feature)}"}} {1 if enabled else 0}\n',
            )
        if config.max_interval_seconds is not None:
            add(
                "idaas_sync_pull_schedule_max_interval_seconds",
                f'idaas_sync_pull_schedule_max_interval_seconds{{instance_id="{instance}",target_id="{idp}"}} '
                f"{number(config.max_interval_seconds)}\n",
            )
    for code, count in sorted(view.pull_config_failures.items()):
        add(
            "idaas_exporter_pull_config_failures",
            f'idaas_exporter_pull_config_failures_total{{instance_id="{instance}",code="{escape(code)}"}} {count}\n',
        )
    for (target_type, target_id), named in sorted(view.target_info.items()):
        add(
            "idaas_sync_target_info",
            f'idaas_sync_target_info{{instance_id="{instance}",'
            f'target_type="{escape(target_type)}",target_id="{escape(target_id)}",'
            f'target_name="{escape(named.name)}",provider_type="{escape(named.provider_type)}"}} 1\n',
        )
    add("idaas_up", f'idaas_up{{instance_id="{instance}"}} {1 if view.up else 0}\n')
    if view.last_success is not None:
        add(
            "idaas_exporter_last_poll_success_timestamp_seconds",
            f'idaas_exporter_last_poll_success_timestamp_seconds{{instance_id="{instance}"}} '
            f"{number(view.last_success)}\n",
        )
    if view.poll_duration is not None:
        add(
            "idaas_exporter_poll_duration_seconds",
            f'idaas_exporter_poll_duration_seconds{{instance_id="{instance}"}} {number(view.poll_duration)}\n',
        )
    add(
        "idaas_exporter_poll_failures",
        f'idaas_exporter_poll_failures_total{{instance_id="{instance}"}} {view.poll_failures}\n',
    )
    for reason, count in sorted(view.anomalies.items()):
        add(
            "idaas_exporter_jobs_anomalous",
            f'idaas_exporter_jobs_anomalous_total{{instance_id="{instance}",reason="{escape(reason)}"}} {count}\n',
        )
    return {family: "".join(lines).encode() for family, lines in out.items()}


def global_lines(snapshot: Snapshot) -> dict[str, bytes]:
    out: dict[str, list[str]] = {}
    for (instance_id, action, code), count in sorted(snapshot.api.counts.items()):
        out.setdefault("idaas_exporter_api_requests", []).append(
            f'idaas_exporter_api_requests_total{{instance_id="{escape(instance_id)}",action="{escape(action)}",'
            f'code="{escape(code)}"}} {count}\n'
        )
    for action, (counts, total, count) in sorted(snapshot.api.durations.items()):
        lines = out.setdefault("idaas_exporter_api_request_duration_seconds", [])
        cumulative = 0
        for bound, bucket in zip((*API_DURATION_BUCKETS, float("inf")), counts, strict=True):
            cumulative += bucket
            lines.append(
                f'idaas_exporter_api_request_duration_seconds_bucket{{action="{escape(action)}",'
                f'le="{_le(bound)}"}} {cumulative}\n'
            )
        lines.append(f'idaas_exporter_api_request_duration_seconds_count{{action="{escape(action)}"}} {count}\n')
        lines.append(f'idaas_exporter_api_request_duration_seconds_sum{{action="{escape(action)}"}} {number(total)}\n')
    out["idaas_exporter_build_info"] = [f'idaas_exporter_build_info{{version="{escape(__version__)}"}} 1\n']
    return {family: "".join(lines).encode() for family, lines in out.items()}


def pack(data: bytes) -> bytes:
    """Raw deflate, level 1: rendered lines are kept about ten times smaller than as text."""
    return zlib.compress(data, 1, wbits=-15)


def unpack(data: bytes) -> bytes:
    return zlib.decompress(data, wbits=-15)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One snapshot's exposition as compressed pieces, in order; both formats share them."""

    version: int
    sections: tuple[tuple[Family, tuple[bytes, ...]], ...]

    def chunks(self, *, openmetrics: bool) -> Iterator[bytes]:
        for family, pieces in self.sections:
            yield family.header(openmetrics)
            for piece in pieces:
                yield unpack(piece)
        if openmetrics:
            yield b"# EOF\n"

    def body(self, *, openmetrics: bool) -> bytes:
        return b"".join(self.chunks(openmetrics=openmetrics))


class Renderer:
    """Keeps each target's rendered lines while its view object stays the same."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, TargetKey], tuple[TargetView, dict[str, bytes]]] = {}
        self.target_renders = 0
        self._result = Rendered(-1, ())

    def render(self, snapshot: Snapshot) -> Rendered:
        for _ in self._render_steps(snapshot):
            pass
        return self._result

    async def render_async(self, snapshot: Snapshot) -> Rendered:
        """Like :meth:`render`, but returns to the event loop between slices of targets."""
        for _ in self._render_steps(snapshot):
            await asyncio.sleep(0)
        return self._result

    def _render_steps(self, snapshot: Snapshot) -> Iterator[None]:
        per_family: dict[str, list[bytes]] = {name: [] for name in FAMILY_NAMES}
        live: set[tuple[str, TargetKey]] = set()
        for instance_id, view in snapshot.instances.items():
            for family, data in instance_lines(view).items():
                per_family[family].append(pack(data))
            for key, target in view.targets.items():
                cache_key = (instance_id, key)
                live.add(cache_key)
                cached = self._targets.get(cache_key)
                if cached is None or cached[0] is not target:
                    cached = (target, {f: pack(data) for f, data in target_lines(instance_id, key, target).items()})
                    self._targets[cache_key] = cached
                    self.target_renders += 1
                    if self.target_renders % RENDER_SLICE == 0:
                        yield
                for family, data in cached[1].items():
                    per_family[family].append(data)
        for gone in set(self._targets) - live:
            del self._targets[gone]
        for family, data in global_lines(snapshot).items():
            per_family[family].append(pack(data))
        sections = tuple((family, tuple(per_family[family.name])) for family in FAMILIES)
        self._result = Rendered(snapshot.version, sections)


class ExpositionCache:
    """The current snapshot's rendering and its gzip forms; each made at most once per snapshot."""

    def __init__(self, renderer: Renderer | None = None) -> None:
        self._renderer = renderer or Renderer()
        self._lock = threading.Lock()
        self._rendered: Rendered | None = None
        self._gzipped: dict[bool, bytes] = {}
        self.renders = 0

    async def prepare(self, snapshot: Snapshot) -> None:
        """Render a new snapshot in slices and compress both formats off the event loop."""
        with self._lock:
            current = self._rendered
        if current is None or current.version != snapshot.version:
            rendered = await self._renderer.render_async(snapshot)
            with self._lock:
                self._install(rendered)
        rendered = self.rendered(snapshot)
        for openmetrics in (True, False):
            await asyncio.to_thread(self.gzipped, rendered, openmetrics=openmetrics)
        release_free_memory()

    def ready_gzip(self, rendered: Rendered, *, openmetrics: bool) -> bytes | None:
        """The gzip body of ``rendered`` if it is compressed already; never an older snapshot's."""
        with self._lock:
            return self._gzipped.get(openmetrics) if self._rendered is rendered else None

    def rendered(self, snapshot: Snapshot) -> Rendered:
        with self._lock:
            if self._rendered is None or self._rendered.version != snapshot.version:
                return self._install(self._renderer.render(snapshot))
            return self._rendered

    def _install(self, rendered: Rendered) -> Rendered:
        """Make ``rendered`` current unless a newer snapshot already is; call with the lock held.

        Returns the rendering now current.
        """
        if self._rendered is None or self._rendered.version < rendered.version:
            self._rendered = rendered
            self._gzipped = {}
            self.renders += 1
        return self._rendered

    def gzipped(self, rendered: Rendered, *, openmetrics: bool) -> bytes:
        """Compressed body; call from a worker thread (zlib releases the GIL while compressing)."""
        with self._lock:
            if self._rendered is rendered and openmetrics in self._gzipped:
                return self._gzipped[openmetrics]
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: 10x smaller, fast; 31 = gzip container
        parts = [compressor.compress(chunk) for chunk in rendered.chunks(openmetrics=openmetrics)]
        parts.append(compressor.flush())
        body = b"".join(parts)
        with self._lock:
            if self._rendered is rendered:
                self._gzipped[openmetrics] = body
        return body


def render(snapshot: Snapshot, *, openmetrics: bool = False) -> bytes:
    """The whole exposition at once (for `once`, tests and tools)."""
    return Renderer().render(snapshot).body(openmetrics=openmetrics)
