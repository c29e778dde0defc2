"""Builds the immutable :class:`Snapshot` the HTTP side renders, from each instance's state and health."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
from idaas_sync_exporter.collect.health import InstanceHealth
from idaas_sync_exporter.collect.state import InstanceState
from idaas_sync_exporter.collect.targets import PullConfigView, TargetCatalogue, TargetInfo
from idaas_sync_exporter.metrics.snapshot import ApiRequestView, InstanceView, Snapshot, TargetView


@dataclass(frozen=True, slots=True)
class InstanceSources:
    """Everything exported about one instance, as it is now."""

    state: InstanceState
    health: InstanceHealth
    targets: TargetCatalogue


# Target names, pull configurations, pull-config failures by code, targets with altered labels by reason.
_CatalogueSources = tuple[
    Mapping[tuple[str, str], TargetInfo], Mapping[str, PullConfigView], dict[str, int], Mapping[str, int]
]
_CatalogueViews = tuple[
    Mapping[tuple[str, str], TargetInfo], Mapping[str, PullConfigView], Mapping[str, int], Mapping[str, int]
]


@dataclass(slots=True)
class _InstanceViews:
    """The target views last built for one instance, and what they were built from."""

    tallies: dict[TargetKey, TargetTally] | None = None
    progress: dict[TargetKey, tuple[tuple[tuple[str, int], ...], int | None]] = field(default_factory=dict)
    views: dict[TargetKey, TargetView] = field(default_factory=dict)
    mapping: Mapping[TargetKey, TargetView] = field(default_factory=lambda: MappingProxyType({}))
    catalogue: _CatalogueSources | tuple[()] = ()
    catalogue_views: _CatalogueViews = field(
        default_factory=lambda: (MappingProxyType({}), MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))
    )


class SnapshotBuilder:
    """Makes a new snapshot per change, reusing the views of unchanged targets.

    A reused view is the same object, and when no target changed the instance's whole
    ``targets`` mapping is the same object, so the renderer skips them in one comparison.
    """

    def __init__(self) -> None:
        self._version = 0
        self._instances: dict[str, _InstanceViews] = {}

    def build(self, instances: Mapping[str, InstanceSources], api: ApiRequestView, *, now: float) -> Snapshot:
        self._version += 1
        views = {instance_id: self._instance(instance_id, sources) for instance_id, sources in instances.items()}
        return Snapshot(self._version, now, MappingProxyType(views), api)

    def _instance(self, instance_id: str, sources: InstanceSources) -> InstanceView:
        health = sources.health
        cached = self._instances.setdefault(instance_id, _InstanceViews())
        names, pull_configs, failures, label_anomalies = self._catalogue(cached, sources.targets)
        return InstanceView(
            instance_id=instance_id,
            up=health.up,
            polled=health.polled,
            last_success=health.last_success,
            last_error=health.last_error,
            poll_duration=health.poll_duration,
            poll_failures=health.poll_failures,
            targets=self._targets(cached, sources.state),
            target_info=names,
            pull_configs=pull_configs,
            pull_config_failures=failures,
            target_anomalies=label_anomalies,
            anomalies=MappingProxyType(dict(health.anomalies)),
            recent_jobs=sources.state.recent,
        )

    @staticmethod
    def _catalogue(cached: _InstanceViews, catalogue: TargetCatalogue) -> _CatalogueViews:
        """Read-only copies of the catalogue, the same objects for as long as it stays the same.

        A refresh replaces ``names``, ``pull_configs`` and ``label_anomalies`` with new dictionaries
        (held here, so comparing identities is safe); failures are counted in place, so they are compared.
        """
        current: _CatalogueSources = (
            catalogue.names,
            catalogue.pull_configs,
            dict(catalogue.pull_config_failures),
            catalogue.label_anomalies,
        )
        previous = cached.catalogue
        if (
            not previous
            or previous[0] is not current[0]
            or previous[1] is not current[1]
            or previous[2] != current[2]
            or previous[3] is not current[3]
        ):
            cached.catalogue = current
            cached.catalogue_views = (
                MappingProxyType(dict(current[0])),
                MappingProxyType(dict(current[1])),
                MappingProxyType(current[2]),
                MappingProxyType(dict(current[3])),
            )
        return cached.catalogue_views

    @staticmethod
    def _targets(cached: _InstanceViews, state: InstanceState) -> Mapping[TargetKey, TargetView]:
        in_progress: dict[TargetKey, dict[str, int]] = {}
        oldest: dict[TargetKey, int] = {}
        for tracked in state.tracked.values():
            counts = in_progress.setdefault(tracked.target, {})
            counts[tracked.status] = counts.get(tracked.status, 0) + 1
            oldest[tracked.target] = min(oldest.get(tracked.target, tracked.start_ms), tracked.start_ms)
        progress: dict[TargetKey, tuple[tuple[tuple[str, int], ...], int | None]] = {
            key: (tuple(sorted(counts.items())), oldest[key]) for key, counts in in_progress.items()
        }
        tallies_changed = state.targets is not cached.tallies
        if not tallies_changed and progress == cached.progress:
            return cached.mapping  # nothing changed since the last build
        # With the same tallies, only targets whose in-progress jobs changed need a look;
        # after a poll that touched targets, each target costs one identity check.
        if tallies_changed:
            suspects: Iterable[TargetKey] = state.targets
        else:
            suspects = [key for key in progress.keys() | cached.progress.keys() if key in state.targets]
        views = dict(cached.views)
        previous = cached.tallies or {}
        for key in suspects:
            tally = state.targets[key]
            now = progress.get(key, ((), None))
            if key in views and previous.get(key) is tally and cached.progress.get(key, ((), None)) == now:
                continue
            views[key] = TargetView.of(tally, dict(now[0]), now[1])
        if len(views) != len(state.targets):
            views = {key: view for key, view in views.items() if key in state.targets}
        cached.tallies = state.targets
        cached.progress = progress
        cached.views = views
        cached.mapping = MappingProxyType(views)
        return cached.mapping
