"""Settings sources and their errors; CLI exit codes."""

from __future__ import annotations

import argparse
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
    assert any(p.startswith("--listen-address (got '9999')") and "HOST:PORT" in p for p in problems)
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
        ("--endpoint", "https://user:pw@eiam.example", "user name or password"),
        ("--region-id", "Mars", "not a region id"),
    ],
)
def test_bad_flag_values_are_one_line_under_the_flag_typed(flag: str, value: str, expected: str) -> None:
    result = _cli("serve", "--instance-ids", "i", "--state-path", "", flag, value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"invalid setting: {flag} (got {value!r})" in result.stderr and expected in result.stderr


def test_the_source_of_a_bad_value_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("instance_ids: [a, b]\nlookback_seconds: 5\n")
    monkeypatch.setenv("IDAAS_EXPORTER_OVERLAP_SECONDS", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(config), {"stuck_after_seconds": "0"})
    problems = "\n".join(caught.value.problems)
    assert f"{config}: lookback_seconds (got 5)" in problems
    assert "IDAAS_EXPORTER_OVERLAP_SECONDS (got '-1')" in problems
    assert "--stuck-after-seconds (got '0')" in problems


def test_yaml_lists_stay_lists_and_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("instance_ids:\n  - idaas_a\n  - idaas_b\n")
    assert load_settings(str(config)).instance_ids == ["idaas_a", "idaas_b"]
    config.write_text("instance_ids: [idaas_a\nregion_id: cn-hangzhou\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(config))
    assert caught.value.problems[0].startswith(f"config: {config}:2:")


def test_once_help_offers_only_what_once_uses_and_every_flag_is_explained() -> None:
    from exporter.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(choices, dict)
    commands: dict[str, argparse.ArgumentParser] = choices
    once_flags = {flag for action in commands["once"]._actions for flag in action.option_strings}
    serve_flags = {flag for action in commands["serve"]._actions for flag in action.option_strings}
    for serve_only in ("--listen-address", "--poll-interval-seconds", "--web.config.file", "--web-config-file"):
        assert serve_only in serve_flags and serve_only not in once_flags
    for command in ("serve", "once"):
        for action in commands[command]._actions:
            assert action.help, f"{command} {action.option_strings} has no help text"
