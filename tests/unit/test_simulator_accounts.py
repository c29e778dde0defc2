"""The simulated cloud of ``simulate --accounts``: its file, its flags, its STS stand-in and the keys it issues."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from idaas_sync_exporter import cli
from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import CredentialsError, StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import ApiError
from idaas_sync_exporter.config.accounts import credentials_for
from idaas_sync_exporter.config.settings import load_settings
from idaas_sync_exporter.config.tenancy import plan_tenancy
from idaas_sync_exporter.simulator.actions import ActionError
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.cloud import Cloud, CloudFileError, load_cloud
from idaas_sync_exporter.simulator.launch import LaunchError, TenantFlags, tenant
from idaas_sync_exporter.simulator.server import RunningSimulator, SimulatorApp, start_simulator
from idaas_sync_exporter.simulator.sts import Session, Sessions, StsApp, rpc_signature, server_tls, start_sts
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from tests.conftest import SIM_START
from tests.pki import make_ca, make_leaf
from tests.sts import rpc_signature as documented_rpc_signature

TEAM_SECRET = "team-secret-4d3c2b1a"  # unique, so a leak is easy to grep for
OTHER_SECRET = "other-secret-9a8b7c6d"
ENV = {"TEAM_ID": "LTAI-team", "TEAM_SECRET": TEAM_SECRET, "OTHER_SECRET": OTHER_SECRET}
ROLE = "acs:ram::1234567890123456:role/idaas-sync-reader"
CLOUD = f"""
accounts:
  - name: team
    access_key: {{id_env: TEAM_ID, secret_env: TEAM_SECRET}}
    instances:
      - {{id: idaas_team_hz, region: cn-hangzhou}}
      - {{id: idaas_team_sg, region: ap-southeast-1}}
  - name: customer
    roles:
      - {{role_arn: "{ROLE}", trusted_accounts: [team], external_id: ext-7f3c}}
    instances:
      - {{id: idaas_customer_sg, region: ap-southeast-1}}
  - name: other
    access_key: {{id: LTAI-other, secret_env: OTHER_SECRET}}
"""


def cloud_file(tmp_path: Path, text: str = CLOUD) -> str:
    path = tmp_path / "cloud.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(tmp_path: Path, text: str, environ: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(CloudFileError) as caught:
        load_cloud(cloud_file(tmp_path, text), environ)
    return caught.value.problems


def test_the_file_names_accounts_keys_roles_and_instances_by_region(tmp_path: Path) -> None:
    cloud = load_cloud(cloud_file(tmp_path), ENV)
    assert cloud.regions() == ["ap-southeast-1", "cn-hangzhou"]
    assert cloud.instance_ids("ap-southeast-1") == ["idaas_team_sg", "idaas_customer_sg"]
    assert cloud.instance_ids() == ["idaas_team_hz", "idaas_team_sg", "idaas_customer_sg"]
    keys = {key.access_key_id: key for key in cloud.served_keys({"idaas_team_sg", "idaas_customer_sg"})}
    assert keys["LTAI-team"].instances == frozenset({"idaas_team_sg"})
    assert keys["LTAI-team"].access_key_secret.get_secret_value() == TEAM_SECRET
    assert keys["LTAI-other"].instances == frozenset()
    assert cloud.roles[ROLE].trusted_accounts == {"team"} and cloud.roles[ROLE].external_id == "ext-7f3c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "accounts: [{name: a, access_key: {id: LTAI-a, secret_env: TEAM_SECRET}}, "
            "{name: a, access_key: {id: LTAI-b, secret_env: TEAM_SECRET}}]",
            "accounts[1].name: 'a' is already the name of accounts[0]",
        ),
        (
            "accounts: [{name: a, access_key: {id: LTAI-a, secret_env: TEAM_SECRET}, instances: [{id: i1, region: "
            "cn-hangzhou}]}, {name: b, access_key: {id: LTAI-b, secret_env: TEAM_SECRET}, instances: [{id: i1, "
            "region: cn-hangzhou}]}]",
            "accounts[1].instances[0].id: i1 is already an instance of account a",
        ),
        (
            f"accounts: [{{name: a, roles: [{{role_arn: '{ROLE}', trusted_accounts: [nobody]}}]}}]",
            "accounts[0].roles[0].trusted_accounts: no account is named 'nobody'",
        ),
        (
            f"accounts: [{{name: a, roles: [{{role_arn: '{ROLE}', trusted_accounts: [b]}}]}}, "
            f"{{name: b, roles: [{{role_arn: '{ROLE}x', trusted_accounts: [a]}}]}}]",
            "accounts[0].roles[0].trusted_accounts: account b has no access_key to sign AssumeRole with",
        ),
        ("accounts: [{name: a, instances: []}]", "accounts[0]: give the account an access_key, or roles"),
        (
            "accounts: [{name: a, access_key: {id: LTAI-a, secret: inline-secret-value}}]",
            "accounts[0].access_key.secret: a secret written in the file is refused",
        ),
        (
            "accounts: [{name: a, access_key: {id: STS.mine, secret_env: TEAM_SECRET}}]",
            "accounts[0].access_key.id: AccessKey ids starting STS. are the STS stand-in's",
        ),
        (
            "accounts: [{name: a, access_key: {id: LTAI-a, secret_env: UNSET_VARIABLE}}]",
            "accounts[0].access_key.secret_env: the environment variable it names is not set or empty",
        ),
        ("accounts: [{name: a, colour: blue}]", "accounts[0].colour: unknown key; see docs/simulator.md"),
        (
            "accounts: [{name: a, access_key: {id: LTAI-a, secret_env: TEAM_SECRET}, "
            "instances: [{id: i1, region: Hangzhou}]}]",
            "accounts[0].instances[0].region: must be a region id such as cn-hangzhou or ap-southeast-1",
        ),
        ("accounts: []", "accounts: List should have at least 1 item after validation, not 0"),
    ],
)
def test_each_problem_of_the_file_is_one_line_naming_its_place(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(problem.startswith(expected) for problem in found), found
    assert all("\n" not in problem and TEAM_SECRET not in problem for problem in found)


def test_a_secret_pasted_where_its_variable_name_belongs_is_never_shown(tmp_path: Path) -> None:
    found = problems(tmp_path, "accounts: [{name: a, access_key: {id: LTAI-a, secret_env: 'p@ss w0rd!'}}]")
    assert found and all("p@ss" not in problem for problem in found), found


# -- the flags of `simulate` -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (TenantFlags(region="cn-hangzhou"), "--region needs --accounts FILE"),
        (TenantFlags(sts_listen="127.0.0.1:0"), "--sts-listen needs --accounts FILE"),
        (TenantFlags(instance_ids=",,"), "--instance-ids is empty"),
        (TenantFlags(instance_ids="a,b,a"), "--instance-ids names a twice"),
        (TenantFlags(instance_ids="a b"), "--instance-ids: 'a b' is not an instance id"),
        (TenantFlags(access_key_secret="x", access_key_secret_file="f"), "--access-key-secret and --access-key-"),
        (TenantFlags(), "the simulator needs an AccessKey secret"),
        (TenantFlags(accounts="c.yaml", access_key_id="x"), "--access-key-id and --accounts both name the tenant"),
        (TenantFlags(accounts="c.yaml", instance_ids="a"), "--instance-ids and --accounts both name the tenant"),
        (TenantFlags(accounts="c.yaml", region="Hangzhou"), "--region must be a region id"),
        (TenantFlags(accounts="c.yaml", sts_listen="127.0.0.1:0"), "--sts-listen needs --sts-tls-cert and"),
        (TenantFlags(accounts="c.yaml", sts_tls_key="k"), "--sts-tls-cert and --sts-tls-key are for --sts-listen"),
        (TenantFlags(accounts="c.yaml", region="eu-west-1"), "--region eu-west-1: no instance of --accounts"),
        (TenantFlags(accounts="missing.yaml"), "--accounts missing.yaml: cannot read"),
    ],
)
def test_a_bad_combination_of_flags_is_one_line_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: TenantFlags, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CLOUD, encoding="utf-8")
    with pytest.raises(LaunchError) as caught:
        tenant(flags, ENV)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(expected), caught.value.problems


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--region", "cn-hangzhou"], "--region needs --accounts FILE"),
        (["--speed", "nan"], "--speed must be a positive number"),
        (["--latency", "-1"], "--latency must be a number of seconds, 0 or more"),
        (["--accounts", "cloud.yaml", "--region", "eu-west-1"], "--region eu-west-1: no instance of"),
    ],
)
def test_simulate_refuses_bad_flags_with_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    cloud_file(tmp_path)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["simulate", "--listen", "127.0.0.1:0", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"idaas-sync-exporter: error: {expected}"), err


def test_an_sts_port_in_use_names_its_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_leaf(tmp_path / "sts", "localhost", make_ca(tmp_path / "ca", "test CA"), server=True)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        tls = ["--sts-tls-cert", str(tmp_path / "sts.crt"), "--sts-tls-key", str(tmp_path / "sts.key")]
        code = cli.main(
            ["simulate", "--listen", "127.0.0.1:0", "--accounts", cloud_file(tmp_path), "--sts-listen", address, *tls]
        )
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"idaas-sync-exporter: error: cannot listen on {address}: address already in use; "
        "choose another address with --sts-listen"
    )


def test_the_secret_may_come_from_a_file_and_its_path_is_not_shown(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(TEAM_SECRET + "\n")
    single = tenant(TenantFlags(access_key_id="LTAI-me", access_key_secret_file=str(secret), instance_ids="i1,i2"), {})
    assert single.instance_ids == ["i1", "i2"]
    (key,) = single.keys
    assert (key.access_key_id, key.access_key_secret.get_secret_value(), key.instances) == (
        "LTAI-me",
        TEAM_SECRET,
        None,
    )
    with pytest.raises(LaunchError) as caught:
        tenant(TenantFlags(access_key_secret_file=str(tmp_path / TEAM_SECRET)), {})
    assert caught.value.problems == [
        "--access-key-secret-file: cannot read the file it names: No such file or directory"
    ]


def test_a_region_serves_its_instances_with_each_key_limited_to_its_account(tmp_path: Path) -> None:
    served = tenant(TenantFlags(accounts=cloud_file(tmp_path), region="ap-southeast-1"), ENV)
    assert served.instance_ids == ["idaas_team_sg", "idaas_customer_sg"]
    assert {key.access_key_id: key.instances for key in served.keys} == {
        "LTAI-team": {"idaas_team_sg"},
        "LTAI-other": frozenset(),
    }
    assert served.owners()["idaas_customer_sg"] == "customer"


# -- the STS stand-in and the keys it issues ----------------------------------------------------------


def signed(
    params: dict[str, str], key_id: str = "LTAI-team", secret: str = TEAM_SECRET, at: float | None = None
) -> dict[str, str]:
    """An AssumeRole query signed as the credentials library signs it, sent at ``at`` (default: now)."""
    moment = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    query = {
        "Action": "AssumeRole",
        "Format": "JSON",
        "Version": "2015-04-01",
        "AccessKeyId": key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RoleSessionName": "idaas-sync-exporter",
        "DurationSeconds": "3600",
        **params,
    }
    query["Signature"] = rpc_signature(query, secret)
    return query


def test_the_stand_ins_signature_is_the_documented_one() -> None:
    query = {"Action": "AssumeRole", "RoleArn": ROLE, "Timestamp": "2026-01-01T00:00:00Z", "Name": "a b+c/d~"}
    assert rpc_signature(query, TEAM_SECRET) == documented_rpc_signature(query, TEAM_SECRET)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"RoleArn": ROLE}, "NoPermission"),  # no ExternalId
        ({"RoleArn": ROLE, "ExternalId": "wrong"}, "NoPermission"),
        ({"RoleArn": ROLE + "-gone", "ExternalId": "ext-7f3c"}, "EntityNotExist.Role"),
        ({"RoleArn": ROLE, "ExternalId": "ext-7f3c", "DurationSeconds": "60"}, "InvalidParameter.DurationSeconds"),
        ({"RoleArn": ROLE, "ExternalId": "ext-7f3c", "RoleSessionName": "x"}, "InvalidParameter.RoleSessionName"),
        ({"RoleArn": ROLE, "ExternalId": "ext-7f3c", "Version": "2014-01-01"}, "InvalidVersion"),
        ({"ExternalId": "ext-7f3c"}, "MissingParameter"),
    ],
)
def test_assume_role_is_refused_as_sts_refuses_it(tmp_path: Path, params: dict[str, str], code: str) -> None:
    app = StsApp(Sessions(load_cloud(cloud_file(tmp_path), ENV)))
    with pytest.raises(ActionError) as caught:
        app.assume_role("GET", signed(params))
    assert caught.value.code == code
    assert "ext-7f3c" not in caught.value.message  # what the policy expects is not told


def test_only_the_accounts_the_role_trusts_may_assume_it_and_only_with_their_own_secret(tmp_path: Path) -> None:
    app = StsApp(Sessions(load_cloud(cloud_file(tmp_path), ENV)))
    params = {"RoleArn": ROLE, "ExternalId": "ext-7f3c"}
    for query, code in (
        (signed(params, "LTAI-other", OTHER_SECRET), "NoPermission"),
        (signed(params, "LTAI-team", OTHER_SECRET), "SignatureDoesNotMatch"),
        (signed(params, "LTAI-nobody", OTHER_SECRET), "InvalidAccessKeyId.NotFound"),
    ):
        with pytest.raises(ActionError) as caught:
            app.assume_role("GET", query)
        assert caught.value.code == code
    query = signed(params)
    app.assume_role("GET", query)
    with pytest.raises(ActionError, match="nonce"):
        app.assume_role("GET", query)


def test_issued_keys_are_accepted_by_any_simulator_of_the_same_file_until_they_expire(tmp_path: Path) -> None:
    path = cloud_file(tmp_path)
    wall = ManualClock(SIM_START)
    issuer = StsApp(Sessions(load_cloud(path, ENV), wall_clock=wall), wall_clock=wall)
    answer = issuer.assume_role("GET", signed({"RoleArn": ROLE, "ExternalId": "ext-7f3c"}, at=SIM_START))
    issued = answer["Credentials"]
    assert issued["AccessKeyId"].startswith("STS.") and issued["Expiration"] == "2026-09-21T15:13:20Z"
    # Another process, which read the same file and shares nothing else with the issuer.
    elsewhere = Sessions(load_cloud(path, ENV), wall_clock=wall)
    served = {"idaas_team_sg", "idaas_customer_sg"}
    key = elsewhere.key(issued["AccessKeyId"], issued["SecurityToken"], served)
    assert key is not None and key.instances == frozenset({"idaas_customer_sg"})
    assert key.access_key_secret.get_secret_value() == issued["AccessKeySecret"]
    assert elsewhere.key("LTAI-team", None, served) is None  # not an issued key: the file's keys answer
    token = issued["SecurityToken"]
    prefix, payload, seal = token.split(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BA")
    for bad_token, code in (
        (None, "InvalidSecurityToken.Malformed"),
        (f"{prefix}.{forged_payload}.{seal}", "InvalidSecurityToken.Mismatch"),
        ("not-a-token", "InvalidSecurityToken.Mismatch"),
    ):
        with pytest.raises(ActionError) as caught:
            elsewhere.key(issued["AccessKeyId"], bad_token, served)
        assert caught.value.code == code
    with pytest.raises(ActionError) as caught:
        elsewhere.key("STS.someone-else", token, served)
    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    wall.advance(3600)
    with pytest.raises(ActionError) as caught:
        elsewhere.key(issued["AccessKeyId"], token, served)
    assert caught.value.code == "InvalidSecurityToken.Expired"


def test_a_session_sealed_with_another_keys_secret_is_refused(tmp_path: Path) -> None:
    cloud = load_cloud(cloud_file(tmp_path), ENV)
    other = load_cloud(cloud_file(tmp_path), {**ENV, "TEAM_SECRET": "a-different-team-secret"})
    session = Session("STS.abc", "customer", ROLE, "s1", "LTAI-team", int(SIM_START) + 3600)
    key_id, _, token = Sessions(other).issue(session)
    with pytest.raises(ActionError) as caught:
        Sessions(cloud, wall_clock=lambda: SIM_START).key(key_id, token.get_secret_value(), {"idaas_customer_sg"})
    assert caught.value.code == "InvalidSecurityToken.Mismatch"


@dataclass
class Region:
    simulator: RunningSimulator
    sts_endpoint: str
    cloud: Cloud


@pytest.fixture
async def region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Region]:
    """The ap-southeast-1 simulator of CLOUD with its STS stand-in over TLS, as `simulate --accounts` serves it."""
    ca = make_ca(tmp_path / "ca", "test CA")
    make_leaf(tmp_path / "sts", "localhost", ca, server=True)
    # The credentials library verifies STS's certificate against the system's store (and certifi's).
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
    served = tenant(TenantFlags(accounts=cloud_file(tmp_path), region="ap-southeast-1"), ENV)
    assert served.cloud is not None and served.instance_ids is not None
    world = World(SCENARIOS["demo"], seed=2, clock=ManualClock(SIM_START), instance_ids=served.instance_ids)
    sessions = Sessions(served.cloud)
    ids = set(world.instances)
    app = SimulatorApp(world, served.keys, session_keys=lambda key_id, token: sessions.key(key_id, token, ids))
    simulator = await start_simulator(app)
    sts = await start_sts(StsApp(sessions), server_tls(str(tmp_path / "sts.crt"), str(tmp_path / "sts.key")))
    try:
        yield Region(simulator, sts.endpoint, served.cloud)
    finally:
        await sts.stop()
        await simulator.stop()


EXPORTER_ACCOUNTS = """
accounts:
  - name: team
    access_key: {id_env: TEAM_ID, secret_env: TEAM_SECRET}
  - name: customer
    assume_role:
      role_arn: "acs:ram::1234567890123456:role/idaas-sync-reader"
      source_account: team
      external_id: ext-7f3c
      sts_endpoint: "STS_ENDPOINT"
instances:
  - {id: idaas_team_sg, region: ap-southeast-1, account: team}
  - {id: idaas_customer_sg, region: ap-southeast-1, account: customer}
"""


async def test_the_exporters_assume_role_gets_keys_that_see_the_roles_account_only(
    region: Region, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    document = yaml.safe_load(EXPORTER_ACCOUNTS.replace("STS_ENDPOINT", region.sts_endpoint))
    tenancy = plan_tenancy(load_settings(overrides={"state_path": ""}), document, environ=ENV)
    named = {name: account for name, account in tenancy.accounts.items() if account is not None}
    credentials = credentials_for(named["customer"], named, environ=ENV)
    client = EiamClient(
        endpoint=resolve_endpoint("ap-southeast-1", region.simulator.endpoint),
        credentials=credentials,
        options=ClientOptions(max_attempts=1),
    )
    try:
        answer = await client.call("ListSynchronizationJobs", {"InstanceId": "idaas_customer_sg", "MaxResults": "5"})
        assert answer["SynchronizationJobs"]
        listed = await client.call("ListInstances", {})
        assert [row["InstanceId"] for row in listed["Instances"]] == ["idaas_customer_sg"]
        with pytest.raises(ApiError) as caught:
            await client.call("ListSynchronizationJobs", {"InstanceId": "idaas_team_sg"})
        assert caught.value.code == "EntityNotExists.Instance"
        issued = await credentials.get()
    finally:
        await client.aclose()
    wrong = {**ENV, "TEAM_SECRET": "not-the-team-secret"}
    with pytest.raises(CredentialsError, match="SignatureDoesNotMatch"):
        await credentials_for(named["customer"], named, environ=wrong).get()
    team = EiamClient(
        endpoint=resolve_endpoint("ap-southeast-1", region.simulator.endpoint),
        credentials=StaticCredentialsProvider("LTAI-team", issued.access_key_secret),
        options=ClientOptions(max_attempts=1),
    )
    try:
        with pytest.raises(ApiError) as refused:
            await team.call("ListInstances", {})
        assert refused.value.code == "SignatureDoesNotMatch"
    finally:
        await team.aclose()
    assert issued.security_token is not None
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for secret in (TEAM_SECRET, issued.access_key_secret.get_secret_value(), issued.security_token.get_secret_value()):
        assert secret not in logged
    assert "sts issued credentials" in logged
