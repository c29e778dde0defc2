"""Two shards and an HA pair of one shard, scraped by a real Prometheus with the shipped alert rules.

Replicas a0 and b0 are shard 0 (a pair for availability), c1 is shard 1. b0 is killed with SIGKILL and
started again on its state file while a failed job is injected. Each replica must export exactly its
shard's instances, with counts exactly those the simulator finished, and the HA-safe alert must fire
once for the failed job although two replicas count it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.config.shards import Shard
from idaas_sync_exporter.simulator.clock import ScaledClock
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import ScenarioSpec, World
from tests.conftest import inject_failed_job
from tests.e2e import (
    LogReader,
    exporter_command,
    exporter_env,
    free_port,
    job_counts,
    metrics,
    prometheus,
    query,
    wait_for,
    wait_http,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SECRET = "ha-shards-secret"
RECHECK_MAX = 2.0
SPEC = ScenarioSpec(
    "ha-shards",
    instances=4,
    providers_per_instance=2,
    applications_per_instance=1,
    incremental_per_hour=30.0,
    failure_rate=0.0,
    partial_rate=0.0,
    history_hours=3,
    anchors=False,
)


class Replica:
    def __init__(self, name: str, shard: int, endpoint: str, instances: list[str], state: Path) -> None:
        self.name, self.shard, self.port = name, shard, free_port()
        self.args = exporter_command(
            "serve",
            "--instance-ids",
            ",".join(instances),
            "--shard-count",
            "2",
            "--shard-index",
            str(shard),
            "--endpoint",
            endpoint,
            "--access-key-id",
            "ha",
            "--state-path",
            str(state),
            "--poll-interval-seconds",
            "1",
            "--recheck-max-seconds",
            str(RECHECK_MAX),
            "--listen-address",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
        )
        self.env = exporter_env(IDAAS_EXPORTER_ACCESS_KEY_SECRET=SECRET)
        self.process: subprocess.Popen[str] | None = None
        self.logs: LogReader | None = None
        self.earlier_polls = 0

    def start(self) -> None:
        if self.logs is not None:
            self.earlier_polls += self.logs.polls_total()
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env
        )
        self.logs = LogReader(self.process)
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=60)

    def polls(self) -> int:
        return self.earlier_polls + (self.logs.polls_total() if self.logs else 0)

    def kill(self) -> None:
        assert self.process is not None and self.logs is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.logs.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        if self.logs is not None:
            self.logs.close()


def settled(
    clock: ScaledClock, world: World, replicas: list[Replica]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(each replica's counts per target, jobs finished per target) at one frozen simulated moment."""
    clock.pause()
    try:
        time.sleep(RECHECK_MAX)
        seen = {r.name: r.polls() for r in replicas}
        wait_for(lambda: all(r.polls() >= seen[r.name] + 3 for r in replicas), 60, "three polls of every replica")
        finished: dict[str, float] = {}
        for plan in world.finished_jobs():
            finished[plan.target_id] = finished.get(plan.target_id, 0.0) + 1
        return {r.name: job_counts(metrics(r.port)) for r in replicas}, finished
    finally:
        clock.resume()


def test_shards_and_an_ha_pair_count_once_each_and_alert_once(tmp_path: Path) -> None:
    clock = ScaledClock(speed=60)
    world = World(SPEC, seed=3, clock=clock)  # two instances in each shard
    instances = list(world.instances)
    owned = {index: Shard(index, 2).owned(instances) for index in (0, 1)}
    assert owned[0] and owned[1], owned  # the seed gives each shard at least one instance
    targets_of = {
        i: {p.identity_provider_id for p in world.instances[i].providers}
        | {a.application_id for a in world.instances[i].applications}
        for i in instances
    }
    app = SimulatorApp(world, [AccessKey("ha", SecretStr(SECRET))])
    with SimulatorThread(app) as sim:
        replicas = [
            Replica("a0", 0, sim.endpoint, instances, tmp_path / "a0.sqlite3"),
            Replica("b0", 0, sim.endpoint, instances, tmp_path / "b0.sqlite3"),
            Replica("c1", 1, sim.endpoint, instances, tmp_path / "c1.sqlite3"),
        ]
        shutil.copy(ROOT / "deploy" / "prometheus" / "idaas-sync-alerts.yml", tmp_path / "rules.yml")
        targets = ", ".join(f'"127.0.0.1:{r.port}"' for r in replicas)
        config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp_path / "rules.yml"}"]
scrape_configs:
  - job_name: idaas-sync-exporter
    static_configs: [{{targets: [{targets}]}}]
"""
        try:
            for replica in replicas:
                replica.start()
            for replica in replicas:
                exported = {
                    line.split('"')[1] for line in metrics(replica.port).splitlines() if line.startswith("idaas_up{")
                }
                assert exported == set(owned[replica.shard]), replica.name
            with prometheus(tmp_path, config, free_port()) as server:
                before = settled(clock, world, replicas)
                time.sleep(3)
                replicas[1].kill()
                victim = owned[0][0]
                provider = world.instances[victim].providers[0]
                inject_failed_job(world, victim, provider.identity_provider_id, hint="ha-failure", running_ms=20_000)
                time.sleep(3)
                replicas[1].start()
                time.sleep(3)
                after = settled(clock, world, replicas)
                for replica in replicas:
                    mine = set().union(*(targets_of[i] for i in owned[replica.shard]))
                    counted = {t: after[0][replica.name].get(t, 0) - before[0][replica.name].get(t, 0) for t in mine}
                    finished = {t: after[1].get(t, 0) - before[1].get(t, 0) for t in mine}
                    assert counted == finished, replica.name
                    assert sum(finished.values()) > 0
                    assert not set(after[0][replica.name]) - mine, f"{replica.name} exports another shard's targets"

                target = provider.identity_provider_id
                alert = f'ALERTS{{alertname="IDaaSSyncJobFailed",alertstate="firing",target_id="{target}"}}'
                wait_for(lambda: bool(query(server, alert)), 60, "IDaaSSyncJobFailed to fire")
                for _ in range(5):
                    assert len(query(server, 'ALERTS{alertname="IDaaSSyncJobFailed"}')) == 1
                    time.sleep(1)
                # Both replicas of shard 0 counted the job: a plain sum says about 2, the rules' merge about 1.
                failed = f'idaas_sync_jobs_total{{status="failed",target_id="{target}"}}'
                assert len(query(server, f"sum by (instance) ({failed})")) == 2
                naive = float(query(server, f"sum(increase({failed}[15m]))")[0]["value"][1])
                merged = float(
                    query(server, f"sum(max without (instance, pod) (increase({failed}[15m])))")[0]["value"][1]
                )
                assert naive > 1.5 and 0.5 < merged < 1.5, (naive, merged)
        finally:
            for replica in replicas:
                replica.stop()
