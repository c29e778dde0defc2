"""The exporter's own metrics through a prometheus-client registry: process, build, polls, API requests.

The registry holds prometheus-client's ProcessCollector (``process_*``) and a collector of the
snapshot's own families; its families are written out here in the same line format as the sync
families (``exposition.py``) and follow them, once per published snapshot, never per scrape.
With prometheus-client's own writers an idle poll cost 1/45 of a full re-render in
``.venv/bin/python bench/idle.py``; written here, 1/51. A test checks that both give the same families
and samples.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from idaas_sync_exporter import __version__
from idaas_sync_exporter.config.settings import REVISION_VARIABLE
from idaas_sync_exporter.config.shards import Shard
from idaas_sync_exporter.metrics import catalogue
from idaas_sync_exporter.metrics.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    revision: str
    python_version: str

    @classmethod
    def current(cls) -> BuildInfo:
        return cls(__version__, _revision(), platform.python_version())


def _revision() -> str:
    """The source revision: set by the image build, else read from a checkout's .git, else unknown."""
    given = os.environ.get(REVISION_VARIABLE, "").strip()
    if given:
        return given[:40]
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:40]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:40]
    except OSError:
        pass
    return "unknown"


@dataclass(frozen=True, slots=True)
class InstanceLabels:
    """What ``idaas_instance_info`` says of one polled instance."""

    instance_id: str
    region: str
    account: str


def _gauge(family: catalogue.Family) -> GaugeMetricFamily:
    return GaugeMetricFamily(family.name, family.help, labels=list(family.labels))


def _counter(family: catalogue.Family) -> CounterMetricFamily:
    return CounterMetricFamily(family.name, family.help, labels=list(family.labels))


@dataclass(frozen=True, slots=True)
class ConfigReload:
    """How the last read of a configuration file went: whether it was taken, and when the one in force was read."""

    successful: bool
    success_time: float


class _SnapshotCollector(Collector):
    """Yields the self families of the snapshot being rendered."""

    def __init__(
        self,
        build: BuildInfo,
        shard: Shard | None,
        instances: Sequence[InstanceLabels],
        web_config: Callable[[], ConfigReload] | None,
    ) -> None:
        self.build = build
        self.shard = shard
        self.instances = instances
        self.web_config = web_config
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        last_success = _gauge(catalogue.LAST_POLL_SUCCESS)
        duration = _gauge(catalogue.POLL_DURATION)
        failures = _counter(catalogue.POLL_FAILURES)
        anomalous = _counter(catalogue.JOBS_ANOMALOUS)
        for instance_id, view in snapshot.instances.items():
            if view.last_success is not None:
                last_success.add_metric([instance_id], view.last_success)
            if view.poll_duration is not None:
                duration.add_metric([instance_id], view.poll_duration)
            failures.add_metric([instance_id], view.poll_failures)
            for reason, count in sorted(view.anomalies.items()):
                anomalous.add_metric([instance_id, reason], count)
        requests = _counter(catalogue.API_REQUESTS)
        for (instance_id, action, code), count in sorted(snapshot.api.counts.items()):
            requests.add_metric([instance_id, action, code], count)
        histogram = catalogue.API_REQUEST_DURATION
        request_duration = HistogramMetricFamily(histogram.name, histogram.help, labels=list(histogram.labels))
        bounds = histogram.buckets
        for action, (counts, total, _count) in sorted(snapshot.api.durations.items()):
            cumulative, buckets = 0, []
            for bound, in_bucket in zip((*bounds, float("inf")), counts, strict=True):
                cumulative += in_bucket
                buckets.append((catalogue.le_label(bound), cumulative))
            request_duration.add_metric([action], buckets, sum_value=total)
        yield from (last_success, duration, failures, anomalous, requests, request_duration)
        if self.instances:
            info = _gauge(catalogue.INSTANCE_INFO)
            for instance in self.instances:
                info.add_metric([instance.instance_id, instance.region, instance.account], 1)
            yield info
        if self.shard is not None and self.shard.count > 1:  # one replica has no shard to name
            shard = _gauge(catalogue.SHARD_INFO)
            shard.add_metric([str(self.shard.index), str(self.shard.count)], 1)
            yield shard
        if self.web_config is not None:
            reload = self.web_config()
            successful = _gauge(catalogue.CONFIG_RELOAD_SUCCESSFUL)
            successful.add_metric([], 1 if reload.successful else 0)
            success_time = _gauge(catalogue.CONFIG_RELOAD_SUCCESS_TIME)
            success_time.add_metric([], reload.success_time)
            yield from (successful, success_time)
        build = _gauge(catalogue.BUILD_INFO)
        build.add_metric([self.build.version, self.build.revision, self.build.python_version], 1)
        yield build


class SelfMetrics:
    """A prometheus-client registry of the exporter's own metrics, rendered for one snapshot at a time."""

    def __init__(
        self,
        build: BuildInfo | None = None,
        *,
        process: bool = True,
        shard: Shard | None = None,
        instances: Sequence[InstanceLabels] = (),
        web_config: Callable[[], ConfigReload] | None = None,
    ) -> None:
        """``web_config``: how the web config file's last read went, when there is one."""
        self.registry = CollectorRegistry(auto_describe=False)
        self._snapshot_collector = _SnapshotCollector(build or BuildInfo.current(), shard, tuple(instances), web_config)
        self.registry.register(self._snapshot_collector)
        if process:
            ProcessCollector(registry=self.registry)

    def render(self, snapshot: Snapshot) -> Mapping[bool, bytes]:
        """openmetrics? -> the lines, to follow the sync families (the OpenMetrics ``# EOF`` left off)."""
        self._snapshot_collector.snapshot = snapshot
        try:
            families = list(self.registry.collect())
        finally:
            self._snapshot_collector.snapshot = None
        return {openmetrics: write(families, openmetrics=openmetrics) for openmetrics in (False, True)}


def write(families: list[Metric], *, openmetrics: bool) -> bytes:
    """Families as Prometheus text (0.0.4) or OpenMetrics lines, without the closing ``# EOF``.

    Not prometheus-client's writers: they write values as Go's %g does (``1.0``, a timestamp as
    ``1.7000000005e+09``), while the sync families beside these write ``1`` and ``1700000000.5``
    (catalogue.number); one exposition writes numbers one way, and the golden files pin it.
    """
    lines = []
    for family in families:
        exposed = family.name + "_total" if family.type == "counter" and not openmetrics else family.name
        help_text = catalogue.escape_help(family.documentation, openmetrics=openmetrics)
        lines.append(f"# HELP {exposed} {help_text}\n# TYPE {exposed} {family.type}\n")
        if openmetrics and family.unit:
            lines.append(f"# UNIT {exposed} {family.unit}\n")
        for sample in family.samples:
            labels = ",".join(f'{name}="{catalogue.escape(value)}"' for name, value in sample.labels.items())
            braced = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample.name}{braced} {catalogue.number(sample.value)}\n")
    return "".join(lines).encode()
