"""Builds the immutable :class:`Snapshot` the HTTP side renders, from each instance's state and health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter.collect.counting import TargetKey, TargetTally
from exporter.collect.health import InstanceHealth
from exporter.collect.state import InstanceState
from exporter.collect.targets import TargetCatalogue
from exporter.metrics.snapshot import ApiRequestView, InstanceView, Snapshot, TargetView


@dataclass(frozen=True, slots=True)
class InstanceSources:
    """Everything exported about one instance, as it is now."""

    state: InstanceState
    health: InstanceHealth
    targets: TargetCatalogue


class SnapshotBuilder:
    """Makes a new snapshot per change, reusing the views of unchanged targets.

    A reused view is the same object, so the renderer keeps that target's rendered lines.
    """

    def __init__(self) -> None:
        self._version = 0
        self._views: dict[
            tuple[str, TargetKey], tuple[TargetTally, tuple[tuple[str, int], ...], int | None, TargetView]
        ] = {}

    def build(self, instances: Mapping[str, InstanceSources], api: ApiRequestView, *, now: float) -> Snapshot:
        self._version += 1
        views = {instance_id: self._instance(instance_id, sources) for instance_id, sources in instances.items()}
        return Snapshot(self._version, now, MappingProxyType(views), api)

    def _instance(self, instance_id: str, sources: InstanceSources) -> InstanceView:
        health = sources.health
        catalogue = sources.targets
        return InstanceView(
            instance_id=instance_id,
            up=health.up,
            polled=health.polled,
            last_success=health.last_success,
            last_error=health.last_error,
            poll_duration=health.poll_duration,
            poll_failures=health.poll_failures,
            targets=MappingProxyType(self._targets(instance_id, sources.state)),
            target_info=MappingProxyType(dict(catalogue.names)),
            pull_configs=MappingProxyType(dict(catalogue.pull_configs)),
            pull_config_failures=MappingProxyType(dict(catalogue.pull_config_failures)),
            anomalies=MappingProxyType(dict(health.anomalies)),
        )

    def _targets(self, instance_id: str, state: InstanceState) -> dict[TargetKey, TargetView]:
        in_progress: dict[TargetKey, dict[str, int]] = {}
        oldest: dict[TargetKey, int] = {}
        for tracked in state.tracked.values():
            counts = in_progress.setdefault(tracked.target, {})
            counts[tracked.status] = counts.get(tracked.status, 0) + 1
            oldest[tracked.target] = min(oldest.get(tracked.target, tracked.start_ms), tracked.start_ms)
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
        return targets
