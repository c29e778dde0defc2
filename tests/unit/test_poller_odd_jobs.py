"""One odd job never stops counting for the others (against the simulator's fault switches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.poller import FUTURE_TOLERANCE_MS, InstancePoller, PollOptions, PollResult
from idaas_sync_exporter.collect.state import InstanceState
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.simulator.world import JobPlan, World
from tests.conftest import AK_ID, AK_SECRET, instance_id_of


@pytest.fixture
async def client(simulator: RunningSimulator) -> AsyncIterator[EiamClient]:
    api = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=10_000, burst=10_000, max_attempts=1),
    )
    yield api
    await api.aclose()


def odd_job(world: World, hint: str, overrides: dict[str, Any], *, start_in_ms: int = 1000) -> JobPlan:
    instance = instance_id_of(world)
    idp = world.instances[instance].providers[0].identity_provider_id
    return world.add_job(
        JobPlan(
            job_id=world.new_job_id(instance, hint),
            instance_id=instance,
            target_type="identity_provider",
            target_id=idp,
            direction="ingress",
            trigger_type="auto",
            start_ms=world.now_ms() + start_in_ms,
            pending_ms=1000,
            running_ms=2000,
            final_status="success",
            statistics={"User": {"Created": {"Total": 2, "Success": 2, "Failed": 0, "Skipped": 0}}},
            wire_overrides=overrides,
        )
    )


def counted(state: InstanceState) -> Counter[str]:
    return Counter({key.target_id: sum(tally.jobs.values()) for key, tally in state.targets.items()})


def truth(world: World, baseline: set[str], at_ms: int, leave_out: set[str]) -> Counter[str]:
    result: Counter[str] = Counter()
    for plan in world.finished_jobs(at_ms):
        if plan.job_id not in baseline and plan.job_id not in leave_out:
            result[plan.target_id] += 1
    return +result


async def run_polls(poller: InstancePoller, clock: ManualClock, polls: int, step: float = 60) -> list[PollResult]:
    results = []
    for _ in range(polls):
        clock.advance(step)
        results.append(await poller.poll())
    return results


async def test_a_job_dated_in_the_future_never_moves_the_cursor(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    poller = InstancePoller(instance_id_of(world), client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    baseline = {plan.job_id for plan in world.finished_jobs(world.now_ms())}
    future = odd_job(world, "future", {"StartTime": world.now_ms() + 3600_000})
    results = await run_polls(poller, clock, 20)
    assert poller.state.cursor_ms is not None
    assert poller.state.cursor_ms <= world.now_ms() + FUTURE_TOLERANCE_MS
    # Every job is counted, the odd one included, exactly once.
    assert +counted(poller.state) == truth(world, baseline, world.now_ms(), set())
    assert sum(r.anomalies.get("future_start", 0) for r in results) == 1
    assert future.job_id in poller.state.counted


@pytest.mark.parametrize(
    ("hint", "overrides", "usable"),
    [
        ("string-count", {"Result": {"UserStatistics": {"Created": {"Total": "2", "Success": 2}}}}, True),
        ("negative-count", {"Result": {"UserStatistics": {"Created": {"Total": 2, "Success": -2}}}}, True),
        ("float-count", {"Result": {"UserStatistics": {"Created": {"Total": 2.5}}}}, True),
        ("statistics-list", {"Result": {"UserStatistics": [1, 2, 3]}}, True),
        ("huge-error-code", {"Result": {"ErrorCode": "E" * 100_000}}, True),
        ("long-target-id", {"TargetId": "idp_" + "x" * 600}, False),
        ("null-status", {"Status": None}, False),
        ("lone-surrogate", {"TargetId": "idp_\ud800"}, False),
    ],
)
async def test_one_malformed_job_is_quarantined_or_repaired_and_the_rest_counted(
    world: World, client: EiamClient, clock: ManualClock, hint: str, overrides: dict[str, Any], usable: bool
) -> None:
    poller = InstancePoller(instance_id_of(world), client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    baseline = {plan.job_id for plan in world.finished_jobs(world.now_ms())}
    odd = odd_job(world, hint, overrides)
    results = await run_polls(poller, clock, 10)  # every poll succeeds (poll() would raise otherwise)
    leave_out = set() if usable else {odd.job_id}
    assert +counted(poller.state) == truth(world, baseline, world.now_ms(), leave_out)
    reasons = Counter(reason for r in results for reason, n in r.anomalies.items() for _ in range(n))
    assert sum(reasons.values()) == 1, reasons  # logged and counted once, not once per poll
    assert ("malformed" in reasons) == (not usable)
    assert all(len(key.target_id) <= 128 for key in poller.state.targets)


async def test_a_quarantined_job_is_counted_once_the_api_shows_it_usable(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    poller = InstancePoller(instance_id_of(world), client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    baseline = {plan.job_id for plan in world.finished_jobs(world.now_ms())}
    odd = odd_job(world, "fixed-later", {"Status": None})
    await run_polls(poller, clock, 3, step=5)
    assert odd.job_id not in poller.state.counted
    odd.wire_overrides = None  # the API now shows the job properly
    await run_polls(poller, clock, 3, step=5)
    assert odd.job_id in poller.state.counted
    assert +counted(poller.state) == truth(world, baseline, world.now_ms(), set())


async def test_rechecks_of_many_long_running_jobs_respect_the_url_limit(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    from idaas_sync_exporter.collect.counting import TargetKey
    from idaas_sync_exporter.collect.state import TrackedJob

    instance = instance_id_of(world)
    store = StateStore(None)
    now_ms = world.now_ms()
    # 1,000 followed jobs on 1,000 targets with long ids, running for over an hour: before, one
    # listing carried every target id and the API front refused it with 400 LineTooLong.
    tracked = {
        f"sync_long_{index}": TrackedJob(
            TargetKey("identity_provider", f"idp_{index:04d}_" + "x" * 100, "ingress"), "running", now_ms - 3600_000
        )
        for index in range(1000)
    }
    store.save(InstanceState(instance, now_ms, {}, {}, tracked))
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    result = await poller.poll()  # raised TransportError/ApiError before
    assert result.recheck_calls >= 1000 // 100
    assert not poller.state.tracked  # the simulator does not know them: each was read and let go


async def test_jobs_that_appear_after_the_overlap_passed_them_are_found_counted_and_reported(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    poller = InstancePoller(instance, client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    baseline = {plan.job_id for plan in world.finished_jobs(world.now_ms())}
    await run_polls(poller, clock, 3)
    # Five jobs the API inserts 5 minutes late, long after the 30 s overlap has moved past them.
    late = [odd_job(world, f"late-{n}", {}, start_in_ms=-300_000 - n * 1000) for n in range(5)]
    results = await run_polls(poller, clock, 12)  # 12 simulated minutes: past recheck_max_seconds
    assert all(plan.job_id in poller.state.counted for plan in late)
    assert +counted(poller.state) == truth(world, baseline, world.now_ms(), set())
    assert sum(r.anomalies.get("late", 0) for r in results) == 5


async def test_the_late_check_costs_one_call_when_nothing_is_late(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    poller = InstancePoller(instance, client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    results = await run_polls(poller, clock, 12)
    assert not any(r.anomalies.get("late") for r in results)
    # Each poll stays within ceil(new or changed / 100) + 1 calls, forced re-reads aside.
    assert all(r.api_calls <= -(-r.jobs_changed // 100) + 1 + r.forced_rechecks for r in results)
    # The late check's calls are its own, not counted as re-reads: one TotalCount call when it runs.
    assert any(r.late_check_calls == 1 for r in results) and all(r.late_check_calls <= 1 for r in results)
    assert all(r.api_calls == r.window_calls + r.recheck_calls + r.late_check_calls for r in results)


async def test_pages_full_of_odd_jobs_are_counted_but_logged_in_a_bounded_number_of_lines(
    world: World, client: EiamClient, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    from idaas_sync_exporter.collect.poller import ANOMALIES_LOGGED_PER_POLL

    poller = InstancePoller(instance_id_of(world), client, StateStore(None), PollOptions(), clock=clock)
    await poller.poll()
    odd = [odd_job(world, f"flood-{index}", {"Status": None}, start_in_ms=1000 + index) for index in range(200)]
    caplog.clear()
    with caplog.at_level("WARNING", logger="idaas_sync_exporter.collect.poller"):
        results = await run_polls(poller, clock, 3)
    assert sum(r.anomalies.get("malformed", 0) for r in results) == len(odd)  # every one counted, once
    lines = [record for record in caplog.records if record.name == "idaas_sync_exporter.collect.poller"]
    one_by_one = [record for record in lines if getattr(record, "reason", None) == "malformed"]
    summaries = [record for record in lines if getattr(record, "not_logged", None) is not None]
    assert len(one_by_one) == ANOMALIES_LOGGED_PER_POLL
    assert [record.__dict__["not_logged"] for record in summaries] == [len(odd) - ANOMALIES_LOGGED_PER_POLL]
