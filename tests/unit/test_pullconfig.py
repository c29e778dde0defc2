"""Inbound-sync configuration: validation, Quartz schedules, the pull-config command, exported metrics."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from idaas_sync_exporter import cli
from idaas_sync_exporter.api.schedule import max_interval_seconds, quartz_to_croniter
from idaas_sync_exporter.pullconfig.config import PullConfigError, validate
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import World
from tests.conftest import AK_ID, AK_SECRET, instance_id_of

HOUR = 3600.0


@pytest.mark.parametrize(
    ("quartz", "converted", "gap_hours"),
    [
        ("0 45 1 * * ?", "0 45 1 * * *", 24),  # the API document's example
        ("0 0/30 * * * ?", "0 0/30 * * * *", 0.5),
        ("0 0 9 ? * MON-FRI", "0 0 9 * * MON-FRI", 72),  # Friday 09:00 to Monday 09:00
        ("0 0 9 ? * 2-6", "0 0 9 * * 1-5", 72),  # Quartz numbers weekdays 1=SUN..7=SAT
        ("0 0 12 ? * 1", "0 0 12 * * 0", 168),
        ("0 0 12 1 * ?", "0 0 12 1 * *", 744),  # monthly: the longest month
        ("0 15 10 ? * 6#3", "0 15 10 * * 5#3", 840),  # third Friday of the month
        ("0 0 3 * * ? *", "0 0 3 * * *", 24),  # optional year field
    ],
)
def test_quartz_forms(quartz: str, converted: str, gap_hours: float) -> None:
    assert quartz_to_croniter(quartz) == converted
    gap = max_interval_seconds({"PeriodicSyncType": "cron", "PeriodicSyncCron": quartz}, now=1_790_000_000)
    assert gap == gap_hours * HOUR


@pytest.mark.parametrize("bad", ["0 45 1 * *", "0 61 1 * * ?", "0 0 3 * * ? 2030", "every day"])
def test_invalid_cron_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"cron|field|year"):
        quartz_to_croniter(bad)


def test_hours_of_the_day() -> None:
    assert max_interval_seconds({"PeriodicSyncType": "time", "PeriodicSyncTimes": [3, 5]}) == 22 * HOUR
    assert max_interval_seconds({"PeriodicSyncType": "time", "PeriodicSyncTimes": [9]}) == 24 * HOUR
    assert max_interval_seconds({"PeriodicSyncType": "time", "PeriodicSyncTimes": 9}) == 24 * HOUR
    assert max_interval_seconds({"PeriodicSyncType": "time", "PeriodicSyncTimes": [0, 6, 12, 18]}) == 6 * HOUR
    assert max_interval_seconds(None) is None


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "IncrementalCallbackStatus: required"),
        (
            {"IncrementalCallbackStatus": "yes"},
            "IncrementalCallbackStatus (got 'yes'): must be one of enabled, disabled",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "GroupSyncStatus": "on"},
            "GroupSyncStatus (got 'on'): must be one of",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PeriodicSyncConfig": {"PeriodicSyncType": "cron"}},
            "PeriodicSyncCron: required when PeriodicSyncType is cron",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PeriodicSyncConfig": {"PeriodicSyncType": "time"}},
            "PeriodicSyncTimes: required when PeriodicSyncType is time",
        ),
        (
            {
                "IncrementalCallbackStatus": "enabled",
                "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": [3, 24]},
            },
            "PeriodicSyncConfig.PeriodicSyncTimes[1] (got a list of 2 items): must be a list of hours 0-23",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PullProtectedRule": {"UserDeletedThreshold": -1}},
            "PullProtectedRule.UserDeletedThreshold (got -1): must be a non-negative integer",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PullProtectedRule": {"GroupDeletedThreshold": 2.5}},
            "PullProtectedRule.GroupDeletedThreshold (got 2.5): must be a non-negative integer",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "LdapUdPullConfig": {"UserObjectClas": "x"}},
            "LdapUdPullConfig.UserObjectClas: unknown key",
        ),
        ({"IncrementalCallbackStatus": "enabled", "Extra": 1}, "Extra: unknown key"),
        (
            {"IncrementalCallbackStatus": "enabled", "PeriodicSyncStatus": "enabled"},
            "PeriodicSyncType: required when PeriodicSyncStatus is enabled",
        ),
    ],
)
def test_validation_rules(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PullConfigError) as caught:
        validate(config)
    assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


FILE = """\
IncrementalCallbackStatus: enabled
GroupSyncStatus: disabled
PeriodicSyncStatus: enabled
PeriodicSyncConfig:
  PeriodicSyncType: time
  PeriodicSyncTimes: [15, 3]
PullProtectedRule:
  UserDeletedThreshold: 30
  OrganizationalUnitDeletedThreshold: 5
UdSyncScopeConfig:
  SourceScopes: [ou_a, ou_b]
  TargetScope: ou_root
"""


@pytest.fixture
def sim(world: World) -> Iterator[SimulatorThread]:
    app = SimulatorApp(world, [AccessKey(AK_ID, SecretStr(AK_SECRET))])
    with SimulatorThread(app) as running:
        yield running


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setenv("IDAAS_EXPORTER_ACCESS_KEY_SECRET", AK_SECRET)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(["pull-config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def connection(sim: SimulatorThread, world: World, idp_index: int = 1) -> list[str]:
    instance = instance_id_of(world)
    idp = world.instances[instance].providers[idp_index].identity_provider_id
    return [
        "--instance-id",
        instance,
        "--identity-provider-id",
        idp,
        "--endpoint",
        sim.endpoint,
        "--access-key-id",
        AK_ID,
        "--log-level",
        "error",
    ]


def test_get_set_round_trip_with_diff(
    sim: SimulatorThread,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = connection(sim, world)
    code, before, _ = run(monkeypatch, capsys, "get", *args)
    assert code == 0
    assert yaml.safe_load(before)["IncrementalCallbackStatus"] in ("enabled", "disabled")
    path = tmp_path / "idp.yaml"
    path.write_text(FILE)

    code, out, err = run(monkeypatch, capsys, "set", *args, "--file", str(path))  # stdin is not a terminal
    assert code == 3 and "confirm with --yes" in err
    assert "+GroupSyncStatus: disabled" in out and "+  UserDeletedThreshold: 30" in out
    code, out, _ = run(monkeypatch, capsys, "get", *args)
    assert out == before  # nothing was sent

    code, out, _ = run(monkeypatch, capsys, "set", *args, "--file", str(path), "--yes")
    assert code == 0 and "applied (RequestId " in out
    code, out, _ = run(monkeypatch, capsys, "get", *args, "--output", "json")
    import json

    assert json.loads(out) == yaml.safe_load(FILE) | {
        "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": [3, 15]}
    }
    code, out, _ = run(monkeypatch, capsys, "set", *args, "--file", str(path), "--yes")
    assert code == 0 and out.startswith("no changes")


def test_dry_run_prints_flattened_parameters_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "idp.yaml"
    path.write_text(FILE)
    # An endpoint nobody listens on: a dry run must not try it.
    code, out, _ = run(
        monkeypatch,
        capsys,
        "set",
        "--instance-id",
        "idaas_1",
        "--identity-provider-id",
        "idp_1",
        "--endpoint",
        "http://127.0.0.1:9",
        "--access-key-id",
        AK_ID,
        "--file",
        str(path),
        "--dry-run",
    )
    assert code == 0
    lines = out.splitlines()
    assert "PeriodicSyncConfig.PeriodicSyncTimes.1=3" in lines
    assert "PeriodicSyncConfig.PeriodicSyncTimes.2=15" in lines
    assert "PullProtectedRule.UserDeletedThreshold=30" in lines
    assert "UdSyncScopeConfig.SourceScopes.2=ou_b" in lines
    assert "InstanceId=idaas_1" in lines and "IdentityProviderId=idp_1" in lines


def test_invalid_file_exits_2_naming_each_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("GroupSyncStatus: on\nPullProtectedRule:\n  UserDeletedThreshold: -3\n")
    code, _, err = run(
        monkeypatch,
        capsys,
        "set",
        "--instance-id",
        "i",
        "--identity-provider-id",
        "p",
        "--access-key-id",
        AK_ID,
        "--file",
        str(path),
        "--dry-run",
    )
    assert code == 2
    assert "IncrementalCallbackStatus: required" in err
    assert f"{path}:3:25: PullProtectedRule.UserDeletedThreshold (got -3): must be a non-negative integer" in err
    # YAML reads `on` as true
    assert f"{path}:1:18: GroupSyncStatus (got True): must be one of enabled, disabled" in err


def test_api_errors_exit_1_with_code_message_and_request_id(
    sim: SimulatorThread, world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    oidc = next(i for i, p in enumerate(world.instances[instance_id_of(world)].providers) if p.pull_config is None)
    code, _, err = run(monkeypatch, capsys, "get", *connection(sim, world, oidc))
    assert code == 1
    assert "Code=OperationNotSupported.IdentityProvider" in err and "RequestId=" in err and "Message=" in err


@pytest.mark.parametrize("kind", ["dingtalk", "ad", "ldap"])
def test_an_ldap_block_is_refused_for_a_provider_that_is_not_ad_or_ldap(
    kind: str,
    sim: SimulatorThread,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    providers = world.instances[instance_id_of(world)].providers
    index = next(i for i, p in enumerate(providers) if f":{kind}:" in p.provider_type)
    args = connection(sim, world, idp_index=index)
    path = tmp_path / "idp.yaml"
    path.write_text(FILE + "LdapUdPullConfig:\n  UserObjectClass: inetOrgPerson\n")
    code, before, _ = run(monkeypatch, capsys, "get", *args)
    code, out, err = run(monkeypatch, capsys, "set", *args, "--file", str(path), "--yes")
    if kind == "dingtalk":
        assert code == 2, err
        assert err.count("\n") == 1
        assert "LdapUdPullConfig is for AD/LDAP identity providers only" in err and "alibaba:dingtalk:pull" in err
        assert run(monkeypatch, capsys, "get", *args)[1] == before  # nothing was sent
    else:
        assert code == 0 and "applied (RequestId " in out, err


# -- the config file's accounts and instances ---------------------------------------


def _pull(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """pull-config with only the environment and flags the test gives (no AccessKey of the settings)."""
    monkeypatch.delenv("IDAAS_EXPORTER_ACCESS_KEY_SECRET", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = cli.main(["pull-config", *args, "--log-level", "error"])
    out, err = capsys.readouterr()
    return code, out, err


def _ids(world: World) -> list[str]:
    instance = instance_id_of(world)
    return [
        "--instance-id",
        instance,
        "--identity-provider-id",
        world.instances[instance].providers[1].identity_provider_id,
    ]


def test_an_instance_of_the_config_file_is_reached_with_its_account_and_endpoint(
    sim: SimulatorThread,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "accounts:\n  - name: team\n    access_key: {id_env: TEAM_KEY_ID, secret_env: TEAM_KEY_SECRET}\n"
        f"instances:\n  - id: {instance_id_of(world)}\n    account: team\n    endpoint: {sim.endpoint}\n"
    )
    monkeypatch.setenv("TEAM_KEY_ID", AK_ID)
    monkeypatch.setenv("TEAM_KEY_SECRET", AK_SECRET)
    # No --endpoint and no AccessKey setting: the file's instance says where, its account with what.
    code, out, err = _pull(monkeypatch, capsys, "get", "--config", str(config), *_ids(world))
    assert code == 0, err
    assert yaml.safe_load(out)["IncrementalCallbackStatus"] in ("enabled", "disabled")
    path = tmp_path / "idp.yaml"
    path.write_text(FILE)
    code, out, err = _pull(
        monkeypatch, capsys, "set", "--config", str(config), *_ids(world), "--file", str(path), "--yes"
    )
    assert code == 0 and "applied (RequestId " in out, err

    # The account's key is the one used: a wrong one fails, named by the account, never shown.
    monkeypatch.setenv("TEAM_KEY_SECRET", "not-the-secret")
    code, _, err = _pull(monkeypatch, capsys, "get", "--config", str(config), *_ids(world))
    assert code == 1 and "not-the-secret" not in err and AK_SECRET not in err


def test_an_instance_the_config_file_does_not_list_is_reached_with_the_flat_settings(
    sim: SimulatorThread,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("instances:\n  - id: idaas_elsewhere\n    endpoint: http://127.0.0.1:9\n")
    monkeypatch.setenv("IDAAS_EXPORTER_ACCESS_KEY_ID", AK_ID)
    flat = ["--endpoint", sim.endpoint, "--access-key-secret", AK_SECRET]
    code, _, err = _pull(monkeypatch, capsys, "get", "--config", str(config), *_ids(world), *flat)
    assert code == 0, err
    # Listed without an account of its own, an instance takes the flat AccessKey and its own endpoint.
    config.write_text(f"instances:\n  - id: {instance_id_of(world)}\n    endpoint: {sim.endpoint}\n")
    code, _, err = _pull(
        monkeypatch, capsys, "get", "--config", str(config), *_ids(world), "--access-key-secret", AK_SECRET
    )
    assert code == 0, err


def test_a_bad_config_file_is_reported_before_anything_is_sent(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(f"instances:\n  - id: {instance_id_of(world)}\n    account: ghost\n")
    code, _, err = _pull(monkeypatch, capsys, "get", "--config", str(config), *_ids(world))
    assert code == 2
    assert f"invalid setting: {config}:3:14: instances[0].account: no account is named 'ghost'" in err
