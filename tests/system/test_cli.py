"""The command line and other separate processes: exit codes, one-line errors, what a user's shell sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.metrics.exposition import render
from tests.conftest import AK_SECRET
from tests.e2e import exporter_command, exporter_env, free_port, require_binary
from tests.unit.test_exposition import hostile_snapshot


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exporter_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env=exporter_env(**(env or {})),
        check=False,
    )


def test_cli_usage_errors_exit_2() -> None:
    missing = _cli("once")
    assert missing.returncode == 2
    assert "IDAAS_EXPORTER_INSTANCE_IDS is required" in missing.stderr
    invalid = _cli("once", "--instance-ids", "i", "--lookback-seconds", "0")
    assert invalid.returncode == 2
    assert invalid.stderr.count("\n") == 1 and "--lookback-seconds (got '0')" in invalid.stderr


def test_cli_once_api_failure_exits_1(tmp_path: Path) -> None:
    result = _cli(
        "once",
        "--instance-ids",
        "idaas_x",
        "--endpoint",
        "http://127.0.0.1:9",
        "--access-key-id",
        "id",
        "--access-key-secret",
        "cli-secret-value",
        "--state-path",
        "",
        "--log-level",
        "error",
    )
    assert result.returncode == 1
    assert "poll failed" in result.stderr
    assert "cli-secret-value" not in result.stderr + result.stdout


def test_cli_once_demo_prints_a_valid_exposition() -> None:
    result = _cli("once", "--demo", "--log-level", "error")
    assert result.returncode == 0, result.stderr
    assert "idaas_sync_target_info{" in result.stdout
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=result.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_cli_refuses_a_directory_as_state_path_and_leaves_it_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    result = _cli("once", "--demo", "--state-path", str(home), "--log-level", "error")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]
    assert (home / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--poll-interval-seconds", "inf", "finite number"),
        ("--poll-interval-seconds", "1e309", "finite number"),
        ("--target-refresh-seconds", "1e309", "finite number"),
        ("--endpoint", "http://[::1", "not a valid URL"),
        ("--endpoint", "https://eiam.example:99999", "not a valid URL"),
        ("--region-id", "Mars", "not a region id"),
    ],
)
def test_bad_flag_values_are_one_line_under_the_flag_typed(flag: str, value: str, expected: str) -> None:
    result = _cli("serve", "--instance-ids", "i", "--state-path", "", flag, value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"invalid setting: {flag} (got {value!r})" in result.stderr and expected in result.stderr


def _without_credentials(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_EXPORTER_", "ALIBABA_CLOUD_ACCESS", "ALIYUN"))
    }
    return {**env, "HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


@pytest.mark.parametrize(
    "args",
    [
        ("once", "--instance-ids", "idaas_x", "--state-path", ""),
        ("pull-config", "get", "--instance-id", "idaas_x", "--identity-provider-id", "idp_1"),
    ],
    ids=["once", "pull-config"],
)
def test_cli_without_credentials_exits_1_with_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    endpoint = ("--endpoint", "http://127.0.0.1:9")  # never reached: there is nothing to sign with
    result = subprocess.run(
        [sys.executable, "-m", "idaas_sync_exporter", *args, *endpoint, "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_credentials(tmp_path),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "no Alibaba Cloud credentials found" in result.stderr
    assert AK_SECRET not in result.stderr
    if args[0] == "once":
        assert 'idaas_up{instance_id="idaas_x"} 0' in result.stdout  # the exposition is still printed
        assert 'idaas_exporter_poll_failures_total{instance_id="idaas_x"} 1' in result.stdout
    else:
        assert result.stderr.count("\n") == 1


def test_promtool_accepts_a_hostile_exposition() -> None:
    text = render(hostile_snapshot('idp_"quoted"\\back\nline\x00nul\u202e', "Δ名字\r\t", "Code.\u00e9\n")).decode()
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = StateStore(str(path))
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from idaas_sync_exporter.collect.store import StateStore; StateStore({str(path)!r})",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        first.close()
    assert other.returncode != 0 and "in use by another exporter process" in other.stderr


# A writer killed mid-commit: pages already spilled into the file, the journal left behind ("hot").
KILLED_MID_COMMIT = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")
db.execute("BEGIN IMMEDIATE")
for i in range(3000):
    db.execute("INSERT INTO targets VALUES ('idaas_1', 'application', ?, 'egress', ?)", (str(i), "x" * 500))
os._exit(9)
"""


def test_a_transaction_left_by_a_killed_exporter_is_rolled_back_not_moved_aside(tmp_path: Path) -> None:
    from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
    from idaas_sync_exporter.collect.state import InstanceState

    path = tmp_path / "state.sqlite3"
    store = StateStore(str(path))
    tally = TargetTally()
    tally.jobs[("auto", "success")] = 3
    store.save(InstanceState("idaas_1", 1000, {TargetKey("application", "app_1", "egress"): tally}, {}, {}))
    store.close()
    subprocess.run([sys.executable, "-c", KILLED_MID_COMMIT, str(path)], check=False)
    assert (tmp_path / "state.sqlite3-journal").exists()
    store = StateStore(str(path))
    assert store.moved_aside is None  # before: the read-only check failed on the journal and moved it aside
    state = store.load("idaas_1")
    assert state.cursor_ms == 1000 and set(state.targets) == {TargetKey("application", "app_1", "egress")}
    assert state.targets[TargetKey("application", "app_1", "egress")].jobs[("auto", "success")] == 3
    store.close()


def wait_listening(port: int, timeout: float = 30.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def test_shards_of_one_configuration_poll_every_instance_once() -> None:
    import re

    configured = [f"idaas_shard{n:02d}" for n in range(9)]
    port = free_port()
    simulator = subprocess.Popen(
        exporter_command(
            "simulate", "--listen", f"127.0.0.1:{port}", "--instance-ids", ",".join(configured), "--log-level", "error"
        ),
        env=exporter_env(IDAAS_SIMULATOR_ACCESS_KEY_ID="shard-test", IDAAS_SIMULATOR_ACCESS_KEY_SECRET=AK_SECRET),
        text=True,
    )
    polled: list[str] = []
    try:
        wait_listening(port)
        for index in range(3):
            result = _cli(
                "once",
                "--instance-ids",
                ",".join(configured),
                "--endpoint",
                f"http://127.0.0.1:{port}",
                "--access-key-id",
                "shard-test",
                "--state-path",
                "",
                "--shard-count",
                "3",
                "--shard-index",
                str(index),
                env={"IDAAS_EXPORTER_ACCESS_KEY_SECRET": AK_SECRET},
            )
            assert result.returncode == 0, result.stderr[-2000:]
            mine = re.findall(r'^idaas_up\{instance_id="([^"]+)"\} 1$', result.stdout, re.M)
            assert f'idaas_exporter_shard_info{{shard_index="{index}",shard_count="3"}} 1' in result.stdout
            assert 0 < len(mine) < len(configured)
            polled.extend(mine)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    assert sorted(polled) == configured


def test_the_import_name_is_unique_and_a_local_exporter_module_cannot_hijack_it(tmp_path: Path) -> None:
    # A module named like the source folder, in the directory the user runs from.
    (tmp_path / "exporter.py").write_text("raise SystemExit('hijacked')\n")
    env = exporter_env()
    result = subprocess.run(
        [sys.executable, "-m", "idaas_sync_exporter", "--version"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("idaas-sync-exporter "), result.stderr
    (tmp_path / "exporter.py").unlink()
    probe = "import importlib.util; print(importlib.util.find_spec('exporter'))"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=True
    )
    assert found.stdout.strip() == "None"  # the distribution installs no top-level `exporter`
