"""The simulated tenant behind ``serve --demo`` and ``once --demo``: an in-process simulator and its key.

The command line starts it and hands the exporter only what a real tenant would give: an endpoint,
an AccessKey and the instance ids (:class:`~idaas_sync_exporter.runtime.DemoTenant`), so the
exporter's assembly never depends on the simulator.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pydantic import SecretStr

from idaas_sync_exporter.simulator.clock import CompressedClock
from idaas_sync_exporter.simulator.server import AccessKey, RunningSimulator, SimulatorApp, start_simulator
from idaas_sync_exporter.simulator.world import SCENARIOS, World

DEMO_KEY_ID = "demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    speed: float = 30.0
    seed: int = 1
    scenario: str = "demo"


async def start_demo_simulator(options: DemoOptions) -> tuple[RunningSimulator, str, SecretStr, list[str]]:
    """An in-process simulator with a throwaway AccessKey; returns it with the key and its instance ids."""
    secret = SecretStr(secrets.token_urlsafe(24))
    # Faster than real time, but every time the API reports stays at or before the wall clock.
    world = World(SCENARIOS[options.scenario], seed=options.seed, clock=CompressedClock(speed=options.speed))
    app = SimulatorApp(world, [AccessKey(DEMO_KEY_ID, secret)], seed=options.seed)
    running = await start_simulator(app, "127.0.0.1", 0)
    return running, DEMO_KEY_ID, secret, list(world.instances)
