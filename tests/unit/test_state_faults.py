"""State file faults: each gets a clear error; unusable files are moved aside, never deleted."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
from idaas_sync_exporter.collect.state import InstanceState
from idaas_sync_exporter.collect.store import APPLICATION_ID, StateError, StateStore


def saved_store(path: Path) -> None:
    store = StateStore(str(path))
    tally = TargetTally()
    tally.jobs[("auto", "success")] = 3
    store.save(InstanceState("idaas_1", 1000, {TargetKey("application", "app_1", "egress"): tally}, {}, {}))
    store.close()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    state = StateStore(str(path)).load("idaas_1")
    assert state.cursor_ms == 1000
    assert state.targets[TargetKey("application", "app_1", "egress")].jobs[("auto", "success")] == 3


def test_a_poll_that_changed_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(str(path))
    state = InstanceState("idaas_1", 1000, {}, {"job_1": 900}, {})
    store.save(state, set())
    written = os.stat(path).st_mtime_ns
    os.utime(path, ns=(written - 10**9, written - 10**9))
    store.save(InstanceState("idaas_1", 1000, {}, {"job_1": 900}, {}), set())
    assert os.stat(path).st_mtime_ns == written - 10**9  # untouched
    store.save(InstanceState("idaas_1", 2000, {}, {"job_1": 900}, {}), set())  # the cursor moved
    assert os.stat(path).st_mtime_ns != written - 10**9
    assert store.load("idaas_1").cursor_ms == 2000


def damage_pages(path: Path) -> None:
    """Overwrite the file after its first page, as a stray writer would; the header (and mark) survive."""
    with open(path, "r+b") as file:
        file.seek(4096)
        file.write(os.urandom(64 * 1024))


def cold_start_causes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(record.__dict__["cause"]) for record in caplog.records if "cause" in record.__dict__]


def snapshot_of(path: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(path.iterdir()) if entry.is_file()}


def test_our_file_with_damaged_pages_is_moved_aside_and_counting_restarts_cold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    damage_pages(path)
    damaged = path.read_bytes()
    store = StateStore(str(path))
    assert store.moved_aside is not None
    assert store.created, "the file in its place is new"
    assert Path(store.moved_aside).read_bytes() == damaged
    assert store.load("idaas_1").is_cold
    assert "moved aside" in caplog.text
    assert cold_start_causes(caplog)[0].startswith("the previous state file was moved aside")


def test_damaged_rows_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE targets SET doc = '{not json'")
    store = StateStore(str(path))
    assert store.moved_aside is not None and os.path.exists(store.moved_aside)
    assert store.load("idaas_1").is_cold


def test_a_cursor_of_the_wrong_type_is_damage_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("""UPDATE instances SET meta = json_set(meta, '$.cursor_ms', 'soon')""")
    store = StateStore(str(path))
    assert store.moved_aside is not None
    assert store.load("idaas_1").is_cold


def test_older_schema_is_moved_aside_newer_is_refused(tmp_path: Path) -> None:
    older = tmp_path / "older.sqlite3"
    with closing(sqlite3.connect(older)) as db, db:
        db.execute("CREATE TABLE instance_state (instance_id TEXT PRIMARY KEY, doc TEXT)")
        db.execute("PRAGMA user_version=1")
    store = StateStore(str(older))
    assert store.moved_aside is not None and "unusable" in store.moved_aside
    newer = tmp_path / "newer.sqlite3"
    with closing(sqlite3.connect(newer)) as db, db:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=99")
    before = newer.read_bytes()
    with pytest.raises(StateError, match="newer exporter"):
        StateStore(str(newer))
    assert newer.read_bytes() == before


def test_an_unmarked_file_of_the_previous_schema_is_marked_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")  # as version 2 wrote it
        db.execute("CREATE TABLE instances (instance_id TEXT PRIMARY KEY, meta TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE targets (instance_id TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL,"
            " direction TEXT NOT NULL, doc TEXT NOT NULL,"
            " PRIMARY KEY (instance_id, target_type, target_id, direction))"
        )
        db.execute("""INSERT INTO instances VALUES ('idaas_1', '{"cursor_ms":5,"counted":{},"tracked":[]}')""")
        db.execute("PRAGMA user_version=2")
    store = StateStore(str(path))
    assert store.moved_aside is None
    assert store.load("idaas_1").cursor_ms == 5
    store.close()
    with closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_directory_is_refused_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(StateError, match=r"is a directory.*untouched.*state\.sqlite3"):
        StateStore(str(home))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert snapshot_of(home) == {"notes.txt": b"mine"}


def test_a_device_is_refused() -> None:
    with pytest.raises(StateError, match="not an idaas-sync-exporter state file"):
        StateStore("/dev/null")


@pytest.mark.parametrize(
    "content",
    [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\x00" * 40],
    ids=["text", "truncated-header"],
)
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(StateError, match=r"not a SQLite database.*left untouched"):
        StateStore(str(path))
    assert snapshot_of(tmp_path) == {"notes.db": content}


@pytest.mark.parametrize("application_id", [0, 0x0F055112])
def test_another_applications_database_is_refused_untouched(tmp_path: Path, application_id: int) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"PRAGMA application_id={application_id}")
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('Ada')")
    before = snapshot_of(tmp_path)
    with pytest.raises(StateError, match="another application"):
        StateStore(str(path))
    assert snapshot_of(tmp_path) == before
    with closing(sqlite3.connect(path)) as db, db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"customers"}


def test_an_empty_file_is_used_and_the_cold_start_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"")
    caplog.set_level(logging.INFO)
    store = StateStore(str(path))
    assert store.load("idaas_1").is_cold
    assert cold_start_causes(caplog) == ["the state file has no saved state for this instance yet"]
    store.close()


def test_a_second_exporter_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = StateStore(str(path))
    with pytest.raises(StateError, match="in use by another exporter process"):
        StateStore(str(path))
    first.close()
    StateStore(str(path)).close()  # free again once the first has stopped


def test_commits_leave_no_journal_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    store = StateStore(str(path))
    for cursor in range(20):
        store.save(InstanceState("idaas_1", cursor, {}, {}, {}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite3"]
    store.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(StateError, match=r"writable|cannot"):
        StateStore(str(locked / "state.sqlite3"))


def test_unusable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        StateStore(str(blocker / "sub" / "state.sqlite3"), create_directory=True)


def test_disk_full_fails_the_commit_and_keeps_the_last_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    store = StateStore(str(path))
    page_count = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={page_count}")  # the disk is now "full"
    big = {TargetKey("application", f"app_{i}", "egress"): TargetTally() for i in range(2000)}
    for tally in big.values():
        tally.objects[("user", "pushed", "success")] = 1
    with pytest.raises(StateError, match="full"):
        store.save(InstanceState("idaas_1", 2000, big, {}, {}))
    assert store.load("idaas_1").cursor_ms == 1000
    store._db.execute("PRAGMA max_page_count=1000000")  # space returns: the next commit works, no restart
    store.save(InstanceState("idaas_1", 2000, big, {}, {}))
    assert store.load("idaas_1").cursor_ms == 2000


def test_a_schema_3_file_with_times_in_seconds_is_read_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    old_doc = {
        "jobs": [["auto", "success", 1]],
        "objects": [],
        "errors": {},
        "duration_buckets": [0] * 13,
        "duration_sum": 0.0,
        "duration_count": 0,
        "last_job": {"job_id": "s1", "status": "success", "start": 1649830226.5, "end": 1649830286.0, "objects": []},
        "last_success_end": 1649830286.0,
    }
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE targets SET doc = ?", (json.dumps(old_doc),))
        db.execute("PRAGMA user_version=3")
    store = StateStore(str(path))
    assert store.moved_aside is None
    tally = store.load("idaas_1").targets[TargetKey("application", "app_1", "egress")]
    assert tally.last_job is not None and tally.last_job.start_ms == 1649830226500
    assert tally.last_job.end_ms == 1649830286000 and tally.last_success_end_ms == 1649830286000
    store.close()


def test_a_locked_file_is_an_error_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another program holds it
        with pytest.raises(StateError, match="cannot read state file"):
            StateStore(str(path))
        other.execute("ROLLBACK")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.sqlite3"]
