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
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter import __version__
from exporter.api.models import FINAL_STATUSES, IN_PROGRESS_STATUSES, TRIGGER_TYPES
from exporter.collect.counting import TargetKey
from exporter.memory import release_free_memory
from exporter.metrics import catalogue
from exporter.metrics.catalogue import FAMILIES, STANDARD_OBJECT_KEYS, Family
from exporter.metrics.snapshot import InstanceView, Snapshot, TargetView

# Targets rendered between returns to the event loop (about a millisecond of work).
RENDER_SLICE = 5
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


class _Lines:
    """Sample lines grouped by family, in the order they are added."""

    def __init__(self) -> None:
        self.by_family: dict[Family, list[str]] = {}

    def add(self, family: Family, labels: str, value: int | float, suffix: str = "") -> None:
        self.by_family.setdefault(family, []).append(family.line(labels, value, suffix))

    def extend(self, family: Family, lines: list[str]) -> None:
        self.by_family.setdefault(family, []).extend(lines)

    def encoded(self) -> dict[Family, bytes]:
        return {family: "".join(lines).encode() for family, lines in self.by_family.items()}


def target_lines(instance_id: str, key: TargetKey, view: TargetView) -> dict[Family, bytes]:
    """All sample lines of one target, per family (labels as in :data:`catalogue.TARGET_LABELS`)."""
    base = (
        f'instance_id="{escape(instance_id)}",target_type="{escape(key.target_type)}",'
        f'target_id="{escape(key.target_id)}",direction="{escape(key.direction)}"'
    )
    out = _Lines()
    for trigger in sorted(set(TRIGGER_TYPES) | {t for t, _ in view.jobs}):
        for status in sorted(set(FINAL_STATUSES) | {s for t, s in view.jobs if t == trigger}):
            labels = f'{base},trigger_type="{escape(trigger)}",status="{escape(status)}"'
            out.add(catalogue.JOBS, labels, view.jobs.get((trigger, status), 0))
    _object_lines(out, base, view)
    for code, count in sorted(view.errors.items()):
        out.add(catalogue.JOB_ERRORS, f'{base},error_code="{escape(code)}"', count)
    duration = catalogue.JOB_DURATION
    out.extend(duration, duration.histogram(base, view.duration_buckets, view.duration_sum, view.duration_count))
    _last_job_lines(out, base, view)
    for status in sorted(set(IN_PROGRESS_STATUSES) | set(view.in_progress)):
        out.add(catalogue.JOBS_IN_PROGRESS, f'{base},status="{escape(status)}"', view.in_progress.get(status, 0))
    if view.oldest_in_progress_start is not None:
        out.add(catalogue.OLDEST_IN_PROGRESS_START, base, view.oldest_in_progress_start)
    return out.encoded()


def _object_lines(out: _Lines, base: str, view: TargetView) -> None:
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


def _last_job_lines(out: _Lines, base: str, view: TargetView) -> None:
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


def instance_lines(view: InstanceView) -> dict[Family, bytes]:
    instance = f'instance_id="{escape(view.instance_id)}"'
    out = _Lines()
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
    for (target_type, target_id), named in sorted(view.target_info.items()):
        labels = (
            f'{instance},target_type="{escape(target_type)}",target_id="{escape(target_id)}",'
            f'target_name="{escape(named.name)}",provider_type="{escape(named.provider_type)}"'
        )
        out.add(catalogue.TARGET_INFO, labels, 1)
    out.add(catalogue.UP, instance, 1 if view.up else 0)
    if view.last_success is not None:
        out.add(catalogue.LAST_POLL_SUCCESS, instance, view.last_success)
    if view.poll_duration is not None:
        out.add(catalogue.POLL_DURATION, instance, view.poll_duration)
    out.add(catalogue.POLL_FAILURES, instance, view.poll_failures)
    for reason, count in sorted(view.anomalies.items()):
        out.add(catalogue.JOBS_ANOMALOUS, f'{instance},reason="{escape(reason)}"', count)
    return out.encoded()


def global_lines(snapshot: Snapshot) -> dict[Family, bytes]:
    out = _Lines()
    for (instance_id, action, code), count in sorted(snapshot.api.counts.items()):
        labels = f'instance_id="{escape(instance_id)}",action="{escape(action)}",code="{escape(code)}"'
        out.add(catalogue.API_REQUESTS, labels, count)
    duration = catalogue.API_REQUEST_DURATION
    for action, (counts, total, count) in sorted(snapshot.api.durations.items()):
        out.extend(duration, duration.histogram(f'action="{escape(action)}"', counts, total, count))
    out.add(catalogue.BUILD_INFO, f'version="{escape(__version__)}"', 1)
    return out.encoded()


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
        self._targets: dict[tuple[str, TargetKey], tuple[TargetView, dict[Family, bytes]]] = {}
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
        per_family: dict[Family, list[bytes]] = {family: [] for family in FAMILIES}
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
        sections = tuple((family, tuple(per_family[family])) for family in FAMILIES)
        self._result = Rendered(snapshot.version, sections)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One snapshot ready to serve in every encoding: both formats, plain and gzip."""

    rendered: Rendered
    gzipped: Mapping[bool, bytes]  # openmetrics? -> gzip body

    @property
    def version(self) -> int:
        return self.rendered.version


class ExpositionCache:
    """The exposition scrapes are served from, swapped in only once it is ready in every encoding.

    So every scrape, plain or gzip, text or OpenMetrics, sees the same snapshot, and none
    waits for rendering or compression (but the very first, before anything is prepared).
    """

    def __init__(self, renderer: Renderer | None = None) -> None:
        self._renderer = renderer or Renderer()
        # One preparation at a time: the renderer's per-target cache is not shared.
        self._preparing = asyncio.Lock()
        self._served: Prepared | None = None
        self._latest_requested = -1
        self.renders = 0

    def served(self) -> Prepared | None:
        return self._served

    async def prepare(self, snapshot: Snapshot) -> Prepared:
        """Render ``snapshot`` in slices and compress both formats off the event loop, then serve it.

        A snapshot that a newer one overtook while waiting is skipped.
        """
        self._latest_requested = max(self._latest_requested, snapshot.version)
        async with self._preparing:
            served = self._served
            if served is not None and (served.version >= snapshot.version or snapshot.version < self._latest_requested):
                return served
            rendered = await self._renderer.render_async(snapshot)
            self.renders += 1
            gzipped = {
                openmetrics: await asyncio.to_thread(gzip_body, rendered, openmetrics=openmetrics)
                for openmetrics in (False, True)
            }
            self._served = Prepared(rendered, MappingProxyType(gzipped))
        release_free_memory()
        return self._served


def gzip_body(rendered: Rendered, *, openmetrics: bool) -> bytes:
    """Compressed body; call from a worker thread (zlib releases the GIL while compressing)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: 10x smaller, fast; 31 = gzip container
    parts = [compressor.compress(chunk) for chunk in rendered.chunks(openmetrics=openmetrics)]
    parts.append(compressor.flush())
    return b"".join(parts)


def render(snapshot: Snapshot, *, openmetrics: bool = False) -> bytes:
    """The whole exposition at once (for `once`, tests and tools)."""
    return Renderer().render(snapshot).body(openmetrics=openmetrics)
