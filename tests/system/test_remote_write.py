"""The remote-write example: promtool accepts it, and a real Prometheus sends the exporter's series and
the dashboard's recording rules on to a receiving Prometheus (standing in for a long-term store)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import demo_exporter, free_port, prometheus, query, require_binary

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "prometheus" / "remote-write" / "prometheus.yml"


def test_promtool_accepts_the_remote_write_example_and_its_rule_files() -> None:
    checked = subprocess.run(
        [require_binary("promtool"), "check", "config", str(EXAMPLE)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Without --syntax-only promtool also reads the rule files the example names.
    assert "idaas-sync-recording.yml" in checked.stdout and "SUCCESS" in checked.stdout


def test_the_example_writes_the_exporters_series_and_recorded_rules_to_a_store(tmp_path: Path) -> None:
    receiver_dir, sender_dir = tmp_path / "store", tmp_path / "sender"
    receiver_dir.mkdir()
    sender_dir.mkdir()
    for name in ("idaas-sync-alerts.yml", "idaas-sync-recording.yml"):
        shutil.copy(ROOT / "deploy" / "prometheus" / name, sender_dir / name)
    exporter_port, receiver_port, sender_port = free_port(), free_port(), free_port()
    config = yaml.safe_load(EXAMPLE.read_text())
    # Only addresses and intervals change; the relabelling, labels and rule files are the example's.
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(sender_dir / Path(rule).name) for rule in config["rule_files"]]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter_port}"]
    config["remote_write"][0]["url"] = f"http://127.0.0.1:{receiver_port}/api/v1/write"
    config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
    store_config = "global: {scrape_interval: 1h}\n"
    with (
        demo_exporter(exporter_port),
        # A Prometheus that accepts remote write, standing in for Thanos Receive, Mimir or VictoriaMetrics.
        prometheus(receiver_dir, store_config, receiver_port, "--web.enable-remote-write-receiver") as store,
        prometheus(sender_dir, yaml.safe_dump(config), sender_port) as sender,
    ):
        deadline = time.monotonic() + 60
        wanted = {
            "idaas_up": 'idaas_up{job="idaas-sync-exporter",cluster="idaas-prod",replica="prometheus-a"}',
            "idaas_sync_jobs_total": "idaas_sync_jobs_total",
            "recording rule": "idaas:sync_objects:increase1h",
        }
        found: dict[str, int] = {}
        while time.monotonic() < deadline and len(found) < len(wanted):
            for name, promql in wanted.items():
                result = query(store, promql)
                if result:
                    found[name] = len(result)
            time.sleep(1)
        assert set(found) == set(wanted), (found, (receiver_dir / "prometheus.log").read_text()[-2000:])
        # Nothing but the kept names crossed: the scrape statistics of the sender stay behind.
        assert query(sender, "scrape_duration_seconds") and not query(store, "scrape_duration_seconds")
