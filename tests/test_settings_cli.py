"""Settings sources and their errors; CLI exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.settings import DEFAULT_PORT, SettingsError, load_settings
from tests.e2e import require_binary


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(overrides={"instance_ids": "idaas_a, idaas_b"})
    assert settings.instance_ids == ["idaas_a", "idaas_b"]
    assert settings.region_id == "cn-hangzhou"
    assert settings.listen_host_port == ("0.0.0.0", DEFAULT_PORT)  # noqa: S104
    assert settings.poll_interval_seconds == 60 and settings.lookback_seconds == 86400
    assert settings.state_path.endswith("state.sqlite3")


def test_precedence_flag_over_env_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("instance_ids: [idaas_yaml]\nregion_id: ap-southeast-1\npoll_interval_seconds: 30\n")
    monkeypatch.setenv("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS", "45")
    settings = load_settings(str(config), {"region_id": "eu-central-1"})
    assert settings.instance_ids == ["idaas_yaml"]
    assert settings.poll_interval_seconds == 45
    assert settings.region_id == "eu-central-1"


def test_every_problem_is_one_line_and_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS", "0.5")
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"listen_address": "9999", "directions": "north", "target_types": "app"})
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS (got '0.5')") for p in problems)
    assert any("IDAAS_EXPORTER_LISTEN_ADDRESS" in p and "HOST:PORT" in p for p in problems)
    assert any("'north' is not one of ingress, egress" in p for p in problems)
    monkeypatch.delenv("IDAAS_EXPORTER_POLL_INTERVAL_SECONDS")
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"access_key_secret": "hunter2-secret"})
    assert "hunter2-secret" not in str(caught.value)
    assert "must be set together" in str(caught.value)


def test_yaml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance_ids: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("pol_interval_seconds: 5\n")
    with pytest.raises(SettingsError, match="pol_interval_seconds: unknown setting"):
        load_settings(str(unknown))
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(str(tmp_path / "missing.yaml"))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("IDAAS_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def test_cli_usage_errors_exit_2() -> None:
    missing = _cli("once")
    assert missing.returncode == 2
    assert "IDAAS_EXPORTER_INSTANCE_IDS is required" in missing.stderr
    invalid = _cli("once", "--instance-ids", "i", "--poll-interval-seconds", "0")
    assert invalid.returncode == 2
    assert invalid.stderr.count("\n") == 1 and "POLL_INTERVAL_SECONDS" in invalid.stderr


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
