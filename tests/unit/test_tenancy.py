"""Accounts and instances: what the settings and a config file mean, every problem named by its path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from idaas_sync_exporter.api.credentials import CredentialsError, LibraryCredentialsProvider
from idaas_sync_exporter.config.accounts import credentials_for
from idaas_sync_exporter.config.settings import Settings, SettingsError, load_settings
from idaas_sync_exporter.config.tenancy import DEFAULT_ACCOUNT, Tenancy, plan_tenancy
from idaas_sync_exporter.runtime import account_credentials, build_exporter
from tests.pki import make_ca, make_leaf
from tests.sts import FakeSts, fake_sts

SECRET = "do-not-show-this-secret"


def settings(**overrides: Any) -> Settings:
    return load_settings(overrides={"state_path": "", **overrides})


def plan(document: str, environ: dict[str, str] | None = None, **overrides: Any) -> Tenancy:
    return plan_tenancy(settings(**overrides), yaml.safe_load(document), environ=environ or {}, file_name="x.yml")


def problems_of(document: str, environ: dict[str, str] | None = None, **overrides: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        plan(document, environ, **overrides)
    return caught.value.problems


def test_the_environment_alone_is_one_account_with_every_instance_in_one_region() -> None:
    tenancy = plan_tenancy(
        settings(instance_ids="idaas_a,idaas_b", region_id="ap-southeast-1", target_types="application")
    )
    assert list(tenancy.accounts) == [DEFAULT_ACCOUNT] and tenancy.accounts[DEFAULT_ACCOUNT] is None
    assert [(i.instance_id, i.region, i.account, i.target_types) for i in tenancy.instances] == [
        ("idaas_a", "ap-southeast-1", DEFAULT_ACCOUNT, ("application",)),
        ("idaas_b", "ap-southeast-1", DEFAULT_ACCOUNT, ("application",)),
    ]


TWO_ACCOUNTS = """
accounts:
  - name: team
    access_key: {id_env: TEAM_ID, secret_env: TEAM_SECRET}
    requests_per_second: 2
  - name: customer-a
    assume_role:
      role_arn: acs:ram::1234567890123456:role/idaas-reader
      source_account: team
      session_name: sync-exporter
      duration_seconds: 1800
instances:
  - {id: idaas_hz, region: cn-hangzhou, account: team}
  - id: idaas_sg
    region: ap-southeast-1
    account: customer-a
    poll_interval_seconds: 120
    directions: [ingress]
    target_ids: [idp_1]
"""
TEAM_ENV = {"TEAM_ID": "LTAI-team", "TEAM_SECRET": SECRET}


def test_instances_take_their_own_region_account_interval_and_filters_else_the_settings() -> None:
    tenancy = plan(TWO_ACCOUNTS, TEAM_ENV, poll_interval_seconds=30, target_types="identity_provider")
    hz, sg = tenancy.instances
    assert (hz.region, hz.account, hz.poll_interval_seconds, hz.target_types) == (
        "cn-hangzhou",
        "team",
        30,
        ("identity_provider",),
    )
    assert (sg.region, sg.account, sg.poll_interval_seconds, sg.directions, sg.target_ids) == (
        "ap-southeast-1",
        "customer-a",
        120,
        ("ingress",),
        ("idp_1",),
    )
    role = tenancy.accounts["customer-a"]
    assert role is not None and role.assume_role is not None and role.assume_role.duration_seconds == 1800


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "accounts: [{name: a, assume_role: {role_arn: 'arn:x', source_account: a}}]",
            "x.yml: accounts[0].assume_role.role_arn: must be a RAM role ARN",
        ),
        (
            "accounts: [{name: a, assume_role: {role_arn: 'acs:ram::1:role/r', source_account: b}}]",
            "x.yml: accounts[0].assume_role.source_account: no account has the name given (the value is not shown",
        ),
        (
            "accounts: [{name: a, assume_role: {role_arn: 'acs:ram::1:role/r', source_account: a, "
            "duration_seconds: 60}}]",
            "x.yml: accounts[0].assume_role.duration_seconds: Input should be greater than or equal to 900",
        ),
        (
            "accounts: [{name: a, ecs_ram_role: , cli_profile: {profile: p}}]",
            "x.yml: accounts[0]: give exactly one credential source",
        ),
        ("accounts: [{name: a}]", "x.yml: accounts[0]: give exactly one credential source"),
        (
            "accounts: [{name: a, access_key: {id: x, secret: " + SECRET + "}}]",
            "x.yml: accounts[0].access_key.secret: a secret written in the config file is refused",
        ),
        (
            "accounts: [{name: a, access_key: {id: x, id_env: Y, secret_env: Z}}]",
            "x.yml: accounts[0].access_key: give exactly one of id, id_env, id_file",
        ),
        (
            "accounts: [{name: a, access_key: {id: x, secret_env: MISSING}}]",
            "x.yml: accounts[0].access_key.secret_env: the environment variable it names (the name is not shown",
        ),
        (
            "accounts: [{name: a, access_key: {id: x, secret_file: /nonexistent/key}}]",
            "x.yml: accounts[0].access_key.secret_file: cannot read the file it names (the path is not shown",
        ),
        (
            "accounts: [{name: a, default_chain: }, {name: a, default_chain: }]",
            "x.yml: accounts[1].name: 'a' is already the name of accounts[0]",
        ),
        (
            "accounts: [{name: a, default_chain: , requests_per_second: 0}]",
            "x.yml: accounts[0].requests_per_second: Input should be greater than 0",
        ),
        (
            "accounts: [{name: a, default_chain: }, {name: b, default_chain: }]\ninstances: [{id: idaas_x}]",
            "x.yml: instances[0].account: name the account, one of a, b",
        ),
        ("instances: [{id: idaas_x, account: ghost}]", "x.yml: instances[0].account: no account is named 'ghost'"),
        ("instances: [{id: idaas_x}, {id: idaas_x}]", "x.yml: instances[1].id: 'idaas_x' is already listed"),
        (
            "instances: [{id: idaas_x, region: Hangzhou}]",
            "x.yml: instances[0].region (got 'Hangzhou'): must be a region id",
        ),
        ("instances: [{id: idaas_x, endpoint: 'ftp://x'}]", "x.yml: instances[0].endpoint: endpoint 'ftp://x'"),
        ("instances: [{id: idaas_x, directions: [up]}]", "x.yml: instances[0].directions: 'up' is not one of"),
        ("instances: [{id: idaas_x, poll_interval: 5}]", "x.yml: instances[0].poll_interval: unknown key"),
        ("instances: [{id: 'idaas x'}]", "x.yml: instances[0].id: 'idaas x' is not an instance id"),
        (
            "accounts: [{name: a, default_chain: }, {name: b, default_chain: }]",
            "x.yml: instances: the config file lists several accounts; list the instances",
        ),
    ],
)
def test_each_problem_is_one_line_naming_its_path(document: str, expected: str) -> None:
    problems = problems_of(document)
    assert any(problem.startswith(expected) for problem in problems), problems
    assert all("\n" not in problem and SECRET not in problem for problem in problems)


def test_instances_in_two_places_or_a_key_in_two_places_are_refused() -> None:
    assert any(
        p.startswith("x.yml: instances: the config file lists instances and IDAAS_EXPORTER_INSTANCE_IDS")
        for p in problems_of("instances: [{id: idaas_x}]", instance_ids="idaas_y")
    )
    assert any(
        p.startswith("x.yml: accounts: the config file lists accounts and the settings give an AccessKey")
        for p in problems_of("accounts: [{name: a, default_chain: }]", access_key_id="LTAI", access_key_secret=SECRET)
    )


def test_a_circle_of_roles_is_refused() -> None:
    document = """
accounts:
  - {name: a, assume_role: {role_arn: 'acs:ram::1:role/r', source_account: b}}
  - {name: b, assume_role: {role_arn: 'acs:ram::1:role/r', source_account: a}}
"""
    assert any("the roles go round in a circle (a -> b -> a)" in p for p in problems_of(document))


def test_an_inline_secret_is_accepted_only_when_the_file_insists() -> None:
    document = "allow_inline_secrets: true\naccounts: [{name: a, access_key: {id: x, secret: " + SECRET + "}}]"
    tenancy = plan(document, instance_ids="idaas_x")
    account = tenancy.accounts["a"]
    assert account is not None and SECRET not in repr(account) and SECRET not in str(account)
    assert [i.account for i in tenancy.instances] == ["a"]


def test_clients_share_a_rate_limit_per_account_and_never_across_accounts() -> None:
    tenancy = plan(
        TWO_ACCOUNTS.replace(
            "  - {id: idaas_hz,", "  - {id: idaas_hz2, region: ap-southeast-1, account: team}\n  - {id: idaas_hz,"
        ),
        TEAM_ENV,
    )
    exporter, clients = build_exporter(settings(), tenancy, account_credentials(settings(), tenancy))
    try:
        client = {instance_id: poller.client for instance_id, poller in exporter.pollers.items()}
        # One client per account and endpoint; one bucket per account, across its regions.
        assert len(clients) == 3
        assert client["idaas_hz"].rate_limit is client["idaas_hz2"].rate_limit
        assert client["idaas_hz"] is not client["idaas_hz2"]
        assert client["idaas_sg"].rate_limit is not client["idaas_hz"].rate_limit
        assert client["idaas_hz"].rate_limit.rate == 2
        assert client["idaas_sg"].rate_limit.rate == 5  # the settings' requests_per_second
        assert exporter.poll_intervals == {"idaas_hz2": 60, "idaas_hz": 60, "idaas_sg": 120}
        assert {c.endpoint.host for c in clients} == {
            "eiam.cn-hangzhou.aliyuncs.com",
            "eiam.ap-southeast-1.aliyuncs.com",
        }
    finally:
        exporter.store.close()


async def test_a_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("first-secret\n")
    tenancy = plan(f"accounts: [{{name: a, access_key: {{id: LTAI-a, secret_file: {secret}}}}}]", instance_ids="i")
    account = tenancy.accounts["a"]
    assert account is not None
    provider = credentials_for(account, {"a": account}, environ={})
    first = await provider.get()
    assert (first.access_key_id, first.access_key_secret.get_secret_value()) == ("LTAI-a", "first-secret")
    secret.write_text("rotated-secret-value\n")
    os.utime(secret, ns=(1, 1))  # a different mtime even on coarse file systems
    assert (await provider.get()).access_key_secret.get_secret_value() == "rotated-secret-value"
    secret.unlink()
    with pytest.raises(CredentialsError, match=r"^account a \(access_key id from the config file\): "):
        await provider.get()


async def test_a_failing_source_is_one_line_without_secrets_and_is_built_again_next_time() -> None:
    built = []

    class Failing:
        async def get_credentials_async(self) -> object:
            raise RuntimeError(f"STS said no\nfor key {SECRET}")

    def factory() -> Failing:
        built.append(1)
        if len(built) == 1:
            raise ValueError("IMDS credentials is disabled")
        return Failing()

    provider = LibraryCredentialsProvider(factory, label="account b (ecs_ram_role)", secrets=lambda: [SECRET])
    with pytest.raises(CredentialsError) as first:
        await provider.get()
    assert str(first.value) == "account b (ecs_ram_role): IMDS credentials is disabled"
    with pytest.raises(CredentialsError) as second:
        await provider.get()
    assert str(second.value) == "account b (ecs_ram_role): STS said no for key **********"
    assert len(built) == 2


async def test_assume_role_is_signed_with_the_source_accounts_key_and_yields_sts_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real AssumeRole request over TLS, its signature checked by a stand-in written from the docs."""
    ca = make_ca(tmp_path / "ca", "test CA")
    make_leaf(tmp_path / "server", "localhost", ca, server=True)
    # The library verifies STS's certificate against the system's store (and certifi's).
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
    issued = {"AccessKeyId": "STS.temporary", "AccessKeySecret": "sts-" + SECRET, "SecurityToken": "token-value"}
    sts = FakeSts(keys={"LTAI-team": SECRET}, issued=issued)
    async with fake_sts(sts, tmp_path) as endpoint:
        document = TWO_ACCOUNTS.replace(
            "session_name: sync-exporter", f"session_name: sync-exporter\n      sts_endpoint: '{endpoint}'"
        )
        tenancy = plan(document, TEAM_ENV)
        named = {name: a for name, a in tenancy.accounts.items() if a is not None}
        credentials = await credentials_for(named["customer-a"], named, environ=TEAM_ENV).get()
        # A wrong source secret is refused by STS, and the error says so without the secret.
        wrong_env = {**TEAM_ENV, "TEAM_SECRET": "wrong-" + SECRET}
        with pytest.raises(CredentialsError) as refused:
            await credentials_for(named["customer-a"], named, environ=wrong_env).get()
    assert (credentials.access_key_id, credentials.access_key_secret.get_secret_value()) == (
        "STS.temporary",
        "sts-" + SECRET,
    )
    assert credentials.security_token is not None and credentials.security_token.get_secret_value() == "token-value"
    first = sts.requests[0]
    assert (first["AccessKeyId"], first["RoleArn"], first["RoleSessionName"], first["DurationSeconds"]) == (
        "LTAI-team",
        "acs:ram::1234567890123456:role/idaas-reader",
        "sync-exporter",
        "1800",
    )
    assert str(refused.value).startswith(
        "account customer-a (assume_role acs:ram::1234567890123456:role/idaas-reader via team): "
    )
    assert "SignatureDoesNotMatch" in str(refused.value) and SECRET not in str(refused.value)


def test_the_config_file_keys_for_accounts_are_not_settings(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text("poll_interval_seconds: 30\naccounts: []\ninstances: [{id: idaas_x}]\n")
    # Settings refuse unknown keys; these are the tenancy's, so the settings load without them.
    loaded = load_settings(str(config), {"state_path": ""})
    assert loaded.poll_interval_seconds == 30 and loaded.instance_ids == []


async def test_the_credentials_librarys_own_log_stays_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """Its modules print each failed refresh with a traceback; the poll's one-line error is enough."""
    document = TWO_ACCOUNTS.replace(
        "session_name: sync-exporter", "session_name: sync-exporter\n      sts_endpoint: '127.0.0.1:1'"
    )
    tenancy = plan(document, TEAM_ENV)
    named = {name: a for name, a in tenancy.accounts.items() if a is not None}
    provider = credentials_for(named["customer-a"], named, environ=TEAM_ENV)
    for _ in range(2):
        with pytest.raises(CredentialsError, match=r"Cannot connect to host 127\.0\.0\.1:1"):
            await provider.get()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Refresh credentials failed" not in captured.err, captured.err[:500]


async def test_each_instance_is_scheduled_at_its_own_interval() -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    tenancy = plan(TWO_ACCOUNTS, TEAM_ENV, poll_interval_seconds=30)
    exporter, clients = build_exporter(settings(), tenancy, account_credentials(settings(), tenancy))
    scheduler = AsyncIOScheduler()
    try:
        exporter.schedule(scheduler, poll_interval=30, target_refresh=900)
        intervals = {job.id: job.trigger.interval.total_seconds() for job in scheduler.get_jobs()}
        assert intervals == {
            "poll:idaas_hz": 30,
            "poll:idaas_sg": 120,
            "targets:idaas_hz": 900,
            "targets:idaas_sg": 900,
        }
    finally:
        exporter.store.close()
        for client in clients:
            await client.aclose()
