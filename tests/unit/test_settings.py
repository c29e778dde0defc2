"""Settings: sources, precedence, one-line problems named after their source; the help text."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idaas_sync_exporter.config.settings import DEFAULT_PORT, SettingsError, load_settings


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


def test_the_source_of_a_bad_value_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("instance_ids: [a, b]\nlookback_seconds: 5\n")
    monkeypatch.setenv("IDAAS_EXPORTER_OVERLAP_SECONDS", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(config), {"stuck_after_seconds": "0"})
    problems = "\n".join(caught.value.problems)
    assert f"{config}:2:19: lookback_seconds (got 5)" in problems
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
    from idaas_sync_exporter.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(choices, dict)
    commands: dict[str, argparse.ArgumentParser] = choices
    once_flags = {flag for action in commands["once"]._actions for flag in action.option_strings}
    serve_flags = {flag for action in commands["serve"]._actions for flag in action.option_strings}
    serve_only_flags = (
        "--listen-address",
        "--poll-interval-seconds",
        "--web.config.file",
        "--web-config-file",
        "--web.listen-address",
        "--web.telemetry-path",
        "--telemetry-path",
    )
    for serve_only in serve_only_flags:
        assert serve_only in serve_flags and serve_only not in once_flags
    for command in ("serve", "once"):
        for action in commands[command]._actions:
            assert action.help, f"{command} {action.option_strings} has no help text"


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("/metrics", True),
        ("/probe/idaas-sync", True),
        ("/", False),
        ("metrics", False),
        ("/healthz", False),
        ("/a b", False),
        ("/x?y=1", False),
        ("/metrics/", False),
    ],
)
def test_the_telemetry_path_is_a_plain_path_that_is_not_ours(path: str, accepted: bool) -> None:
    if accepted:
        assert load_settings(None, {"telemetry_path": path}).telemetry_path == path
    else:
        with pytest.raises(SettingsError) as error:
            load_settings(None, {"telemetry_path": path})
        assert error.value.problems[0].startswith("--telemetry-path")


def test_exporter_toolkit_flag_names_are_aliases_and_errors_name_the_alias_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from idaas_sync_exporter.cli import build_parser, main, settings_from

    args = build_parser().parse_args(
        [
            "serve",
            "--web.listen-address",
            "127.0.0.1:9999",
            "--web.telemetry-path",
            "/m",
            "--log.level",
            "debug",
            "--log.format",
            "json",
            "--instance-ids",
            "idaas_x",
        ]
    )
    settings = settings_from(args, defaults={})
    assert (settings.listen_address, settings.telemetry_path) == ("127.0.0.1:9999", "/m")
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert main(["once", "--log.level", "loud", "--instance-ids", "idaas_x"]) == 2
    assert "--log.level (got 'loud')" in capsys.readouterr().err
    assert main(["serve", "--web.listen-address", ":1", "--listen-address", ":2", "--instance-ids", "x"]) == 2
    assert "--web.listen-address and --listen-address are the same setting" in capsys.readouterr().err


def test_the_config_file_is_read_once_for_settings_and_tenancy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from idaas_sync_exporter import cli, runtime
    from idaas_sync_exporter.config import settings
    from idaas_sync_exporter.config.validation import load_document

    config = tmp_path / "exporter.yaml"
    config.write_text(
        "poll_interval_seconds: 45\ninstances:\n  - {id: idaas_ue2jvisn35ea5lmthk267xxxxx, region: cn-hangzhou}\n"
    )
    reads: list[str] = []

    def counted(path: str) -> Any:
        reads.append(path)
        return load_document(path)

    seen: dict[str, Any] = {}

    async def once(given: Any, demo: Any = None, tenancy: Any = None) -> tuple[bytes, list[str]]:
        seen.update(settings=given, tenancy=tenancy)
        return b"", []

    monkeypatch.setattr(settings, "load_document", counted)
    monkeypatch.setattr(runtime, "once", once)
    monkeypatch.setattr(runtime, "start_problems", lambda *args, **kwargs: [])
    assert cli.main(["once", "--config", str(config), "--state-path", ""]) == 0
    assert reads == [str(config)]
    assert seen["settings"].poll_interval_seconds == 45
    assert seen["tenancy"].instance_ids == ["idaas_ue2jvisn35ea5lmthk267xxxxx"]


# --- hostile input, property-based ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "poll_interval_seconds",
                "listen_address",
                "directions",
                "region_id",
                "lookback_seconds",
                "log_level",
                "instance_ids",
                "requests_per_second",
                "access_key_id",
            ]
        ),
        st.text(max_size=40),
        max_size=5,
    ),
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=8, max_size=20).map(lambda s: "sk-" + s),
)
def test_settings_return_settings_or_one_line_problems(values: dict[str, str], secret: str) -> None:
    try:
        load_settings(overrides={**values, "access_key_secret": secret})
    except SettingsError as exc:
        assert exc.problems
        assert all("\n" not in problem for problem in exc.problems)
        assert all(secret not in problem for problem in exc.problems)
