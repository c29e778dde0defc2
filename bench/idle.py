"""What a poll that changes nothing costs, hot, beside what re-rendering everything costs, in one run.

    .venv/bin/python bench/idle.py                     # 1,000 targets, 20 idle polls of each kind
    .venv/bin/python bench/idle.py --targets 5000

bench/run.py measures the exporter process's CPU across real poll intervals, which on these
virtual machines is mostly what waking after seconds asleep costs (bench/wake.py). Here the
exporter's objects run in this process against the simulator (in another thread) with simulated
time frozen, and polls run back to back; each poll's CPU is this thread's alone. Interleaved
with them, the same idle poll is followed by rendering and compressing the whole exposition from
scratch, which is what every poll cost before work followed change.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import scenario  # noqa: E402
from idaas_sync_exporter.api.client import ClientOptions, EiamClient  # noqa: E402
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider  # noqa: E402
from idaas_sync_exporter.api.endpoint import resolve_endpoint  # noqa: E402
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions  # noqa: E402
from idaas_sync_exporter.collect.store import StateStore  # noqa: E402
from idaas_sync_exporter.metrics.api_requests import ApiStats  # noqa: E402
from idaas_sync_exporter.metrics.exposition import ExpositionCache, Renderer  # noqa: E402
from idaas_sync_exporter.metrics.selfmetrics import SelfMetrics  # noqa: E402
from idaas_sync_exporter.service import Exporter  # noqa: E402
from idaas_sync_exporter.simulator.clock import ScaledClock  # noqa: E402
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread  # noqa: E402
from idaas_sync_exporter.simulator.world import World  # noqa: E402


async def measure(targets: int, polls: int) -> dict[str, list[float]]:
    clock = ScaledClock(speed=30)
    world = World(scenario(targets, False), seed=1, clock=clock)
    instance = next(iter(world.instances))
    simulator = SimulatorThread(SimulatorApp(world, [AccessKey("bench", SecretStr("bench-secret"))]))
    simulator.start()
    stats = ApiStats()
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider("bench", SecretStr("bench-secret")),
        options=ClientOptions(requests_per_second=100, burst=100),
        observer=stats.observe,
    )
    poller = InstancePoller(instance, client, StateStore(None), PollOptions())
    exporter = Exporter(store=StateStore(None), pollers={instance: poller}, api_stats=stats)
    cache = ExpositionCache(Renderer(SelfMetrics()))
    try:
        await exporter.refresh_targets(instance)
        print(f"cold poll of {targets} targets ...", flush=True)
        await exporter.poll(instance)
        await cache.prepare(exporter.snapshot)
        clock.pause()
        # Until a poll finds nothing new (followed jobs are not due for a re-read for minutes).
        for _ in range(10):
            result = await exporter.poll(instance)
            await cache.prepare(exporter.snapshot)
            if result is not None and result.jobs_changed == 0:
                break
        else:
            raise SystemExit("polls kept finding changes with simulated time frozen")
        seconds: dict[str, list[float]] = {"idle poll": [], "idle poll + full render": []}
        for _ in range(polls):
            for kind, measured in seconds.items():
                started = time.thread_time()
                result = await exporter.poll(instance)
                if kind == "idle poll":
                    await cache.prepare(exporter.snapshot)
                else:
                    rendered = Renderer(SelfMetrics()).render(exporter.snapshot)
                    for openmetrics in (False, True):
                        rendered.gzipped(openmetrics=openmetrics)
                measured.append(time.thread_time() - started)
                if result is None or result.jobs_changed or result.api_calls != 1:
                    raise SystemExit(f"not an idle poll with simulated time frozen: {result}")
        return seconds
    finally:
        await client.aclose()
        simulator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=20, help="idle polls of each kind, interleaved")
    args = parser.parse_args()
    seconds = asyncio.run(measure(args.targets, args.polls))
    print(f"\n| {args.targets} targets, CPU ms per poll (this thread) | min | median | max |")
    print("| --- | ---: | ---: | ---: |")
    for kind, values in seconds.items():
        ms = [value * 1000 for value in values]
        print(f"| {kind} (n={len(ms)}) | {min(ms):.2f} | {statistics.median(ms):.2f} | {max(ms):.2f} |")
    ratio = statistics.median(seconds["idle poll + full render"]) / statistics.median(seconds["idle poll"])
    print(f"\nre-rendering everything costs {ratio:.0f}x an idle poll (target: at least 50x)")
    return 0 if ratio >= 50 else 1


if __name__ == "__main__":
    raise SystemExit(main())
