"""State file faults: each gets a clear error; unusable files are moved aside, never deleted."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from exporter.state import InstanceState, StateError, StateStore, TargetKey, TargetTally


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


def test_corrupt_file_is_moved_aside_and_counting_restarts_cold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = StateStore(str(path))
    assert store.moved_aside is not None
    assert Path(store.moved_aside).read_bytes().startswith(b"this is not a database")
    assert store.load("idaas_1").is_cold
    assert "moved aside" in caplog.text


def test_damaged_rows_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    saved_store(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE targets SET doc = '{not json'")
    store = StateStore(str(path))
    assert store.moved_aside is not None and os.path.exists(store.moved_aside)
    assert store.load("idaas_1").is_cold


def test_older_schema_is_moved_aside_newer_is_refused(tmp_path: Path) -> None:
    older = tmp_path / "older.sqlite3"
    with sqlite3.connect(older) as db:
        db.execute("CREATE TABLE instance_state (instance_id TEXT PRIMARY KEY, doc TEXT)")
        db.execute("PRAGMA user_version=1")
    store = StateStore(str(older))
    assert store.moved_aside is not None and "unusable" in store.moved_aside
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StateError, match="newer exporter"):
        StateStore(str(newer))
    assert newer.exists()


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
        StateStore(str(blocker / "sub" / "state.sqlite3"))


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
