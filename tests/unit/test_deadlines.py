"""Slow and huge answers: every call and every poll has a deadline, every answer a size cap."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import pytest

from idaas_sync_exporter.api.client import MAX_RESPONSE_BYTES, EiamClient
from idaas_sync_exporter.api.errors import ResponseTooLargeError
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import SimulatorApp
from idaas_sync_exporter.simulator.world import World
from tests.conftest import instance_id_of


async def test_a_trickling_answer_fails_the_call_at_its_deadline_and_the_poll_is_counted(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World, clock: ManualClock
) -> None:
    sim_app.faults.trickle_byte_seconds = 0.05  # a byte every 50 ms never trips the read timeout
    client = make(attempt_timeout_seconds=0.5, read_timeout_seconds=5)
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    exporter = Exporter(store=store, pollers={instance: poller}, api_stats=ApiStats(), clock=clock)
    started = time.monotonic()
    assert await exporter.poll(instance) is None
    assert time.monotonic() - started < 3
    view = exporter.snapshot.instances[instance]
    assert not view.up and view.poll_failures == 1
    assert view.last_error is not None and "AttemptDeadline" in view.last_error


async def test_a_poll_past_its_deadline_fails_and_saves_nothing(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World, clock: ManualClock
) -> None:
    sim_app.faults.latency_seconds = 0.4
    client = make()
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(deadline_seconds=0.3), clock=clock)
    exporter = Exporter(store=store, pollers={instance: poller}, api_stats=ApiStats(), clock=clock)
    assert await exporter.poll(instance) is None
    view = exporter.snapshot.instances[instance]
    assert not view.up and view.poll_failures == 1
    assert view.last_error is not None and "did not finish within 0.3 s" in view.last_error
    assert poller.state.is_cold  # nothing committed


async def test_an_answer_over_the_size_cap_is_not_read(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World
) -> None:
    sim_app.faults.oversized_bytes = 200 * 1024 * 1024
    client = make(attempt_timeout_seconds=60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ResponseTooLargeError, match=f"exceeds {MAX_RESPONSE_BYTES} bytes"):
        _ = [page async for page in client.list_synchronization_job_pages(instance_id_of(world))]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB"
