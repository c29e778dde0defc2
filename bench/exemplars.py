"""What exemplars cost to render, side by side in one run: the same snapshot with and without them.

    .venv/bin/python bench/exemplars.py                # 1,000 targets, 10 renders of each kind, interleaved
    .venv/bin/python bench/exemplars.py --targets 5000

A cold poll counts nothing, so the tenant is polled cold, then simulated time runs for a few
simulated hours and is polled again: every target whose jobs finished meanwhile now has counted
jobs and so exemplars. The snapshot is then rendered from scratch (both formats, plain and gzip),
alternately as it is and with every target's exemplars removed, and the OpenMetrics body sizes are
compared. This thread's CPU only (the simulator runs in another).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

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
from idaas_sync_exporter.metrics.exposition import Renderer  # noqa: E402
from idaas_sync_exporter.metrics.snapshot import Snapshot  # noqa: E402
from idaas_sync_exporter.service import Exporter  # noqa: E402
from idaas_sync_exporter.simulator.clock import ManualClock  # noqa: E402
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread  # noqa: E402
from idaas_sync_exporter.simulator.world import World  # noqa: E402


def without_exemplars(snapshot: Snapshot) -> Snapshot:
    instances = {
        instance_id: dataclasses.replace(
            view,
            targets=MappingProxyType(
                {
                    key: dataclasses.replace(
                        target, job_exemplars=MappingProxyType({}), error_exemplars=MappingProxyType({})
                    )
                    for key, target in view.targets.items()
                }
            ),
        )
        for instance_id, view in snapshot.instances.items()
    }
    return dataclasses.replace(snapshot, instances=MappingProxyType(instances))


async def snapshot_with_counted_jobs(targets: int, hours: float) -> Snapshot:
    clock = ManualClock(time.time())
    world = World(scenario(targets, False), seed=1, clock=clock)
    instance = next(iter(world.instances))
    simulator = SimulatorThread(SimulatorApp(world, [AccessKey("bench", SecretStr("bench-secret"))]))
    simulator.start()
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider("bench", SecretStr("bench-secret")),
        options=ClientOptions(requests_per_second=1000, burst=1000),
    )
    poller = InstancePoller(instance, client, StateStore(None), PollOptions(), clock=clock)
    exporter = Exporter(store=StateStore(None), pollers={instance: poller}, api_stats=ApiStats(), clock=clock)
    try:
        await exporter.refresh_targets(instance)
        print(f"cold poll of {targets} targets, then {hours:g} simulated hours of jobs ...", flush=True)
        await exporter.poll(instance)
        for _ in range(int(hours * 6)):
            clock.advance(600)
            await exporter.poll(instance)
        return exporter.snapshot
    finally:
        await client.aclose()
        simulator.stop()


def render_all(snapshot: Snapshot) -> int:
    """Render and compress everything, as after a poll that changed every target; the OpenMetrics size."""
    rendered = Renderer().render(snapshot)
    for openmetrics in (False, True):
        rendered.gzipped(openmetrics=openmetrics)
    return rendered.length(openmetrics=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours of jobs after the cold poll")
    parser.add_argument("--renders", type=int, default=10, help="renders of each kind, interleaved")
    args = parser.parse_args()
    with_them = asyncio.run(snapshot_with_counted_jobs(args.targets, args.hours))
    without = without_exemplars(with_them)
    views = [t for v in with_them.instances.values() for t in v.targets.values()]
    carrying = sum(1 for t in views if t.job_exemplars)
    seconds: dict[str, list[float]] = {"with exemplars": [], "without exemplars": []}
    sizes: dict[str, int] = {}
    for _ in range(args.renders):
        for kind, snapshot in (("with exemplars", with_them), ("without exemplars", without)):
            started = time.thread_time()
            sizes[kind] = render_all(snapshot)
            seconds[kind].append(time.thread_time() - started)
    print(f"\n{len(views)} targets, {carrying} with exemplars; full render of both formats, plain and gzip")
    print("\n| CPU ms per full render (this thread) | min | median | max | OpenMetrics bytes |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, values in seconds.items():
        ms = [value * 1000 for value in values]
        print(
            f"| {kind} (n={len(ms)}) | {min(ms):.0f} | {statistics.median(ms):.0f} | {max(ms):.0f} | {sizes[kind]:,} |"
        )
    ratio = statistics.median(seconds["with exemplars"]) / statistics.median(seconds["without exemplars"])
    grown = sizes["with exemplars"] / sizes["without exemplars"]
    print(f"\nwith exemplars / without: {ratio:.2f}x CPU, {grown:.3f}x OpenMetrics bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
