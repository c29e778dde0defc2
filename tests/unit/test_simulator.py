"""Simulator behaviour: determinism, job life cycle, validation, protocol checks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from exporter.api.client import EiamClient
from exporter.api.errors import ApiError
from exporter.api.signing import EMPTY_BODY_SHA256
from exporter.simulator.actions import ActionError, Actions, validate_pull_configuration
from exporter.simulator.clock import ManualClock
from exporter.simulator.server import RunningSimulator, SimulatorApp
from exporter.simulator.world import DELETION_PROTECTION_ERROR, SCENARIOS, World
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
