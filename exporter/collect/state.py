"""What the exporter remembers between polls and across restarts, and the SQLite file that keeps it.

One row per IDaaS instance holds a JSON document with the counters, the ids of
jobs already counted (still inside the re-read window), the in-progress jobs
being followed, each target's latest job and the cursor. A poll replaces the row
in one transaction, so a crash before the commit simply redoes the poll.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from exporter.api.errors import bounded_code
from exporter.api.models import COUNT_RESULTS, SynchronizationJob
from exporter.metrics.catalogue import JOB_DURATION_BUCKETS, bucket_index

log = logging.getLogger(__name__)

# 1: one JSON document per instance; 2: targets in their own rows, written only when changed;
# 3: the same tables, marked with APPLICATION_ID.
SCHEMA_VERSION = 3


class TargetKey(NamedTuple):
    target_type: str
    target_id: str
    direction: str


@dataclass(slots=True)
class LastJob:
    job_id: str
    status: str
    start: float
    end: float | None
    objects: dict[tuple[str, str, str], int]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "objects": [[*k, v] for k, v in self.objects.items()],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LastJob:
        return cls(
            raw["job_id"], raw["status"], raw["start"], raw["end"], {(o, a, r): v for o, a, r, v in raw["objects"]}
        )


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
    last_success_end: float | None = None

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
        candidate = (job.start_time, job.end_time or 0.0, job.job_id)
        if current is None or candidate >= (current.start, current.end or 0.0, current.job_id):
            self.last_job = LastJob(job.job_id, job.status, job.start_time, job.end_time, job_objects(job))
        if (
            job.status == "success"
            and job.end_time is not None
            and (self.last_success_end is None or job.end_time > self.last_success_end)
        ):
            self.last_success_end = job.end_time

    def copy(self) -> TargetTally:
        return TargetTally(
            jobs=dict(self.jobs),
            objects=dict(self.objects),
            errors=dict(self.errors),
            duration_buckets=list(self.duration_buckets),
            duration_sum=self.duration_sum,
            duration_count=self.duration_count,
            last_job=self.last_job,  # replaced, never mutated
            last_success_end=self.last_success_end,
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
            "last_success_end": self.last_success_end,
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
            last_success_end=raw["last_success_end"],
        )


@dataclass(slots=True)
class TrackedJob:
    """A job seen pending/running, followed until the API reports it final."""

    target: TargetKey
    status: str
    start_ms: int


@dataclass(slots=True)
class InstanceState:
    """Committed state of one instance. Never mutated after commit: a poll works on a :class:`PollWork`."""

    instance_id: str
    # Latest job start time the API has shown us (API clock, ms). The next poll
    # re-reads from cursor - overlap, so the cost follows new jobs, not the window.
    cursor_ms: int | None = None
    targets: dict[TargetKey, TargetTally] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)  # job id -> start ms
    tracked: dict[str, TrackedJob] = field(default_factory=dict)

    @property
    def is_cold(self) -> bool:
        return self.cursor_ms is None

    @property
    def watermark_ms(self) -> int | None:
        """Every job that started before this is final and counted."""
        if self.cursor_ms is None:
            return None
        oldest = min((t.start_ms for t in self.tracked.values()), default=self.cursor_ms)
        return min(self.cursor_ms, oldest)

    def begin(self) -> PollWork:
        return PollWork(self)

    def meta_json(self) -> str:
        return json.dumps(
            {
                "cursor_ms": self.cursor_ms,
                "counted": self.counted,
                "tracked": [[job_id, *t.target, t.status, t.start_ms] for job_id, t in self.tracked.items()],
            },
            separators=(",", ":"),
        )


class PollWork:
    """A poll's changes, copy-on-write over the committed state.

    Only the targets a poll touches are copied, so a poll's cost (and what it
    writes to disk) follows the jobs it saw, not the number of targets.
    """

    def __init__(self, base: InstanceState) -> None:
        self.base = base
        self.cursor_ms = base.cursor_ms
        self.targets = dict(base.targets)
        self.counted = dict(base.counted)
        self.tracked = dict(base.tracked)
        self.touched: set[TargetKey] = set()

    def tally(self, key: TargetKey) -> TargetTally:
        if key not in self.touched:
            current = self.targets.get(key)
            self.targets[key] = TargetTally() if current is None else current.copy()
            self.touched.add(key)
        return self.targets[key]

    def result(self) -> InstanceState:
        return InstanceState(self.base.instance_id, self.cursor_ms, self.targets, self.counted, self.tracked)


class StateError(Exception):
    """The state file cannot be used; the message says why and what to do."""


# Written into the SQLite header of every state file (``PRAGMA application_id``), so that
# the exporter recognises its own file and never touches anybody else's: "IDSE".
APPLICATION_ID = 0x49445345
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Files written before the mark existed, recognised by their exact tables.
_UNMARKED_SCHEMAS = {1: {"instance_state"}, 2: {"instances", "targets"}}


def _refuse_foreign(path: str, what: str) -> StateError:
    return StateError(
        f"state path {path} is {what}, not an idaas-sync-exporter state file; it was left untouched: "
        "point IDAAS_EXPORTER_STATE_PATH (--state-path) at a new file, e.g. "
        "/var/lib/idaas-sync-exporter/state.sqlite3"
    )


def _check_location(path: str) -> bool:
    """Whether ``path`` holds a regular file (False when nothing is there); refuses anything else."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False  # creating the directory reports a blocked parent
    except OSError as exc:
        raise StateError(f"cannot inspect state path {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise StateError(
            f"state path {path} is a directory; it was left untouched: name a file inside it, "
            f"e.g. --state-path {os.path.join(path, 'state.sqlite3')}"
        )
    if not stat.S_ISREG(mode):
        raise _refuse_foreign(path, "a device, pipe or socket")
    return True


def _meta_from_json(text: str) -> tuple[int | None, dict[str, int], dict[str, TrackedJob]]:
    """Cursor, counted ids and followed jobs of an instance row; ValueError/TypeError/KeyError when damaged."""
    meta = json.loads(text)
    cursor = meta["cursor_ms"]
    if cursor is not None and type(cursor) is not int:
        raise TypeError("cursor_ms is not an integer")
    counted = meta["counted"]
    if not isinstance(counted, dict) or any(type(v) is not int for v in counted.values()):
        raise TypeError("counted is not a mapping of job ids to start times")
    tracked: dict[str, TrackedJob] = {}
    for job_id, target_type, target_id, direction, status, start in meta["tracked"]:
        if not all(isinstance(v, str) for v in (job_id, target_type, target_id, direction, status)):
            raise TypeError("a followed job has a field that is not text")
        if type(start) is not int:
            raise TypeError("a followed job's start time is not an integer")
        tracked[job_id] = TrackedJob(TargetKey(target_type, target_id, direction), status, start)
    return cursor, {str(k): v for k, v in counted.items()}, tracked


class StateStore:
    """SQLite-backed; ``path=None`` keeps state in memory only (lost on restart).

    Only a file the exporter recognises as its own (marked with :data:`APPLICATION_ID`,
    or an older file with exactly the exporter's tables) is ever opened for writing,
    migrated, or moved aside when damaged. Anything else at the path is refused,
    untouched. An exclusive lock keeps a second exporter off the same file.
    """

    def __init__(self, path: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.moved_aside: str | None = None
        # Why instances without saved state start cold; logged when they do.
        self.cold_cause = "state is kept in memory only (state_path is empty)"
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        if path:
            self._open_file(path, clock)
        try:
            # A reader someone left open (the sqlite3 shell, a backup) gets a few seconds to finish.
            self._db = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False, timeout=5)
            self._migrate()
            # A rollback journal, not WAL: it is deleted after every commit, so the state
            # never needs more disk than the file and one poll's changes.
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            self._release_lock()
            raise StateError(
                f"cannot open state file {path}: {exc}; check that the directory is writable "
                "(or set IDAAS_EXPORTER_STATE_PATH elsewhere)"
            ) from None

    def _open_file(self, path: str, clock: Callable[[], float]) -> None:
        exists = _check_location(path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory for {path}: {exc.strerror}") from None
        self._take_lock(path)
        try:
            problem = self._inspect(path) if exists else None
        except StateError:
            self._release_lock()
            raise
        self.cold_cause = "the state file has no saved state for this instance yet"
        if not exists:
            self.cold_cause = "the state file is new"
        if problem is not None:
            self._release_lock()
            self.moved_aside = self._move_aside(path, problem, clock)
            self.cold_cause = f"the previous state file was moved aside ({problem})"
            self._take_lock(path)

    def _take_lock(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot open state file {path}: {exc.strerror}; check that the directory is writable "
                "(or set IDAAS_EXPORTER_STATE_PATH elsewhere)"
            ) from None
        try:
            # flock, not SQLite's own fcntl locks: those last one transaction, this one the process.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(
                f"state file {path} is in use by another exporter process; run one exporter per state file "
                "(give each its own IDAAS_EXPORTER_STATE_PATH)"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @staticmethod
    def _inspect(path: str) -> str | None:
        """Why the exporter's own file cannot be used as it is, or None when it can.

        Raises :class:`StateError` for a file that is not the exporter's, and for one
        written by a newer exporter: neither may be changed.
        """
        with open(path, "rb") as file:
            header = file.read(100)
        if not header:
            return None  # an empty file holds nothing to lose; SQLite starts a new database in it
        if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
            raise _refuse_foreign(path, "not a SQLite database")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                application_id = db.execute("PRAGMA application_id").fetchone()[0]
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if application_id != APPLICATION_ID and (
                    application_id != 0 or _UNMARKED_SCHEMAS.get(version) != tables
                ):
                    raise _refuse_foreign(path, "a SQLite database of another application")
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"state file {path} was written by a newer exporter (schema {version}, this one reads "
                        f"{SCHEMA_VERSION}); run that version or move the file aside"
                    )
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    return "it failed SQLite's integrity check"
                if version < 2:
                    return f"it has the older schema {version} (this exporter writes {SCHEMA_VERSION})"
                for (meta,) in db.execute("SELECT meta FROM instances"):
                    _meta_from_json(meta)
                for (doc,) in db.execute("SELECT doc FROM targets"):
                    TargetTally.from_json(json.loads(doc))
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc):
                return None  # unreadable: opening it for writing reports the real problem
            return f"SQLite cannot read it ({exc})"
        except sqlite3.DatabaseError as exc:
            return f"it is not a usable SQLite database ({exc})"
        except (ValueError, KeyError, TypeError) as exc:
            return f"its content is damaged ({type(exc).__name__}: {str(exc)[:100]})"
        return None

    @staticmethod
    def _move_aside(path: str, problem: str, clock: Callable[[], float]) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
        target = f"{path}.unusable-{stamp}"
        try:
            for suffix in ("", "-wal", "-shm", "-journal"):
                if Path(path + suffix).exists():
                    os.replace(path + suffix, target + suffix)
        except OSError as exc:
            raise StateError(f"state file {path} is unusable ({problem}) and cannot be moved aside: {exc}") from None
        log.error(
            "state file unusable; moved aside, counting restarts from a cold start",
            extra={"path": path, "moved_to": target, "problem": problem},
        )
        return target

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        # One transaction, so a file is never left with tables but without the mark.
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("CREATE TABLE IF NOT EXISTS instances (instance_id TEXT PRIMARY KEY, meta TEXT NOT NULL)")
        self._db.execute(
            """
            CREATE TABLE IF NOT EXISTS targets (
                instance_id TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL,
                direction TEXT NOT NULL, doc TEXT NOT NULL,
                PRIMARY KEY (instance_id, target_type, target_id, direction)
            )
            """
        )
        self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def load(self, instance_id: str) -> InstanceState:
        with self._lock:
            return self._load(instance_id)

    def _load(self, instance_id: str) -> InstanceState:
        row = self._db.execute("SELECT meta FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        if row is None:
            log.info(
                "no saved state: cold start, jobs that finished before this poll are not counted",
                extra={"instance_id": instance_id, "cause": self.cold_cause},
            )
            return InstanceState(instance_id)
        try:
            cursor_ms, counted, tracked = _meta_from_json(row[0])
            targets = {
                TargetKey(t, i, d): TargetTally.from_json(json.loads(doc))
                for t, i, d, doc in self._db.execute(
                    "SELECT target_type, target_id, direction, doc FROM targets WHERE instance_id = ?", (instance_id,)
                )
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"state for instance {instance_id} in {self.path} is corrupt ({type(exc).__name__}); "
                "stop the exporter and move the file aside to start from a cold start"
            ) from None
        return InstanceState(instance_id, cursor_ms, targets, counted, tracked)

    def save(self, state: InstanceState, changed: set[TargetKey] | None = None) -> None:
        """Commit a poll atomically: the instance's metadata and the targets it changed.

        Safe to call from worker threads: one connection, one writer at a time.
        """
        with self._lock:
            self._save(state, changed)

    def _save(self, state: InstanceState, changed: set[TargetKey] | None) -> None:
        keys = state.targets.keys() if changed is None else changed
        rows = [
            # orjson: this runs in a worker thread and holds the GIL while it encodes.
            (state.instance_id, *key, orjson.dumps(state.targets[key].to_json()).decode())
            for key in keys
        ]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO instances (instance_id, meta) VALUES (?, ?) "
                "ON CONFLICT(instance_id) DO UPDATE SET meta = excluded.meta",
                (state.instance_id, state.meta_json()),
            )
            self._db.executemany(
                "INSERT INTO targets (instance_id, target_type, target_id, direction, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(instance_id, target_type, target_id, direction) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StateError(f"cannot write state to {self.path or 'memory'}: {exc}") from None

    def close(self) -> None:
        # Under the lock: a commit still running in a worker thread finishes first.
        with self._lock:
            self._db.close()
            self._release_lock()
