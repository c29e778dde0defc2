"""From alert to job against the simulator: a failed job's event is written exactly once across a SIGKILL
and restart, it is listed by /api/v1/jobs, and a real Prometheus (exemplar storage on, scraping
OpenMetrics) returns its id from /api/v1/query_exemplars."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.simulator.clock import ScaledClock
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from tests.conftest import FAILURE_CODE, inject_failed_job
from tests.e2e import exporter_command, exporter_env, free_port, prometheus, wait_for, wait_http

pytestmark = pytest.mark.slow
SECRET = "drilldown-secret"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
        return json.load(response)


def events(log: Path, job_id: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("msg") == "sync job finished" and event.get("job_id") == job_id:
            found.append(event)
    return found


def test_a_failed_job_is_one_event_across_a_kill_is_listed_and_is_an_exemplar(tmp_path: Path) -> None:
    world = World(SCENARIOS["quiet"], seed=7, clock=ScaledClock(speed=60))
    instance = next(iter(world.instances))
    provider = world.instances[instance].providers[0]
    app = SimulatorApp(world, [AccessKey("drill", SecretStr(SECRET))])
    port, prometheus_port = free_port(), free_port()
    log = tmp_path / "exporter.log"
    env = exporter_env(IDAAS_EXPORTER_ACCESS_KEY_SECRET=SECRET)

    def fail(hint: str) -> str:
        return inject_failed_job(world, instance, provider.identity_provider_id, hint=hint).job_id

    with SimulatorThread(app) as sim:
        args = exporter_command(
            "serve",
            "--instance-ids",
            instance,
            "--endpoint",
            sim.endpoint,
            "--access-key-id",
            "drill",
            "--state-path",
            str(tmp_path / "state.sqlite3"),
            "--poll-interval-seconds",
            "1",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        )

        def start() -> subprocess.Popen[bytes]:
            with log.open("ab") as output:
                process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=output, env=env)
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            return process

        exporter = start()
        config = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: idaas-sync-exporter
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""
        try:
            with prometheus(tmp_path, config, prometheus_port, "--enable-feature=exemplar-storage") as server:
                time.sleep(3)
                first = fail("drilldown-1")
                wait_for(lambda: bool(events(log, first)), 30, "the first failed job's event")
                time.sleep(2)  # a few more polls that must not repeat it
                exporter.send_signal(signal.SIGKILL)
                exporter.wait(timeout=10)
                second = fail("drilldown-2")  # finishes while the exporter is down
                time.sleep(2)
                exporter = start()
                wait_for(lambda: bool(events(log, second)), 30, "the second failed job's event after the restart")
                time.sleep(3)
                assert len(events(log, first)) == 1, "the restart repeated an event"
                assert len(events(log, second)) == 1
                (event,) = events(log, first)
                assert event["error_code"] == FAILURE_CODE and event["status"] == "failed"
                assert event["target_id"] == provider.identity_provider_id and event["instance_id"] == instance

                listed = get_json(f"http://127.0.0.1:{port}/api/v1/jobs?status=failed")["jobs"]
                assert [job["job_id"] for job in listed][:2] == [second, first], "newest first, kept across restart"

                def exemplar_ids() -> set[str]:
                    # Exemplars carry the job's end time, which is simulated time: ahead of the wall clock.
                    start, end = time.time() - 600, world.now() + 600
                    query = urllib.parse.urlencode(
                        {"query": 'idaas_sync_jobs_total{status="failed"}', "start": start, "end": end}
                    )
                    answer = get_json(f"{server}/api/v1/query_exemplars?{query}")
                    assert answer["status"] == "success", answer
                    return {
                        exemplar["labels"]["job_id"] for series in answer["data"] for exemplar in series["exemplars"]
                    }

                wait_for(lambda: second in exemplar_ids(), 30, "the failed job's id as an exemplar in Prometheus")
                assert first in exemplar_ids()
        finally:
            exporter.terminate()
            exporter.wait(timeout=20)
