"""The SQLite file that keeps each instance's state across restarts, and only the exporter's own file.

One row per instance holds the cursor, the ids of settled jobs and the followed jobs;
one row per target its counters, written only when a poll changed them. A poll's
changes are committed in one transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from idaas_sync_exporter.collect.counting import FinishedJob, TargetKey, TargetTally
from idaas_sync_exporter.collect.state import InstanceState, TrackedJob

log = logging.getLogger(__name__)

# 1: one JSON document per instance; 2: targets in their own rows, written only when changed;
# 3: the same tables, marked with APPLICATION_ID; 4: times in the API's milliseconds (3 is read
# and converted as each target is next written); 5: a table of each instance's recent finished
# jobs, for /jobs (4 is migrated in place, its counts kept).
SCHEMA_VERSION = 5


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


def check_state_path(path: str, *, create_directory: bool) -> bool:
    """Whether ``path`` holds a regular file; StateError for a place no state file can be made, touching nothing.

    Run before anything is created, so a start refused for another setting leaves no file behind;
    opening the store checks again (the file's content, its lock) when it opens it.
    """
    exists = _check_location(path)
    directory = Path(path).parent
    if not exists and not directory.is_dir() and not create_directory:
        raise StateError(
            f"the directory of state path {path} does not exist; nothing was created: create it "
            f"(mkdir -p {directory}) or point IDAAS_EXPORTER_STATE_PATH (--state-path) at a file "
            "in an existing directory"
        )
    return exists


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


def _read_every_document(db: sqlite3.Connection, version: int) -> None:
    """Parse every stored document; ValueError/KeyError/TypeError when one is damaged."""
    for (meta,) in db.execute("SELECT meta FROM instances"):
        _meta_from_json(meta)
    for (doc,) in db.execute("SELECT doc FROM targets"):
        TargetTally.from_json(json.loads(doc))
    if version >= 5:
        for (doc,) in db.execute("SELECT doc FROM recent_jobs"):
            FinishedJob.from_json(json.loads(doc))


# Newest first: counting.finish_order, the order of InstanceState.recent.
_RECENT_ORDER = "ORDER BY sort_ms DESC, start_ms DESC, job_id DESC"


class StateStore:
    """SQLite-backed; ``path=None`` keeps state in memory only (lost on restart).

    Only a file the exporter recognises as its own (marked with :data:`APPLICATION_ID`,
    or an older file with exactly the exporter's tables) is ever opened for writing,
    migrated, or moved aside when damaged. Anything else at the path is refused,
    untouched. An exclusive lock keeps a second exporter off the same file.
    """

    def __init__(
        self, path: str | None, *, clock: Callable[[], float] = time.time, create_directory: bool = False
    ) -> None:
        """``create_directory``: create a missing directory tree (the default path's, named after the exporter);
        otherwise a missing directory is refused in one line, and nothing is created."""
        self.path = path
        self.moved_aside: str | None = None
        # Whether this start created the state file (False when it was there, or state is in memory).
        self.created = False
        self._create_directory = create_directory
        # Why instances without saved state start cold; logged when they do.
        self.cold_cause = "state is kept in memory only (state_path is empty)"
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        # Each instance's metadata as last committed, so an idle poll need not write it again.
        self._written_meta: dict[str, str] = {}
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
        exists = check_state_path(path, create_directory=self._create_directory)
        directory = Path(path).parent
        if not exists and not directory.is_dir():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create the state directory for {path}: {exc.strerror}") from None
        self._take_lock(path)
        self.created = not exists
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
            self.created = True
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
        # Our mark in the header written when the file was created: such a file may be opened for
        # writing, which lets SQLite roll back a transaction a killed exporter left in its journal.
        # Any other file is only read.
        ours = int.from_bytes(header[68:72], "big") == APPLICATION_ID
        uri = f"file:{path}?mode={'rw' if ours else 'ro'}"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
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
                _read_every_document(db, version)
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc):
                return None  # unreadable: opening it for writing reports the real problem
            # Locked, read-only, out of memory: nothing says the file is damaged, so it is kept.
            raise StateError(
                f"cannot read state file {path} ({exc}); make sure no other process holds it and that it is writable"
            ) from None
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
        # Schema 5: the latest finished jobs of each instance, for the recent-jobs page.
        self._db.execute(
            """
            CREATE TABLE IF NOT EXISTS recent_jobs (
                instance_id TEXT NOT NULL, job_id TEXT NOT NULL, sort_ms INTEGER NOT NULL,
                start_ms INTEGER NOT NULL, doc TEXT NOT NULL,
                PRIMARY KEY (instance_id, job_id)
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
            recent = tuple(
                FinishedJob.from_json(json.loads(doc))
                for (doc,) in self._db.execute(
                    f"SELECT doc FROM recent_jobs WHERE instance_id = ? {_RECENT_ORDER}",  # noqa: S608 - a constant
                    (instance_id,),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"state for instance {instance_id} in {self.path} is corrupt ({type(exc).__name__}); "
                "stop the exporter and move the file aside to start from a cold start"
            ) from None
        return InstanceState(instance_id, cursor_ms, targets, counted, tracked, recent)

    def save(
        self,
        state: InstanceState,
        changed: set[TargetKey] | None = None,
        recent: Sequence[FinishedJob] | None = None,
        recent_limit: int | None = None,
    ) -> None:
        """Commit a poll atomically: the instance's metadata, the targets it changed, the jobs it finished.

        ``recent`` are the finished jobs new to the recent list (None: all of ``state.recent``);
        older ones beyond ``recent_limit`` are removed in the same commit. Safe to call from
        worker threads: one connection, one writer at a time.
        """
        with self._lock:
            self._save(state, changed, state.recent if recent is None else recent, recent_limit)

    def _save(
        self,
        state: InstanceState,
        changed: set[TargetKey] | None,
        recent: Sequence[FinishedJob],
        recent_limit: int | None,
    ) -> None:
        keys = state.targets.keys() if changed is None else changed
        meta = state.meta_json()
        if not keys and not recent and self._written_meta.get(state.instance_id) == meta:
            return  # a poll that changed nothing writes nothing
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
                (state.instance_id, meta),
            )
            self._db.executemany(
                "INSERT INTO targets (instance_id, target_type, target_id, direction, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(instance_id, target_type, target_id, direction) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO recent_jobs (instance_id, job_id, sort_ms, start_ms, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (state.instance_id, job.job_id, job.sort_ms, job.start_ms, orjson.dumps(job.to_json()).decode())
                    for job in recent
                ],
            )
            if recent or recent_limit is not None:
                # Also when nothing is new: a lowered --recent-jobs shrinks the file at the next commit.
                self._db.execute(
                    "DELETE FROM recent_jobs WHERE instance_id = ? AND job_id NOT IN "  # noqa: S608 - a constant
                    f"(SELECT job_id FROM recent_jobs WHERE instance_id = ? {_RECENT_ORDER} LIMIT ?)",
                    (state.instance_id, state.instance_id, len(state.recent) if recent_limit is None else recent_limit),
                )
            self._db.execute("COMMIT")
            self._written_meta[state.instance_id] = meta
        except sqlite3.Error as exc:
            self._written_meta.pop(state.instance_id, None)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StateError(f"cannot write state to {self.path or 'memory'}: {exc}") from None

    def close(self) -> None:
        # Under the lock: a commit still running in a worker thread finishes first.
        with self._lock:
            self._db.close()
            self._release_lock()
