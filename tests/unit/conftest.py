"""Fixtures of the unit tests that talk to the in-process simulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web.server import build_app
from tests.conftest import AK_ID, AK_SECRET, instance_id_of


@pytest.fixture
async def make(simulator: RunningSimulator) -> AsyncIterator[Callable[..., EiamClient]]:
    clients: list[EiamClient] = []

    def factory(**options: float) -> EiamClient:
        client = EiamClient(
            endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
            credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
            options=ClientOptions(requests_per_second=1000, burst=1000, max_attempts=1, **options),
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def exporter(simulator: RunningSimulator, world: World, clock: ManualClock) -> AsyncIterator[Exporter]:
    stats = ApiStats()
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000, max_attempts=1),
        observer=stats.observe,
    )
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    yield Exporter(store=store, pollers={instance: poller}, api_stats=stats, clock=clock)
    await client.aclose()


@pytest.fixture
async def http(exporter: Exporter, clock: ManualClock) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, clock=clock))
    )
    await client.start_server()
    yield client
    await client.close()
