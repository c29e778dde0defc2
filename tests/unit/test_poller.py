"""Exactly-once counting against the simulator's ground truth."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.counting import FinishedJob, TargetKey
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.state import InstanceState
from idaas_sync_exporter.collect.store import StateError, StateStore
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.simulator.world import JobPlan, World
from tests.conftest import AK_ID, AK_SECRET, instance_id_of

pytestmark = pytest.mark.asyncio
OPTIONS = PollOptions(lookback_seconds=86400, overlap_seconds=30)


@pytest.fixture
async def client(simulator: RunningSimulator) -> AsyncIterator[EiamClient]:
    api = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=10_000, burst=10_000),
    )
    yield api
    await api.aclose()


def final_ids(world: World, at_ms: int) -> dict[str, JobPlan]:
    return {plan.job_id: plan for plan in world.finished_jobs(at_ms)}


def expected_jobs(world: World, baseline: set[str], at_ms: int) -> Counter[tuple[str, str, str]]:
    """Jobs final at ``at_ms`` that were not final at the cold start: (target_id, trigger, status)."""
    return Counter(
        (plan.target_id, plan.trigger_type, plan.final_status)
        for job_id, plan in final_ids(world, at_ms).items()
        if job_id not in baseline
    )


def counted_jobs(state: InstanceState) -> Counter[tuple[str, str, str]]:
    result: Counter[tuple[str, str, str]] = Counter()
    for key, tally in state.targets.items():
        for (trigger, status), value in tally.jobs.items():
            if value:
                result[(key.target_id, trigger, status)] += value
    return result


def make_poller(world: World, client: EiamClient, store: StateStore, clock: ManualClock) -> InstancePoller:
    return InstancePoller(instance_id_of(world), client, store, OPTIONS, clock=clock)


async def test_cold_start_sets_gauges_but_counts_nothing(world: World, client: EiamClient, clock: ManualClock) -> None:
    store = StateStore(None)
    poller = make_poller(world, client, store, clock)
    result = await poller.poll()
    assert result.cold and result.jobs_counted == 0
    state = poller.state
    assert sum(counted_jobs(state).values()) == 0
    targets = {key.target_id for key in state.targets}
    assert targets == {plan.target_id for plan in world.visible_jobs(instance_id_of(world), world.now_ms())}
    with_last = [t for t in state.targets.values() if t.last_job is not None]
    assert len(with_last) == len(state.targets)
    stuck = [t for t in state.tracked.values() if t.status == "running"]
    assert stuck, "the scenario's long-running job is followed"
    assert state.cursor_ms is not None and min(t.start_ms for t in stuck) < state.cursor_ms


async def test_counts_exactly_once_across_polls_restarts_and_downtime(
    world: World, client: EiamClient, clock: ManualClock, tmp_path: Path
) -> None:
    path = str(tmp_path / "state.sqlite3")
    store = StateStore(path)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))

    for _ in range(30):  # 30 polls, one simulated minute apart
        clock.advance(60)
        await poller.poll()
    await poller.poll()  # the same moment again changes nothing
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())
    assert sum(counted_jobs(poller.state).values()) >= 10

    # Restart: a new poller and store on the same file continue without double counting.
    store.close()
    store = StateStore(path)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())

    # Three hours of downtime: jobs that started and finished meanwhile are all counted on return.
    store.close()
    clock.advance(3 * 3600)
    store = StateStore(path)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())
    store.close()


async def test_object_counters_match_ground_truth(world: World, client: EiamClient, clock: ManualClock) -> None:
    poller = make_poller(world, client, StateStore(None), clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))
    for _ in range(10):
        clock.advance(300)
        await poller.poll()
    truth: Counter[tuple[str, str, str, str]] = Counter()
    for job_id, plan in final_ids(world, world.now_ms()).items():
        if job_id in baseline:
            continue
        for object_type, per_action in plan.stats().items():
            for action, counts in per_action.items():
                for result in ("Success", "Failed", "Skipped"):
                    truth[(plan.target_id, object_type, action, result)] += counts[result]
    exported: Counter[tuple[str, str, str, str]] = Counter()
    from idaas_sync_exporter.api.models import snake_case

    for key, tally in poller.state.targets.items():
        for (object_type, action, result), value in tally.objects.items():
            exported[(key.target_id, object_type, action, result)] += value
    normalised = Counter({(t, snake_case(o), snake_case(a), r.lower()): v for (t, o, a, r), v in truth.items()})
    assert +exported == +normalised


class FailingStore(StateStore):
    def __init__(self, fail_times: int) -> None:
        super().__init__(None)
        self.fail_times = fail_times

    def save(
        self,
        state: InstanceState,
        changed: set[TargetKey] | None = None,
        recent: Sequence[FinishedJob] | None = None,
        recent_limit: int | None = None,
    ) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise StateError("disk full (simulated)")
        super().save(state, changed, recent, recent_limit)


async def test_crash_between_fetch_and_commit_redoes_the_poll(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    store = FailingStore(fail_times=0)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))
    clock.advance(1800)
    store.fail_times = 1
    with pytest.raises(StateError):
        await poller.poll()
    assert sum(counted_jobs(poller.state).values()) == 0  # nothing half-applied
    await poller.poll()
    await poller.poll()
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())


async def test_memory_is_bounded_by_the_window_not_uptime(
    world: World, client: EiamClient, clock: ManualClock, sim_app: object
) -> None:
    poller = make_poller(world, client, StateStore(None), clock)
    await poller.poll()
    sizes = []
    for _ in range(48):  # two simulated days, one poll every simulated hour
        clock.advance(3600)
        await poller.poll()
        sizes.append(len(poller.state.counted))
    # Only ids inside the re-read window are remembered: a handful, not thousands.
    assert max(sizes[-24:]) < 40
    assert poller.state.cursor_ms is not None
    assert poller.state.cursor_ms > (clock() - 3600) * 1000


async def test_api_calls_follow_new_jobs_not_the_window(
    world: World, client: EiamClient, clock: ManualClock, sim_app: object
) -> None:
    options = dataclasses.replace(OPTIONS, recheck_max_seconds=3600)
    poller = InstancePoller(instance_id_of(world), client, StateStore(None), options, clock=clock)
    cold = await poller.poll()
    assert cold.api_calls >= 7  # the whole lookback window once
    instance = instance_id_of(world)
    for _ in range(5):
        before = {p.job_id: p.status_at(world.now_ms()) for p in world.visible_jobs(instance, world.now_ms())}
        clock.advance(600)
        now_ms = world.now_ms()
        changed = sum(1 for p in world.visible_jobs(instance, now_ms) if before.get(p.job_id) != p.status_at(now_ms))
        result = await poller.poll()
        assert result.jobs_changed <= changed
        assert result.forced_rechecks == 0
        # One read per followed job that a complete batch did not return (each is a changed job).
        assert result.fetched_individually <= changed
        assert result.api_calls <= math.ceil(result.jobs_changed / 100) + 1 + result.fetched_individually


def add_finished_jobs(world: World, tag: str, starts_ms: list[int], *, running_ms: int = 500) -> list[JobPlan]:
    """Jobs on the first identity provider that start at ``starts_ms`` and succeed ``running_ms`` later."""
    instance = instance_id_of(world)
    idp = world.instances[instance].providers[0].identity_provider_id
    return [
        world.add_job(
            JobPlan(
                job_id=world.new_job_id(instance, f"{tag}-{index}"),
                instance_id=instance,
                target_type="identity_provider",
                target_id=idp,
                direction="ingress",
                trigger_type="manual",
                start_ms=start_ms,
                pending_ms=100,
                running_ms=running_ms,
                final_status="success",
                statistics={"User": {"Updated": {"Total": 1, "Success": 1, "Failed": 0, "Skipped": 0}}},
            )
        )
        for index, start_ms in enumerate(starts_ms)
    ]


async def test_overlap_is_checked_by_count_and_a_late_job_is_still_counted(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    poller = make_poller(world, client, StateStore(None), clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))
    now_ms = world.now_ms()
    # 250 jobs in the ten seconds before now: they will all lie in the next polls' overlap.
    add_finished_jobs(world, "overlap", [now_ms - 12_000 + 40 * i for i in range(250)], running_ms=1)
    clock.advance(1)
    first = await poller.poll()
    assert first.window_calls >= 3

    clock.advance(1)
    again = await poller.poll()
    # Nothing appeared late, so the known jobs in the overlap are counted, not listed again.
    assert again.window_calls == 1
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())

    # A job that shows up late, older than all of them: it sits on the overlap's last page.
    assert poller.state.cursor_ms is not None
    (late,) = add_finished_jobs(world, "late", [max(poller.state.cursor_ms - 29_000, now_ms - 20_000)], running_ms=1)
    clock.advance(1)
    found = await poller.poll()
    assert found.window_calls >= 3
    assert late.job_id in poller.state.counted
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())
    assert world.instances[instance].by_id[late.job_id].start_ms >= poller.state.cursor_ms - 30_000


async def test_rechecks_wait_for_spare_calls_but_never_past_recheck_max(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    # Two poll intervals: the three batches below cannot all be read within the budget by then.
    options = dataclasses.replace(OPTIONS, recheck_max_seconds=120)
    poller = InstancePoller(instance, client, StateStore(None), options, clock=clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))
    # 300 ten-minute jobs on 300 targets: three batches of re-reads once they fall behind the window.
    start_ms = world.now_ms() + 1000
    plans = [
        world.add_job(
            JobPlan(
                job_id=world.new_job_id(instance, f"long-{index}"),
                instance_id=instance,
                target_type="application",
                target_id=f"app_recheck{index:04d}",
                direction="egress",
                trigger_type="auto",
                start_ms=start_ms + 50 * index,
                pending_ms=1000,
                running_ms=600_000 + 1000 * index,
                final_status="failed" if index % 10 == 0 else "success",
                statistics={"User": {"Pushed": {"Total": 1, "Success": 1, "Failed": 0, "Skipped": 0}}},
            )
        )
        for index in range(300)
    ]
    results = []
    for _ in range(19):  # one poll a simulated minute, until the last job has ended recheck_max ago
        clock.advance(60)
        result = await poller.poll()
        results.append(result)
        if result.forced_rechecks == 0:
            assert result.api_calls <= math.ceil(result.jobs_changed / 100) + 1 + result.fetched_individually

    assert any(result.jobs_deferred >= 100 for result in results), "some re-reads waited for a later poll"
    assert any(result.forced_rechecks for result in results), "and some could wait no longer"
    last_end_s = max(plan.end_ms for plan in plans) / 1000
    assert clock() >= last_end_s + options.recheck_max_seconds
    assert counted_jobs(poller.state) == expected_jobs(world, baseline, world.now_ms())
    assert not any(job_id in poller.state.tracked for job_id in (plan.job_id for plan in plans))


async def test_a_job_injected_as_failed_is_counted_once(world: World, client: EiamClient, clock: ManualClock) -> None:
    instance = instance_id_of(world)
    poller = make_poller(world, client, StateStore(None), clock)
    await poller.poll()
    idp = world.instances[instance].providers[2].identity_provider_id
    plan = JobPlan(
        job_id=world.new_job_id(instance, "injected"),
        instance_id=instance,
        target_type="identity_provider",
        target_id=idp,
        direction="ingress",
        trigger_type="manual",
        start_ms=world.now_ms() + 1000,
        pending_ms=1000,
        running_ms=5000,
        final_status="failed",
        statistics={"User": {"Created": {"Total": 3, "Success": 1, "Failed": 2, "Skipped": 0}}},
        error_code="IdentityProvider.ConnectionFailed",
        error_message="boom",
    )
    world.add_job(plan)
    key = TargetKey("identity_provider", idp, "ingress")
    before = dict(poller.state.targets[key].jobs)
    for _ in range(3):
        clock.advance(4)
        await poller.poll()
    tally = poller.state.targets[key]
    assert tally.jobs.get(("manual", "failed"), 0) == before.get(("manual", "failed"), 0) + 1
    assert tally.errors["IdentityProvider.ConnectionFailed"] >= 1
    assert tally.last_job is not None and tally.last_job.job_id == plan.job_id
    assert tally.last_job.objects[("user", "created", "failed")] == 2


def _unused(_: Callable[..., object]) -> None:
    return None


async def test_an_undocumented_status_is_exported_under_its_own_name(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    from idaas_sync_exporter.metrics.exposition import render

    instance = instance_id_of(world)
    store = StateStore(None)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    idp = world.instances[instance].providers[1].identity_provider_id
    plan = world.add_job(
        JobPlan(
            job_id=world.new_job_id(instance, "init"),
            instance_id=instance,
            target_type="identity_provider",
            target_id=idp,
            direction="ingress",
            trigger_type="auto",
            start_ms=world.now_ms() + 1000,
            pending_ms=60_000,
            running_ms=60_000,
            final_status="success",
            initial_status="init",
        )
    )
    clock.advance(5)
    await poller.poll()
    assert poller.state.tracked[plan.job_id].status == "init"
    exporter = Exporter(store=store, pollers={instance: poller}, api_stats=ApiStats())
    text = render(exporter.snapshot).decode()
    labels = f'instance_id="{instance}",target_type="identity_provider",target_id="{idp}",direction="ingress"'
    assert f'idaas_sync_jobs_in_progress{{{labels},status="init"}} 1' in text
    assert f'idaas_sync_jobs_in_progress{{{labels},status="running"}} 0' in text


class CountingStore(StateStore):
    def __init__(self) -> None:
        super().__init__(None)
        self.saves = 0

    def save(
        self,
        state: InstanceState,
        changed: set[TargetKey] | None = None,
        recent: Sequence[FinishedJob] | None = None,
        recent_limit: int | None = None,
    ) -> None:
        self.saves += 1
        super().save(state, changed, recent, recent_limit)


async def test_a_poll_that_learns_nothing_commits_nothing_and_keeps_the_state(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    store = CountingStore()
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    clock.advance(60)
    await poller.poll()
    assert store.saves == 2
    # Simulated time stands still: the API shows exactly what was committed.
    settled = poller.state
    for _ in range(3):
        result = await poller.poll()
        assert result.api_calls >= 1 and result.jobs_changed == 0
    assert store.saves == 2
    assert poller.state is settled
    # Time moves and new jobs finish: the next poll commits them.
    clock.advance(600)
    result = await poller.poll()
    assert result.jobs_changed > 0
    assert store.saves == 3
    assert poller.state is not settled


async def test_a_failed_commit_leaves_the_pollers_memory_so_the_next_poll_redoes_everything(
    world: World, client: EiamClient, clock: ManualClock
) -> None:
    store = FailingStore(fail_times=0)
    poller = make_poller(world, client, store, clock)
    await poller.poll()
    baseline = set(final_ids(world, world.now_ms()))
    cursor_ms = poller.state.cursor_ms
    assert cursor_ms is not None
    # One job the API shows without a status (reported, never counted) and one that appears behind
    # the window, where only the late check finds it (reported and counted).
    (odd,) = add_finished_jobs(world, "no-status", [world.now_ms() + 1000])
    odd.wire_overrides = {"Status": None}
    (late,) = add_finished_jobs(world, "late", [cursor_ms - 60_000])
    # Long enough that the late check is due whatever the call budget.
    clock.advance(OPTIONS.late_horizon_seconds)
    before = (dict(poller.reported), poller.last_late_check_ms, poller.pruned_before_ms, dict(poller.last_seen_ms))
    store.fail_times = 1
    with pytest.raises(StateError):
        await poller.poll()  # it reported both and ran the late check, but committed nothing
    assert (dict(poller.reported), poller.last_late_check_ms, poller.pruned_before_ms, dict(poller.last_seen_ms)) == (
        before
    )

    clock.advance(60)  # too soon for another late check, had the failed poll's been remembered
    result = await poller.poll()
    assert result.anomalies.get("malformed") == 1, "reported again: its count was lost with the failed commit"
    assert result.anomalies.get("late") == 1
    # Every job counted once, the late one included, the one without a status left out.
    expected = expected_jobs(world, baseline, world.now_ms())
    expected[(odd.target_id, odd.trigger_type, odd.final_status)] -= 1
    assert counted_jobs(poller.state) == +expected
    assert poller.last_late_check_ms == clock() * 1000
    assert {key for key, _ in poller.reported} >= {odd.job_id, late.job_id}
    assert poller.pruned_before_ms > before[2]
