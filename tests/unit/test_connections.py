"""Clients without credentials cannot starve scrapes: idle connections, connection floods, password floods."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web
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
from idaas_sync_exporter.web.config import WebConfigWatcher
from idaas_sync_exporter.web.connections import ConnectionGuard
from idaas_sync_exporter.web.server import build_app
from tests.conftest import AK_ID, AK_SECRET, instance_id_of


@pytest.fixture
async def exporter(simulator: RunningSimulator, world: World, clock: ManualClock) -> AsyncIterator[Exporter]:
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000),
    )
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    exporter = Exporter(store=store, pollers={instance: poller}, api_stats=ApiStats(), clock=clock)
    await exporter.poll(instance)
    yield exporter
    await client.aclose()


async def serve(app: web.Application, guard: ConnectionGuard) -> tuple[web.AppRunner, asyncio.Server, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    server = await asyncio.get_running_loop().create_server(guard.wrap(runner.server), "127.0.0.1", 0)
    return runner, server, int(server.sockets[0].getsockname()[1])


async def get(port: int, path: str = "/metrics", headers: str = "") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_idle_connections_are_closed_and_never_lock_scrapers_out(exporter: Exporter) -> None:
    guard = ConnectionGuard(limit=8, first_request_seconds=0.5, idle_seconds=0.5)
    runner, server, port = await serve(build_app(exporter, poll_interval=60, connections=guard), guard)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        await asyncio.sleep(0.1)
        assert guard.open_connections <= 8
        assert (await get(port)).startswith(b"HTTP/1.1 200")  # the idle ones made room
        # A connection that never sends a request head (or only half of one) is closed.
        _, slow_writer = idle[-1]
        slow_writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        await slow_writer.drain()
        for reader, _ in idle:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        for _, writer in idle:
            writer.close()
        assert guard.open_connections == 0
    finally:
        server.close()
        await runner.cleanup()


async def test_a_keep_alive_connection_serves_scrapes_until_it_idles(exporter: Exporter) -> None:
    guard = ConnectionGuard(limit=8, first_request_seconds=1, idle_seconds=1)
    runner, server, port = await serve(build_app(exporter, poll_interval=60, connections=guard), guard)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.3)  # shorter than the idle limit: the connection stays
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then it idles out
        writer.close()
    finally:
        server.close()
        await runner.cleanup()


async def test_a_flood_of_wrong_passwords_does_not_delay_state_commits(exporter: Exporter, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=12)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    guard = ConnectionGuard(limit=512)
    app = build_app(exporter, poll_interval=60, connections=guard, web_config=WebConfigWatcher(str(config)))
    runner, server, port = await serve(app, guard)
    wrong = base64.b64encode(b"prometheus:wrong").decode()
    try:
        flood = [asyncio.create_task(get(port, "/", f"Authorization: Basic {wrong}\r\n")) for _ in range(64)]
        await asyncio.sleep(0.2)
        # What a state commit does: a job on the default worker pool, which bcrypt no longer uses.
        started = time.monotonic()
        await asyncio.to_thread(time.sleep, 0.01)
        commit_wait = time.monotonic() - started
        answers = await asyncio.gather(*flood)
    finally:
        server.close()
        await runner.cleanup()
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert commit_wait < 0.2, f"a commit waited {commit_wait:.2f} s behind password checks"
    assert set(statuses) <= {b"401", b"429"} and b"429" in statuses
