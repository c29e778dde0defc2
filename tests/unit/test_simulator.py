"""Simulator behaviour: determinism, job life cycle, validation, protocol checks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import httpx
import pytest

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import ApiError
from idaas_sync_exporter.api.signing import EMPTY_BODY_SHA256
from idaas_sync_exporter.simulator.actions import ActionError, Actions, validate_pull_configuration
from idaas_sync_exporter.simulator.clock import CompressedClock, ManualClock
from idaas_sync_exporter.simulator.demo import DemoOptions, start_demo_simulator
from idaas_sync_exporter.simulator.server import RunningSimulator, SimulatorApp
from idaas_sync_exporter.simulator.world import (
    APPLICATION_FAILURES,
    DELETION_PROTECTION_ERROR,
    IDENTITY_PROVIDER_FAILURES,
    PROVIDER_KIND_FAILURES,
    SCENARIOS,
    ScenarioSpec,
    World,
    failure_codes,
    provider_kind,
)
from tests.conftest import SIM_START, instance_id_of


def test_same_seed_same_world_and_different_seed_differs() -> None:
    first = World(SCENARIOS["demo"], seed=5, clock=ManualClock(SIM_START))
    second = World(SCENARIOS["demo"], seed=5, clock=ManualClock(SIM_START))
    third = World(SCENARIOS["demo"], seed=6, clock=ManualClock(SIM_START))

    def ids(w: World) -> list[str]:
        return [j.job_id for j in w.visible_jobs(instance_id_of(w), w.now_ms())]

    assert ids(first) == ids(second)
    assert ids(first) != ids(third)


def test_generation_does_not_depend_on_when_the_world_is_asked() -> None:
    clock_a = ManualClock(SIM_START)
    stepwise = World(SCENARIOS["demo"], seed=9, clock=clock_a)
    instance = instance_id_of(stepwise)
    for _ in range(12):
        clock_a.advance(600)
        stepwise.visible_jobs(instance, stepwise.now_ms())
    at_once = World(SCENARIOS["demo"], seed=9, clock=ManualClock(SIM_START))
    at = stepwise.now_ms()
    assert [j.job_id for j in stepwise.visible_jobs(instance, at)] == [
        j.job_id for j in at_once.visible_jobs(instance, at)
    ]


def test_jobs_move_from_pending_to_running_to_final(clock: ManualClock, world: World) -> None:
    instance = instance_id_of(world)
    clock.advance(3600)
    upcoming = [j for j in world.visible_jobs(instance, world.now_ms()) if j.start_ms > SIM_START * 1000]
    job = upcoming[0]
    assert job.status_at(job.start_ms) == "pending"
    assert job.status_at(job.start_ms + job.pending_ms) == "running"
    assert job.status_at(job.end_ms) == job.final_status
    wire = job.to_wire(job.start_ms + 1)
    assert "EndTime" not in wire and wire["Result"] == {}


def test_scenario_covers_every_case_the_dashboards_need(world: World) -> None:
    now = world.now_ms()
    jobs = [j for i in world.instances for j in world.visible_jobs(i, now)]
    statuses = {j.status_at(now) for j in jobs}
    assert {"success", "partial_success", "failed", "running"} <= statuses
    stuck = [j for j in jobs if j.status_at(now) == "running" and now - j.start_ms > 2 * 3600_000]
    assert stuck, "a job that stays running too long"
    assert any(j.error_code == DELETION_PROTECTION_ERROR for j in jobs)
    object_types = {o for j in jobs for o in j.stats()}
    actions = {a for j in jobs for per in j.stats().values() for a in per}
    assert object_types == {"User", "OrganizationalUnit", "Group", "GroupMember"}
    assert actions == {"Created", "Updated", "Deleted", "Binded", "Same", "Pushed", "Exported"}
    kinds = {p.provider_type.split(":")[-2] for p in next(iter(world.instances.values())).providers}
    assert {"dingtalk", "wecom", "lark", "ad", "ldap"} <= kinds


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({}, "MissingParameter", "IncrementalCallbackStatus"),
        ({"IncrementalCallbackStatus": "on"}, "InvalidParameter", "not one of enabled, disabled"),
        (
            {"IncrementalCallbackStatus": "enabled", "PeriodicSyncConfig": {"PeriodicSyncType": "cron"}},
            "MissingParameter",
            "PeriodicSyncCron",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PeriodicSyncConfig": {"PeriodicSyncType": "time"}},
            "MissingParameter",
            "PeriodicSyncTimes",
        ),
        (
            {
                "IncrementalCallbackStatus": "enabled",
                "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": ["3", "24"]},
            },
            "InvalidParameter",
            "PeriodicSyncTimes.2",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PullProtectedRule": {"UserDeletedThreshold": "-1"}},
            "InvalidParameter",
            "UserDeletedThreshold",
        ),
        (
            {"IncrementalCallbackStatus": "enabled", "PullProtectedRule": {"UserDeletedThreshld": "1"}},
            "InvalidParameter",
            "PullProtectedRule.UserDeletedThreshld",
        ),
        ({"IncrementalCallbackStatus": "enabled", "Surprise": "1"}, "InvalidParameter", "Surprise"),
    ],
)
def test_set_pull_configuration_validation(params: dict[str, object], code: str, fragment: str) -> None:
    with pytest.raises(ActionError) as caught:
        validate_pull_configuration(params)
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_list_rejects_bad_paging_and_foreign_tokens(world: World) -> None:
    actions = Actions(world)
    instance = instance_id_of(world)
    with pytest.raises(ActionError, match="MaxResults"):
        actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "MaxResults": "101"})
    with pytest.raises(ActionError, match="PageSize"):
        actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "PageSize": "500"})
    first = actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "MaxResults": "10"})
    with pytest.raises(ActionError, match="other filters"):
        actions.handle(
            "ListSynchronizationJobs",
            {"InstanceId": instance, "MaxResults": "10", "Status": "failed", "NextToken": first["NextToken"]},
        )
    with pytest.raises(ActionError, match="malformed"):
        actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "NextToken": "garbage"})


def test_pull_configuration_of_a_non_inbound_provider_is_refused(world: World) -> None:
    instance = instance_id_of(world)
    oidc = next(p for p in world.instances[instance].providers if p.pull_config is None)
    with pytest.raises(ActionError) as caught:
        Actions(world).handle(
            "GetIdentityProviderUdPullConfiguration",
            {"InstanceId": instance, "IdentityProviderId": oidc.identity_provider_id},
        )
    assert caught.value.code == "OperationNotSupported.IdentityProvider"


async def test_unsigned_tampered_and_replayed_requests_are_refused(
    simulator: RunningSimulator, sim_app: SimulatorApp, make_client: Callable[..., EiamClient]
) -> None:
    async with httpx.AsyncClient(base_url=simulator.endpoint) as raw:
        unsigned = await raw.post("/", params={"InstanceId": "x"}, headers={"x-acs-action": "ListInstances"})
        assert unsigned.status_code == 400 and unsigned.json()["Code"] == "IncompleteSignature"
        assert {"RequestId", "HostId", "Code", "Message"} <= set(unsigned.json())

    # Replay one valid signed request byte for byte: the nonce must be refused.
    captured: list[httpx.Request] = []
    client = make_client()
    client._http.event_hooks["request"].append(_capture(captured))
    await client.call("ListInstances", {})
    original = captured[0]
    async with httpx.AsyncClient() as raw:
        replay = await raw.post(str(original.url), headers=dict(original.headers))
        assert replay.json()["Code"] == "SignatureNonceUsed"
        headers = dict(original.headers)
        headers["x-acs-signature-nonce"] = "0" * 32
        tampered = await raw.post(str(original.url), headers=headers)
        assert tampered.status_code == 403 and tampered.json()["Code"] == "SignatureDoesNotMatch"
        headers = dict(original.headers)
        headers["x-acs-content-sha256"] = hashlib.sha256(b"x").hexdigest()
        wrong_body = await raw.post(str(original.url), headers=headers)
        assert wrong_body.json()["Code"] == "IncompleteSignature"
    assert original.headers["x-acs-content-sha256"] == EMPTY_BODY_SHA256


def _capture(into: list[httpx.Request]):  # type: ignore[no-untyped-def]
    async def hook(request: httpx.Request) -> None:
        into.append(request)

    return hook


async def test_fault_switches(sim_app: SimulatorApp, make_client: Callable[..., EiamClient]) -> None:
    sim_app.faults.server_error_rate = 1.0
    client = make_client(max_attempts=2)
    with pytest.raises(ApiError) as caught:
        await client.call("ListInstances", {})
    assert caught.value.code in {"ServiceUnavailable", "InternalError"}
    assert caught.value.http_status >= 500


# -- the demo's clock ------------------------------------------------------------------------------


class FakeWall:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_demo_clock_never_reports_a_time_after_the_wall_clock_and_jobs_keep_coming() -> None:
    """Half an hour at speed 30, asked every 10 s: no StartTime, EndTime or Date after the wall clock.

    The clock the demo had before (simulated time = start + 30 x elapsed) fails the first check on
    the first request after a few seconds: its jobs end up to an hour in the future.
    """
    wall = FakeWall(SIM_START)
    world = World(SCENARIOS["demo"], seed=3, clock=CompressedClock(speed=30, wall=wall))
    actions = Actions(world)
    instance = instance_id_of(world)
    seen: set[str] = set()
    new_each_minute: list[int] = []
    for _ in range(30):
        new = 0
        for _ in range(6):
            wall.now += 10
            now_ms = wall.now * 1000
            answer = actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "MaxResults": "100"})
            for job in answer["SynchronizationJobs"]:
                assert job["StartTime"] <= now_ms and job.get("EndTime", 0) <= now_ms, (job, now_ms)
                new += job["SynchronizationJobId"] not in seen
                seen.add(job["SynchronizationJobId"])
                if job["Status"] in ("pending", "running"):
                    single = actions.handle(
                        "GetSynchronizationJob",
                        {"InstanceId": instance, "SynchronizationJobId": job["SynchronizationJobId"]},
                    )["SynchronizationJob"]
                    assert single["StartTime"] <= now_ms
            assert world.api_now() <= wall.now  # the Date header
        new_each_minute.append(new)
    # The demo tenant lives half an hour a minute: about a dozen new jobs each minute, every minute.
    assert min(new_each_minute[1:]) >= 4, new_each_minute


def test_the_demo_clock_compresses_the_time_since_it_started_and_keeps_the_history_before() -> None:
    wall = FakeWall(SIM_START)
    clock = CompressedClock(speed=30, wall=wall)
    origin_ms = int(SIM_START * 1000)
    assert clock() == SIM_START
    wall.now += 60
    assert clock() == SIM_START + 30 * 60  # half an hour of the tenant's life in a minute
    assert clock.api_ms(origin_ms - 3_600_000) == origin_ms - 3_600_000  # history: as it was
    assert clock.api_ms(origin_ms + 1_800_000) == origin_ms + 60_000  # since the start: compressed
    assert clock.api_ms(int(clock() * 1000)) == int(wall.now * 1000)  # its present is the wall clock's
    wall.now -= 30  # a wall clock stepped back does not take back what was shown
    assert clock() == SIM_START + 30 * 60
    assert CompressedClock(speed=1, wall=wall)() == wall.now


def test_filters_on_start_time_are_the_times_the_api_reports() -> None:
    wall = FakeWall(SIM_START)
    world = World(SCENARIOS["demo"], seed=4, clock=CompressedClock(speed=60, wall=wall))
    actions = Actions(world)
    instance = instance_id_of(world)
    wall.now += 120
    since = int((SIM_START + 60) * 1000)  # the last real minute: an hour of the tenant's jobs
    paged = actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "StartTime": str(since)})
    tokens = actions.handle(
        "ListSynchronizationJobs", {"InstanceId": instance, "StartTime": str(since), "MaxResults": "100"}
    )
    everything = actions.handle("ListSynchronizationJobs", {"InstanceId": instance, "PageSize": "100"})
    expected = [j["SynchronizationJobId"] for j in everything["SynchronizationJobs"] if j["StartTime"] >= since]
    assert expected, "no job in the last minute"
    assert [j["SynchronizationJobId"] for j in paged["SynchronizationJobs"]] == expected[:20]
    assert paged["TotalCount"] == tokens["TotalCount"] == len(expected)
    assert [j["SynchronizationJobId"] for j in tokens["SynchronizationJobs"]] == expected


async def test_the_demo_simulator_answers_no_time_after_the_wall_clock() -> None:
    """``serve --demo``'s simulator, over HTTP, at an hour per real second."""
    running, key_id, secret, instance_ids = await start_demo_simulator(DemoOptions(speed=3600))
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", running.endpoint),
        credentials=StaticCredentialsProvider(key_id, secret),
        options=ClientOptions(max_attempts=1),
    )
    try:
        await asyncio.sleep(1.5)
        answer = await client.call("ListSynchronizationJobs", {"InstanceId": instance_ids[0], "MaxResults": "100"})
        received_ms = time.time() * 1000
        api_now = client.api_now_ms()
    finally:
        await client.aclose()
        await running.stop()
    assert answer["SynchronizationJobs"]
    assert max(job.get("EndTime", job["StartTime"]) for job in answer["SynchronizationJobs"]) <= received_ms
    assert api_now is not None and api_now <= received_ms + 1000  # the Date header has whole seconds


# -- error codes by target ---------------------------------------------------------------------------

MANY_FAILURES = ScenarioSpec(
    "failures", providers_per_instance=12, applications_per_instance=6, failure_rate=0.5, history_hours=48
)


def test_failure_codes_fit_the_target_type_and_the_provider_kind() -> None:
    world = World(MANY_FAILURES, seed=11, clock=ManualClock(SIM_START))
    state = next(iter(world.instances.values()))
    kinds = {p.identity_provider_id: provider_kind(p.provider_type) for p in state.providers}
    failed = [j for j in world.finished_jobs() if j.error_code and j.error_code != DELETION_PROTECTION_ERROR]
    application_codes = {code for code, _ in APPLICATION_FAILURES}
    provider_codes = {code for codes in PROVIDER_KIND_FAILURES.values() for code, _ in codes} | {
        code for code, _ in IDENTITY_PROVIDER_FAILURES
    }
    assert not application_codes & provider_codes
    seen: dict[str, set[str]] = {}
    for job in failed:
        if job.target_type == "application":
            assert job.error_code in application_codes, job
            seen.setdefault("application", set()).add(job.error_code)
            continue
        kind = kinds[job.target_id]
        allowed = {code for code, _ in failure_codes("identity_provider", f"urn:x:{kind}:pull")}
        assert job.error_code in allowed, (kind, job.error_code)
        assert job.error_code not in application_codes
        seen.setdefault(kind, set()).add(job.error_code)
    # Many jobs, so every code of every kind shows up: the test sees what it claims to check.
    assert seen["application"] == application_codes
    for kind in ("dingtalk", "wecom", "lark", "ad", "ldap"):
        own = {code for code, _ in PROVIDER_KIND_FAILURES[kind]} | {code for code, _ in IDENTITY_PROVIDER_FAILURES}
        assert seen[kind] == own, kind
    assert "IdentityProvider.LdapBindFailed" not in seen["wecom"] | seen["dingtalk"] | seen["lark"]
    assert "IdentityProvider.AccessTokenInvalid" not in seen["ad"] | seen["ldap"]


def test_the_demo_anchors_fail_with_codes_of_their_provider() -> None:
    world = World(SCENARIOS["demo"], seed=1, clock=ManualClock(SIM_START))
    state = next(iter(world.instances.values()))
    types = {p.identity_provider_id: p.provider_type for p in state.providers}
    anchors = [j for j in state.jobs if "anchor" in j.job_id or j.error_code == DELETION_PROTECTION_ERROR]
    for job in state.jobs:
        if job.error_code and job.error_code != DELETION_PROTECTION_ERROR:
            assert job.error_code in {c for c, _ in failure_codes(job.target_type, types.get(job.target_id))}
    assert anchors


def test_a_world_may_be_given_its_instance_ids() -> None:
    world = World(SCENARIOS["demo"], seed=1, clock=ManualClock(SIM_START), instance_ids=["idaas_a", "idaas_b"])
    assert list(world.instances) == ["idaas_a", "idaas_b"]
    providers = [{p.identity_provider_id for p in state.providers} for state in world.instances.values()]
    assert not providers[0] & providers[1]
    assert world.visible_jobs("idaas_b", world.now_ms())
    with pytest.raises(ValueError, match="distinct"):
        World(SCENARIOS["demo"], seed=1, clock=ManualClock(SIM_START), instance_ids=["idaas_a", "idaas_a"])
