"""Simulator -> exporter -> Prometheus (rules) -> Alertmanager -> webhook: a failed job pages, by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.simulator.clock import ScaledClock
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from tests.conftest import FAILURE_CODE, inject_failed_job
from tests.e2e import exporter_command, exporter_env, free_port, prometheus, require_binary, wait_http

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SECRET = "alerting-e2e-secret"


class Webhook:
    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_failed_job_arrives_at_alertmanager_webhook(tmp_path: Path) -> None:
    alertmanager = require_binary("prometheus-alertmanager")
    world = World(SCENARIOS["quiet"], seed=3, clock=ScaledClock(speed=60))
    instance = next(iter(world.instances))
    provider = world.instances[instance].providers[1]  # WeCom
    app = SimulatorApp(world, [AccessKey("e2e", SecretStr(SECRET))])
    exporter_port, prometheus_port, am_port = free_port(), free_port(), free_port()
    with Webhook() as webhook, SimulatorThread(app) as sim:
        (tmp_path / "am.yml").write_text(f"""
route:
  receiver: test
  group_by: [alertname, target_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: http://127.0.0.1:{webhook.port}/
""")
        am_log = (tmp_path / "am.log").open("w")
        am = subprocess.Popen(
            [
                alertmanager,
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=am_log,
            stderr=subprocess.STDOUT,
        )
        env = exporter_env(IDAAS_EXPORTER_ACCESS_KEY_SECRET=SECRET)
        exporter = subprocess.Popen(
            exporter_command(
                "serve",
                "--instance-ids",
                instance,
                "--endpoint",
                sim.endpoint,
                "--access-key-id",
                "e2e",
                "--state-path",
                "",
                "--poll-interval-seconds",
                "1",
                "--listen-address",
                f"127.0.0.1:{exporter_port}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            wait_http(f"http://127.0.0.1:{am_port}/-/ready")
            wait_http(f"http://127.0.0.1:{exporter_port}/readyz")
            shutil.copy(ROOT / "deploy" / "prometheus" / "idaas-sync-alerts.yml", tmp_path / "rules.yml")
            config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp_path / "rules.yml"}"]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]}}]
scrape_configs:
  - job_name: idaas-sync-exporter
    static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
"""
            with prometheus(tmp_path, config, prometheus_port):
                time.sleep(5)  # a few scrapes with the target's failed counter at 0
                plan = inject_failed_job(world, instance, provider.identity_provider_id, hint="e2e-failure")
                injected = time.monotonic()
                deadline = injected + 60
                found: dict[str, Any] | None = None
                while time.monotonic() < deadline and found is None:
                    for notification in list(webhook.notifications):
                        for alert in notification["alerts"]:
                            labels = alert["labels"]
                            if (
                                labels.get("alertname") == "IDaaSSyncJobFailed"
                                and labels.get("target_id") == provider.identity_provider_id
                                and alert["status"] == "firing"
                            ):
                                found = alert
                    time.sleep(0.5)
                assert found is not None, f"no IDaaSSyncJobFailed notification within 60s: {webhook.notifications}"
                assert found["annotations"]["summary"] == f"IDaaS sync to {provider.name} failed"
                assert found["labels"]["severity"] == "critical"
                assert found["annotations"]["runbook_url"].endswith("#idaassyncjobfailed")
                # The page names the job and its error code, so the person on call can look it up.
                assert (
                    f'Latest: job {plan.job_id} (failed, error code "{FAILURE_CODE}")'
                    in found["annotations"]["description"]
                ), found["annotations"]["description"]
                print(f"notification after {time.monotonic() - injected:.1f}s")
        finally:
            exporter.terminate()
            exporter.wait(timeout=20)
            am.terminate()
            am.wait(timeout=20)
            am_log.close()
