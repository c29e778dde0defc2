"""The counting rules: what one finished job adds to its target's counters and gauges."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from idaas_sync_exporter.api.errors import bounded_code
from idaas_sync_exporter.api.models import (
    ACTIONS,
    COUNT_RESULTS,
    MAX_NEW_ACTIONS,
    MAX_NEW_OBJECT_TYPES,
    MAX_NEW_TRIGGER_TYPES,
    OBJECT_TYPES,
    OTHER_LABEL,
    TRIGGER_TYPES,
    SynchronizationJob,
    bounded_label,
)
from idaas_sync_exporter.histogram import JOB_DURATION_BUCKETS, bucket_index

log = logging.getLogger(__name__)

_DOCUMENTED_OBJECT_TYPES = frozenset(OBJECT_TYPES)
_DOCUMENTED_ACTIONS = frozenset(ACTIONS)
_DOCUMENTED_TRIGGER_TYPES = frozenset(TRIGGER_TYPES)


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

    def copy(self) -> LastJob:
        return LastJob(self.job_id, self.status, self.start_ms, self.end_ms, dict(self.objects))

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


# Statuses of a job the on-call person is paged for: the latest such job of a target is exported by id.
FAILURE_STATUSES = ("failed", "partial_success")


def finish_order(start_ms: int, end_ms: int | None, job_id: str) -> tuple[int, int, str]:
    """Newest-first order of finished jobs: when each finished (its start when the API gave no usable
    end), then its start and id. The store's ``ORDER BY`` of recent jobs is the same."""
    return (end_ms if end_ms is not None else start_ms, start_ms, job_id)


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """One finished job as the recent-jobs page, the job event and the latest-failure series show it."""

    target: TargetKey
    job_id: str
    trigger_type: str
    status: str
    start_ms: int
    end_ms: int | None
    error_code: str | None
    objects: tuple[tuple[tuple[str, str, str], int], ...]

    @property
    def sort_ms(self) -> int:
        return finish_order(self.start_ms, self.end_ms, self.job_id)[0]

    @property
    def order(self) -> tuple[int, int, str]:
        return finish_order(self.start_ms, self.end_ms, self.job_id)

    @classmethod
    def of(cls, job: SynchronizationJob, target: TargetKey, error_code: str | None) -> FinishedJob:
        return cls(
            target,
            job.job_id,
            job.trigger_type,
            job.status,
            job.start_ms,
            job.end_ms,
            error_code,
            tuple(sorted(job_objects(job).items())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": list(self.target),
            "job_id": self.job_id,
            "trigger_type": self.trigger_type,
            "status": self.status,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "error_code": self.error_code,
            "objects": [[*key, value] for key, value in self.objects],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FinishedJob:
        target_type, target_id, direction = raw["target"]
        texts = (target_type, target_id, direction, raw["job_id"], raw["trigger_type"], raw["status"])
        if not all(isinstance(value, str) for value in texts):
            raise TypeError("a recent job has a field that is not text")
        start_ms, end_ms, code = raw["start_ms"], raw["end_ms"], raw["error_code"]
        if type(start_ms) is not int or (end_ms is not None and type(end_ms) is not int):
            raise TypeError("a recent job's times are not integers")
        if code is not None and not isinstance(code, str):
            raise TypeError("a recent job's error code is not text")
        objects = tuple(((str(o), str(a), str(r)), int(v)) for o, a, r, v in raw["objects"])
        return cls(
            TargetKey(target_type, target_id, direction),
            raw["job_id"],
            raw["trigger_type"],
            raw["status"],
            start_ms,
            end_ms,
            code,
            objects,
        )


@dataclass(frozen=True, slots=True)
class Exemplar:
    """The latest job that moved one counter series: its id, and its end time for the exemplar's timestamp."""

    job_id: str
    end_ms: int | None

    def newer_than(self, other: Exemplar | None) -> bool:
        if other is None:
            return True
        return (self.end_ms or 0, self.job_id) >= (other.end_ms or 0, other.job_id)


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A target's latest failed or partially successful job, for ``idaas_sync_last_failed_job_info``."""

    job_id: str
    status: str
    error_code: str
    start_ms: int
    end_ms: int | None


def _millis_of(raw: Mapping[str, Any], name: str) -> int | None:
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


def _exemplar(job_id: Any, end_ms: Any) -> Exemplar:
    if not isinstance(job_id, str) or (end_ms is not None and type(end_ms) is not int):
        raise TypeError("an exemplar is not a job id and an end time")
    return Exemplar(job_id, end_ms)


def _failure_json(failure: FailedJob | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "job_id": failure.job_id,
        "status": failure.status,
        "error_code": failure.error_code,
        "start_ms": failure.start_ms,
        "end_ms": failure.end_ms,
    }


def _failure_of(raw: Any) -> FailedJob | None:
    if raw is None:
        return None
    texts = (raw["job_id"], raw["status"], raw["error_code"])
    if not all(isinstance(value, str) for value in texts):
        raise TypeError("the latest failed job has a field that is not text")
    start_ms, end_ms = raw["start_ms"], raw["end_ms"]
    if type(start_ms) is not int or (end_ms is not None and type(end_ms) is not int):
        raise TypeError("the latest failed job's times are not integers")
    return FailedJob(raw["job_id"], raw["status"], raw["error_code"], start_ms, end_ms)


@dataclass(frozen=True, slots=True)
class Stored:
    """How one field of a :class:`TargetTally` is copied for a poll, written to the state file and read back.

    A committed tally is never changed: snapshots show its dictionaries through read-only proxies
    without copying them, and the snapshot builder and the exposition reuse what they made of a
    tally for as long as it is the same object. A poll changes a copy instead, so ``copy`` must
    leave nothing the copy could change shared with the original.
    """

    copy: Callable[[Any], Any]
    dump: Callable[[Any], Any]
    # Reads the field from the target's whole stored document: older files may spell it differently.
    load: Callable[[Mapping[str, Any], str], Any]
    # Files written before the field existed lack it and read the field's default; without it, a
    # document that lacks the field is damage (the store moves the file aside).
    optional: bool = False


# The key of a TargetTally field's metadata that holds its Stored. The kinds below return that metadata.
_STORED = "stored"


def _same(value: Any) -> Any:
    return value


def _number(convert: Callable[[Any], Any], *, optional: bool = False) -> dict[str, Stored]:
    """A number, stored as it is and read back through ``convert``."""
    return {_STORED: Stored(_same, _same, lambda raw, name: convert(raw[name]), optional)}


def _millis(*, optional: bool = False) -> dict[str, Stored]:
    """A time in milliseconds or None, in a field named ``..._ms``; schema 3 stored it in seconds, without ``_ms``."""
    return {_STORED: Stored(_same, _same, lambda raw, name: _millis_of(raw, name.removesuffix("_ms")), optional)}


def _named_counts(*, optional: bool = False) -> dict[str, Stored]:
    """Counts by one text label, stored as a JSON object."""
    return {_STORED: Stored(dict, _same, lambda raw, name: dict(raw[name]), optional)}


def _buckets(*, optional: bool = False) -> dict[str, Stored]:
    """Counts by position (histogram buckets), stored as a JSON array."""
    return {_STORED: Stored(list, _same, lambda raw, name: list(raw[name]), optional)}


def _counts(labels: int, *, optional: bool = False) -> dict[str, Stored]:
    """Counts by ``labels`` label values (a tuple, or a bare value when one), stored as rows ``[*labels, count]``."""

    def dump(counts: dict[Any, int]) -> list[list[Any]]:
        return [[*_key_cells(key, labels), count] for key, count in counts.items()]

    def load(raw: Mapping[str, Any], name: str) -> dict[Any, int]:
        return {key: count for key, (count,) in (_split_row(row, labels, 1) for row in raw[name])}

    return {_STORED: Stored(dict, dump, load, optional)}


def _exemplars(labels: int, *, optional: bool = False) -> dict[str, Stored]:
    """The latest job behind each series, by ``labels`` label values, stored as rows ``[*labels, job_id, end_ms]``."""

    def dump(exemplars: dict[Any, Exemplar]) -> list[list[Any]]:
        return [[*_key_cells(key, labels), e.job_id, e.end_ms] for key, e in exemplars.items()]

    def load(raw: Mapping[str, Any], name: str) -> dict[Any, Exemplar]:
        rows = (_split_row(row, labels, 2) for row in raw[name])
        return {key: _exemplar(job_id, end_ms) for key, (job_id, end_ms) in rows}

    # Exemplars are frozen: copies share them, not the dictionary.
    return {_STORED: Stored(dict, dump, load, optional)}


def _last_job(*, optional: bool = False) -> dict[str, Stored]:
    return {
        _STORED: Stored(
            lambda last: last.copy() if last else None,
            lambda last: last.to_json() if last else None,
            lambda raw, name: LastJob.from_json(raw[name]) if raw[name] else None,
            optional,
        )
    }


def _last_failure(*, optional: bool = False) -> dict[str, Stored]:
    # Frozen: copies share it.
    return {_STORED: Stored(_same, _failure_json, lambda raw, name: _failure_of(raw[name]), optional)}


def _key_cells(key: Any, labels: int) -> list[Any]:
    """A key as the cells of a stored row: a bare value when there is one label, else a tuple of them."""
    return [*key] if labels > 1 else [key]


def _split_row(row: Any, labels: int, values: int) -> tuple[Any, list[Any]]:
    """A stored row as (key, values), the key as :func:`_key_cells` wrote it."""
    cells = list(row)
    if len(cells) != labels + values:
        raise ValueError(f"a stored row has {len(cells)} cells, not {labels + values}")
    return (tuple(cells[:labels]) if labels > 1 else cells[0]), cells[labels:]


@dataclass(slots=True)
class TargetTally:
    """Everything exported for one target (type, id, direction).

    Each field says in its metadata how it is copied and stored (:class:`Stored`); ``copy``,
    ``to_json`` and ``from_json`` follow from that, in the order of the fields.
    """

    jobs: dict[tuple[str, str], int] = field(default_factory=dict, metadata=_counts(2))  # (trigger_type, status)
    objects: dict[tuple[str, str, str], int] = field(default_factory=dict, metadata=_counts(3))
    errors: dict[str, int] = field(default_factory=dict, metadata=_named_counts())
    duration_buckets: list[int] = field(
        default_factory=lambda: [0] * (len(JOB_DURATION_BUCKETS) + 1), metadata=_buckets()
    )
    duration_sum: float = field(default=0.0, metadata=_number(float))
    duration_count: int = field(default=0, metadata=_number(int))
    last_job: LastJob | None = field(default=None, metadata=_last_job())
    last_success_end_ms: int | None = field(default=None, metadata=_millis())
    # The latest job behind each jobs series ((trigger_type, status)) and each error code.
    # Optional: files written before exemplars and the latest failure were kept lack them.
    job_exemplars: dict[tuple[str, str], Exemplar] = field(default_factory=dict, metadata=_exemplars(2, optional=True))
    error_exemplars: dict[str, Exemplar] = field(default_factory=dict, metadata=_exemplars(1, optional=True))
    last_failure: FailedJob | None = field(default=None, metadata=_last_failure(optional=True))

    def _trigger_label(self, job: SynchronizationJob) -> str:
        trigger = job.trigger_type
        if trigger in _DOCUMENTED_TRIGGER_TYPES or (trigger, job.status) in self.jobs:
            return trigger
        present = {known for known, _ in self.jobs}
        folded = bounded_label(trigger, _DOCUMENTED_TRIGGER_TYPES, present, MAX_NEW_TRIGGER_TYPES)
        if folded != trigger and OTHER_LABEL not in present:
            _log_first_fold(job, "trigger types", MAX_NEW_TRIGGER_TYPES)
        return folded

    def objects_of(self, job: SynchronizationJob) -> dict[tuple[str, str, str], int]:
        """``job_objects(job)`` with object types and actions past this target's bounds counted as ``other``.

        Every count is kept, under its own label or ``other``, so the totals stay exact; a label,
        once present, stays allowed, so the result depends only on what the target counted before.
        """
        objects = job_objects(job)
        if all(
            key in self.objects or (key[0] in _DOCUMENTED_OBJECT_TYPES and key[1] in _DOCUMENTED_ACTIONS)
            for key in objects
        ):
            return objects  # the usual case, without building the sets below
        types = {object_type for object_type, _, _ in self.objects}
        actions = {action for _, action, _ in self.objects}
        had_other = OTHER_LABEL in types or OTHER_LABEL in actions
        folded: dict[tuple[str, str, str], int] = {}
        cut = False
        for (given_type, given_action, result), value in objects.items():
            object_type = bounded_label(given_type, _DOCUMENTED_OBJECT_TYPES, types, MAX_NEW_OBJECT_TYPES)
            action = bounded_label(given_action, _DOCUMENTED_ACTIONS, actions, MAX_NEW_ACTIONS)
            cut = cut or (object_type, action) != (given_type, given_action)
            types.add(object_type)
            actions.add(action)
            key = (object_type, action, result)
            folded[key] = folded.get(key, 0) + value
        if cut and not had_other:
            _log_first_fold(job, "object types or actions", MAX_NEW_OBJECT_TYPES)
        return folded

    def count(self, job: SynchronizationJob) -> str | None:
        """Add ``job`` to the counters; returns the error code it was counted under, if any."""
        key = (self._trigger_label(job), job.status)
        self.jobs[key] = self.jobs.get(key, 0) + 1
        exemplar = Exemplar(job.job_id, job.end_ms)
        if exemplar.newer_than(self.job_exemplars.get(key)):
            self.job_exemplars[key] = exemplar
        for object_key, value in self.objects_of(job).items():
            self.objects[object_key] = self.objects.get(object_key, 0) + value
        code = None
        if job.error_code:
            code = bounded_code(job.error_code, self.errors)
            self.errors[code] = self.errors.get(code, 0) + 1
            if exemplar.newer_than(self.error_exemplars.get(code)):
                self.error_exemplars[code] = exemplar
        duration = job.duration_seconds
        if duration is not None:
            self.duration_buckets[bucket_index(JOB_DURATION_BUCKETS, duration)] += 1
            self.duration_sum += duration
            self.duration_count += 1
        return code

    def observe_latest(self, job: SynchronizationJob) -> None:
        """Keep the newest finished job (by start, then end time) and the newest success."""
        current = self.last_job
        candidate = (job.start_ms, job.end_ms or 0, job.job_id)
        if current is None or candidate >= (current.start_ms, current.end_ms or 0, current.job_id):
            self.last_job = LastJob(job.job_id, job.status, job.start_ms, job.end_ms, self.objects_of(job))
        if (
            job.status == "success"
            and job.end_ms is not None
            and (self.last_success_end_ms is None or job.end_ms > self.last_success_end_ms)
        ):
            self.last_success_end_ms = job.end_ms
        failure = self.last_failure
        if job.status in FAILURE_STATUSES and (
            failure is None or candidate >= (failure.start_ms, failure.end_ms or 0, failure.job_id)
        ):
            self.last_failure = FailedJob(job.job_id, job.status, job.error_code or "", job.start_ms, job.end_ms)

    def copy(self) -> TargetTally:
        """A tally a poll may change without changing this one."""
        return TargetTally(**{name: stored.copy(getattr(self, name)) for name, stored in _TALLY_FIELDS})

    def to_json(self) -> dict[str, Any]:
        return {name: stored.dump(getattr(self, name)) for name, stored in _TALLY_FIELDS}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TargetTally:
        return cls(
            **{
                name: stored.load(raw, name)
                for name, stored in _TALLY_FIELDS
                if not (stored.optional and name not in raw)
            }
        )


def _stored_fields(cls: type[Any]) -> tuple[tuple[str, Stored], ...]:
    unsaid = [each.name for each in fields(cls) if _STORED not in each.metadata]
    if unsaid:
        raise TypeError(f"{cls.__name__}: say how {', '.join(unsaid)} is copied and stored (metadata=..., see Stored)")
    return tuple((each.name, each.metadata[_STORED]) for each in fields(cls))


_TALLY_FIELDS = _stored_fields(TargetTally)


def _log_first_fold(job: SynchronizationJob, what: str, limit: int) -> None:
    # Once per target and kind: from then on ``other`` is present and the folding is silent.
    log.warning(
        "a target shows more undocumented label values than are exported; the rest are counted as other",
        extra={
            "target_type": job.target_type,
            "target_id": job.target_id,
            "job_id": job.job_id,
            "labels": what,
            "limit": limit,
        },
    )
