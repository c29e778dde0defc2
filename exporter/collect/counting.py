"""The counting rules: what one finished job adds to its target's counters and gauges."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from exporter.api.errors import bounded_code
from exporter.api.models import COUNT_RESULTS, SynchronizationJob
from exporter.metrics.catalogue import JOB_DURATION_BUCKETS, bucket_index


class TargetKey(NamedTuple):
    target_type: str
    target_id: str
    direction: str


@dataclass(slots=True)
class LastJob:
    job_id: str
    status: str
    start_ms: int
    end_ms: int | None
    objects: dict[tuple[str, str, str], int]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "objects": [[*k, v] for k, v in self.objects.items()],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LastJob:
        start_ms = _millis_of(raw, "start")
        if start_ms is None:
            raise KeyError("start_ms")
        objects = {(o, a, r): v for o, a, r, v in raw["objects"]}
        return cls(raw["job_id"], raw["status"], start_ms, _millis_of(raw, "end"), objects)


def _millis_of(raw: dict[str, Any], name: str) -> int | None:
    """``name_ms`` of a stored document, or ``name`` in seconds as schema 3 stored it."""
    if f"{name}_ms" in raw:
        value = raw[f"{name}_ms"]
        if value is not None and type(value) is not int:
            raise TypeError(f"{name}_ms is not an integer")
        return value
    seconds = raw[name]
    return None if seconds is None else round(float(seconds) * 1000)


def job_objects(job: SynchronizationJob) -> dict[tuple[str, str, str], int]:
    """(object_type, action, result) -> count, non-zero only; ``total`` is left out, it is the sum.

    Zeros are implied: the exposition renders every standard combination, 0 where absent.
    """
    objects: dict[tuple[str, str, str], int] = {}
    for object_type, per_action in job.statistics.items():
        for action, counts in per_action.items():
            for result in COUNT_RESULTS:
                value = getattr(counts, result)
                if value:
                    objects[(sys.intern(object_type), sys.intern(action), result)] = value
    return objects


@dataclass(slots=True)
class TargetTally:
    """Everything exported for one target (type, id, direction)."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (trigger_type, status)
    objects: dict[tuple[str, str, str], int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(JOB_DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    duration_count: int = 0
    last_job: LastJob | None = None
    last_success_end_ms: int | None = None

    def count(self, job: SynchronizationJob) -> None:
        key = (job.trigger_type, job.status)
        self.jobs[key] = self.jobs.get(key, 0) + 1
        for object_key, value in job_objects(job).items():
            self.objects[object_key] = self.objects.get(object_key, 0) + value
        if job.error_code:
            code = bounded_code(job.error_code, self.errors)
            self.errors[code] = self.errors.get(code, 0) + 1
        duration = job.duration_seconds
        if duration is not None:
            self.duration_buckets[bucket_index(JOB_DURATION_BUCKETS, duration)] += 1
            self.duration_sum += duration
            self.duration_count += 1

    def observe_latest(self, job: SynchronizationJob) -> None:
        """Keep the newest finished job (by start, then end time) and the newest success."""
        current = self.last_job
        candidate = (job.start_ms, job.end_ms or 0, job.job_id)
        if current is None or candidate >= (current.start_ms, current.end_ms or 0, current.job_id):
            self.last_job = LastJob(job.job_id, job.status, job.start_ms, job.end_ms, job_objects(job))
        if (
            job.status == "success"
            and job.end_ms is not None
            and (self.last_success_end_ms is None or job.end_ms > self.last_success_end_ms)
        ):
            self.last_success_end_ms = job.end_ms

    def copy(self) -> TargetTally:
        return TargetTally(
            jobs=dict(self.jobs),
            objects=dict(self.objects),
            errors=dict(self.errors),
            duration_buckets=list(self.duration_buckets),
            duration_sum=self.duration_sum,
            duration_count=self.duration_count,
            last_job=self.last_job,  # replaced, never mutated
            last_success_end_ms=self.last_success_end_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": [[*k, v] for k, v in self.jobs.items()],
            "objects": [[*k, v] for k, v in self.objects.items()],
            "errors": self.errors,
            "duration_buckets": self.duration_buckets,
            "duration_sum": self.duration_sum,
            "duration_count": self.duration_count,
            "last_job": self.last_job.to_json() if self.last_job else None,
            "last_success_end_ms": self.last_success_end_ms,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TargetTally:
        return cls(
            jobs={(t, s): v for t, s, v in raw["jobs"]},
            objects={(o, a, r): v for o, a, r, v in raw["objects"]},
            errors=dict(raw["errors"]),
            duration_buckets=list(raw["duration_buckets"]),
            duration_sum=float(raw["duration_sum"]),
            duration_count=int(raw["duration_count"]),
            last_job=LastJob.from_json(raw["last_job"]) if raw["last_job"] else None,
            last_success_end_ms=_millis_of(raw, "last_success_end"),
        )
