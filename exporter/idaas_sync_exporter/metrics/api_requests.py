"""The exporter's own counters of its API requests, fed by the client's observer hook."""

from __future__ import annotations

from types import MappingProxyType

from idaas_sync_exporter.api.errors import bounded_code
from idaas_sync_exporter.histogram import API_DURATION_BUCKETS, bucket_index
from idaas_sync_exporter.metrics.snapshot import ApiRequestView


class ApiStats:
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
