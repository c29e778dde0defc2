"""Simulator -> exporter -> a real Prometheus: the job counters rise where Prometheus can see them."""

from __future__ import annotations

import gzip
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from tests.e2e import demo_exporter, free_port, prometheus, query

pytestmark = pytest.mark.slow


def test_prometheus_sees_job_counters_rise(tmp_path: Path) -> None:
    exporter_port, prometheus_port = free_port(), free_port()
    with demo_exporter(exporter_port) as target:
        config = f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: idaas-sync-exporter
    static_configs:
      - targets: ["{target}"]
"""
        with prometheus(tmp_path, config, prometheus_port) as base:
            deadline = time.monotonic() + 90
            first: float | None = None
            latest = 0.0
            while time.monotonic() < deadline:
                result = query(base, "sum(idaas_sync_jobs_total)")
                if result:
                    latest = float(result[0]["value"][1])
                    first = latest if first is None else first
                    if latest > first:
                        break
                time.sleep(1)
            assert first is not None, "Prometheus never scraped the exporter"
            assert latest > first, f"job counters did not rise within 90s (stayed at {first})"
            assert query(base, 'up{job="idaas-sync-exporter"} == 1')
            assert query(base, "idaas_up == 1")
            names = query(base, "count by (target_name) (idaas_sync_target_info)")
            assert {r["metric"]["target_name"] for r in names} >= {"DingTalk", "WeCom", "HR Portal"}
            # Prometheus asks for gzip; the body is assembled from cached deflate pieces into one
            # member: it read all of it, up to the exporter's own last family.
            request = urllib.request.Request(f"http://{target}/metrics", headers={"Accept-Encoding": "gzip"})
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                assert response.headers["Content-Encoding"] == "gzip"
                body = response.read()
            single = zlib.decompressobj(31)
            assert single.decompress(body) == gzip.decompress(body)
            assert single.eof and single.unused_data == b""
            assert b"idaas_exporter_build_info{" in gzip.decompress(body)
            assert query(base, 'idaas_exporter_build_info{job="idaas-sync-exporter"} == 1')
            scraped = float(query(base, 'scrape_samples_scraped{job="idaas-sync-exporter"}')[0]["value"][1])
            assert scraped >= gzip.decompress(body).count(b"\nidaas_") * 0.9
