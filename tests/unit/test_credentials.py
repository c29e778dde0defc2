"""Missing or wrong credentials are a poll failure like any other: one clear line, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import DefaultChainCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.web.server import build_app
from tests.unit.test_http import endpoints_of

# What the alibabacloud-credentials chain raises when every provider comes up empty.
CHAIN_FAILURE = (
    "unable to load credentials from any of the providers in the chain: "
    "['EnvironmentVariableCredentialsProvider: Environment variable accessKeyId cannot be empty', "
    "'CLIProfileCredentialsProvider: cli credentials file is disabled', "
    "\"ProfileCredentialsProvider: [Errno 2] No such file or directory: '/home/x/.alibabacloud/credentials.ini'\"]"
)


class EmptyChain:
    async def get_credential_async(self) -> object:
        raise Exception(CHAIN_FAILURE)  # the chain raises plain Exceptions like this


@pytest.fixture
async def exporter(simulator: RunningSimulator, clock: ManualClock) -> AsyncIterator[Exporter]:
    stats = ApiStats()
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=DefaultChainCredentialsProvider(EmptyChain()),
        options=ClientOptions(max_attempts=1),
        observer=stats.observe,
    )
    store = StateStore(None)
    poller = InstancePoller("idaas_x", client, store, PollOptions(), clock=clock)
    yield Exporter(store=store, pollers={"idaas_x": poller}, api_stats=stats, clock=clock)
    await client.aclose()


async def test_missing_credentials_fail_the_poll_and_say_how_to_fix_it(
    exporter: Exporter, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    http: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, clock=clock))
    )
    await http.start_server()
    try:
        await exporter.refresh_targets("idaas_x")
        assert await exporter.poll("idaas_x") is None
        await endpoints_of(http).settled()
        metrics = await (await http.get("/metrics")).text()
        ready = await http.get("/readyz")
        ready_text = await ready.text()
        landing = await (await http.get("/")).text()
    finally:
        await http.close()
    assert 'idaas_up{instance_id="idaas_x"} 0' in metrics
    assert 'idaas_exporter_poll_failures_total{instance_id="idaas_x"} 1' in metrics
    assert ready.status == 503 and "no Alibaba Cloud credentials found" in ready_text
    assert "down" in landing and "ALIBABA_CLOUD_ACCESS_KEY_ID" in landing
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
    message = str(errors[0].__dict__["error"])
    for source in ("ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET", "~/.aliyun/config.json", "~/.alibabacloud/credentials.ini"):
        assert source in message
    assert "/home/x" not in message  # the chain's raw text stays out


async def test_an_unexpected_error_is_still_a_counted_poll_failure(
    exporter: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(exporter.pollers["idaas_x"], "poll", broken)
    assert await exporter.poll("idaas_x") is None
    view = exporter.snapshot.instances["idaas_x"]
    assert not view.up and view.poll_failures == 1
    assert view.last_error == "internal error: ZeroDivisionError: division by zero"


def test_ctrl_c_during_start_up_ends_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from idaas_sync_exporter import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_exporter_command", interrupted)
    assert cli.main(["once", "--demo"]) == 130
    assert capsys.readouterr().err == "idaas-sync-exporter: interrupted\n"
