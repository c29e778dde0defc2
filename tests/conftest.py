from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import AccessKey, RunningSimulator, SimulatorApp, start_simulator
from idaas_sync_exporter.simulator.world import SCENARIOS, JobPlan, World

# Only loopback may ever be contacted: the credential chain must not try the ECS metadata
# address or read a developer's CLI profile. Set before anything imports the chain, which
# reads these variables once at import time; subprocesses inherit them.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
os.environ["ALIBABA_CLOUD_CLI_PROFILE_DISABLED"] = "true"

# Facts from the API documentation and the official SDK that the tests check against,
# copied into the repository so that a clone needs nothing beside it.
DATA = Path(__file__).resolve().parent / "data"
AK_ID = "LTAI5tSimulatorKey"
AK_SECRET = "sim-secret-9f8e7d6c5b4a"  # unique, so a leak is easy to grep for
STS_ID = "STS.NUgYrLnoC37mZZCNnAbez"
STS_SECRET = "sts-secret-1a2b3c4d5e6f"
STS_TOKEN = "CAIS-sts-token-77aa88bb99cc"
# A fixed simulated "now" keeps the generated jobs identical between runs.
SIM_START = 1_790_000_000.0


# What the injected failures report, and what the tests then look for.
FAILURE_CODE = "IdentityProvider.ConnectionFailed"


def inject_failed_job(
    world: World,
    instance_id: str,
    target_id: str,
    *,
    hint: str = "injected-failure",
    job_id: str | None = None,
    running_ms: int = 30_000,
    statistics: dict[str, dict[str, dict[str, int]]] | None = None,
) -> JobPlan:
    """A manual ingress job of identity provider ``target_id`` that starts now and fails with FAILURE_CODE."""
    return world.add_job(
        JobPlan(
            job_id=job_id or world.new_job_id(instance_id, hint),
            instance_id=instance_id,
            target_type="identity_provider",
            target_id=target_id,
            direction="ingress",
            trigger_type="manual",
            start_ms=world.now_ms(),
            pending_ms=1000,
            running_ms=running_ms,
            final_status="failed",
            statistics=statistics or {},
            error_code=FAILURE_CODE,
            error_message="connection refused",
        )
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/system start other processes (the exporter, Prometheus, promtool): mark them."""
    system = Path(__file__).resolve().parent / "system"
    for item in items:
        if system in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.system)


def data_file(name: str) -> Path:
    return DATA / name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SIM_START)


@pytest.fixture
def world(clock: ManualClock) -> World:
    return World(SCENARIOS["demo"], seed=42, clock=clock)


@pytest.fixture
def sim_app(world: World) -> SimulatorApp:
    return SimulatorApp(
        world,
        [
            AccessKey(AK_ID, SecretStr(AK_SECRET)),
            AccessKey(STS_ID, SecretStr(STS_SECRET), SecretStr(STS_TOKEN)),
        ],
        seed=42,
    )


@pytest.fixture
async def simulator(sim_app: SimulatorApp) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(sim_app)
    yield running
    await running.stop()


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def make_client(simulator: RunningSimulator, sleeps: list[float]) -> AsyncIterator[Callable[..., EiamClient]]:
    clients: list[EiamClient] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def factory(secret: str = AK_SECRET, key_id: str = AK_ID, **options: object) -> EiamClient:
        opts = ClientOptions(requests_per_second=1000, burst=1000, **options)  # type: ignore[arg-type]
        client = EiamClient(
            endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
            credentials=StaticCredentialsProvider(key_id, SecretStr(secret)),
            options=opts,
            sleep=record_sleep,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


def instance_id_of(world: World) -> str:
    return next(iter(world.instances))


def now() -> float:
    return time.time()
