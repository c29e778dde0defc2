"""From alert to job: the job event, the latest failure, exemplars, /jobs and /api/v1/jobs, kept across restarts."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.finished import EVENT_MESSAGE
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.links import check_console_url
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web.config import WebConfigWatcher
from idaas_sync_exporter.web.server import build_app
from tests.conftest import AK_ID, AK_SECRET, inject_failed_job, instance_id_of

CONSOLE = "https://console.example/{instance_id}/jobs/{job_id}?target={target_id}"
JOB_ID = "sync_job_injected_failure"


class Deployment:
    """An exporter over the simulator with its state in a file, which can be restarted."""

    def __init__(self, simulator: RunningSimulator, world: World, clock: ManualClock, path: Path) -> None:
        self.simulator, self.world, self.clock, self.path = simulator, world, clock, path
        self.instance = instance_id_of(world)
        self.client = EiamClient(
            endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
            credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
            options=ClientOptions(requests_per_second=1000, burst=1000, max_attempts=1),
        )
        self.exporter = self.start()

    def start(self, recent_jobs: int = 100) -> Exporter:
        store = StateStore(str(self.path))
        poller = InstancePoller(
            self.instance, self.client, store, PollOptions(recent_jobs=recent_jobs), clock=self.clock
        )
        self.exporter = Exporter(store=store, pollers={self.instance: poller}, api_stats=ApiStats(), clock=self.clock)
        return self.exporter

    def restart(self, recent_jobs: int = 100) -> Exporter:
        self.exporter.store.close()
        return self.start(recent_jobs)

    def inject_failure(self, job_id: str = JOB_ID) -> str:
        provider = self.world.instances[self.instance].providers[0]
        inject_failed_job(
            self.world,
            self.instance,
            provider.identity_provider_id,
            job_id=job_id,
            statistics={"User": {"Deleted": {"Total": 5, "Success": 3, "Failed": 2, "Skipped": 0}}},
        )
        return provider.identity_provider_id


@pytest.fixture
async def deployment(
    simulator: RunningSimulator, world: World, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Deployment]:
    running = Deployment(simulator, world, clock, tmp_path / "state.sqlite3")
    yield running
    running.exporter.store.close()
    await running.client.aclose()


def events(caplog: pytest.LogCaptureFixture, job_id: str | None = None) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage() == EVENT_MESSAGE and (job_id is None or r.__dict__["job_id"] == job_id)
    ]


async def http_client(exporter: Exporter, **kwargs: Any) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, console_url=CONSOLE, **kwargs))
    )
    await client.start_server()
    return client


async def test_a_failed_job_is_one_event_one_latest_failure_and_one_recent_job(
    deployment: Deployment, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await deployment.exporter.refresh_targets(deployment.instance)  # the names events carry
    await deployment.exporter.poll(deployment.instance)  # cold: jobs before it are not counted
    assert not events(caplog), "a cold start writes no events for jobs it does not count"
    target_id = deployment.inject_failure()
    clock.advance(60)
    await deployment.exporter.poll(deployment.instance)
    await deployment.exporter.poll(deployment.instance)
    (event,) = events(caplog, JOB_ID)
    fields = event.__dict__
    assert (fields["status"], fields["error_code"], fields["target_id"], fields["trigger_type"]) == (
        "failed",
        "IdentityProvider.ConnectionFailed",
        target_id,
        "manual",
    )
    assert fields["duration_seconds"] == 31.0  # pending 1 s, running 30 s
    assert fields["start"].endswith("Z") and fields["end"].endswith("Z")
    assert fields["objects_user_deleted_success"] == 3 and fields["objects_user_deleted_failed"] == 2
    assert fields["target_name"] and fields["instance_id"] == deployment.instance
    # Every counted job is one event, no more: the counter and the events agree.
    counted = sum(
        view.jobs.get(key, 0)
        for view in deployment.exporter.snapshot.instances[deployment.instance].targets.values()
        for key in view.jobs
    )
    assert len(events(caplog)) == counted

    http = await http_client(deployment.exporter)
    try:
        body = await (await http.get("/api/v1/jobs", params={"status": "failed", "target_id": target_id})).json()
        (job,) = [j for j in body["jobs"] if j["job_id"] == JOB_ID]
        assert job["console_url"] == f"https://console.example/{deployment.instance}/jobs/{JOB_ID}?target={target_id}"
        assert job["objects"] == {"user": {"deleted": {"success": 3, "failed": 2}}}
        assert all(j["status"] == "failed" and j["target_id"] == target_id for j in body["jobs"])
        page = await (await http.get("/jobs", params={"status": "failed,partial_success"})).text()
        assert JOB_ID in page and "IdentityProvider.<wbr>ConnectionFailed" in page and "deleted 3" in page
        # The failed objects by type and action come first in the job's line for that type.
        row = page[page.index(f'title="{JOB_ID}"') - 2000 : page.index(f'title="{JOB_ID}"')]
        assert (
            '<span class="ot">user:</span> <strong class="bad nw">2 failed</strong> '
            '<span class="bad">(<span class="nw">deleted 2</span>)</span>'
            '&nbsp;&middot; <span class="nw">deleted 3</span>'
        ) in row
        assert 'class="st bad">failed</span>' in row and "took 31 s" in row and ">manual<" in row
        metrics = await (await http.get("/metrics")).text()
        assert (
            f'idaas_sync_last_failed_job_info{{instance_id="{deployment.instance}",target_type="identity_provider",'
            f'target_id="{target_id}",direction="ingress",job_id="{JOB_ID}",status="failed",'
            'error_code="IdentityProvider.ConnectionFailed"} 1'
        ) in metrics
        om = await (await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})).text()
        failed_line = next(
            line
            for line in om.splitlines()
            if line.startswith("idaas_sync_jobs_total{")
            and f'target_id="{target_id}"' in line
            and "manual" in line
            and 'status="failed"' in line
        )
        assert f'# {{job_id="{JOB_ID}"}} 1 ' in failed_line
        landing = await (await http.get("/")).text()
        assert 'href="/jobs"' in landing
    finally:
        await http.close()


async def test_recent_jobs_survive_a_restart_and_stay_within_their_bound(
    deployment: Deployment, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await deployment.exporter.poll(deployment.instance)
    deployment.inject_failure()
    clock.advance(120)
    await deployment.exporter.poll(deployment.instance)
    before = [job.job_id for job in deployment.exporter.snapshot.instances[deployment.instance].recent_jobs]
    assert JOB_ID in before and len(before) <= 100
    restarted = deployment.restart()
    assert [job.job_id for job in restarted.snapshot.instances[deployment.instance].recent_jobs] == before
    await restarted.poll(deployment.instance)
    assert len(events(caplog, JOB_ID)) == 1, "a restart never repeats an event"
    # A lower bound applies at once, and the file keeps only that many after the next commit.
    smaller = deployment.restart(recent_jobs=3)
    assert len(smaller.snapshot.instances[deployment.instance].recent_jobs) == 3
    clock.advance(3600)
    await smaller.poll(deployment.instance)
    smaller.store.close()
    with sqlite3.connect(deployment.path) as db:
        assert db.execute("SELECT count(*) FROM recent_jobs").fetchone()[0] == 3
    deployment.start()


async def test_a_schema_4_file_gains_the_recent_jobs_table_and_keeps_its_counts(
    deployment: Deployment, clock: ManualClock
) -> None:
    await deployment.exporter.poll(deployment.instance)
    clock.advance(600)
    await deployment.exporter.poll(deployment.instance)
    counts = dict(deployment.exporter.pollers[deployment.instance].state.targets)
    deployment.exporter.store.close()
    with sqlite3.connect(deployment.path) as db:  # what the previous release wrote
        db.execute("DROP TABLE recent_jobs")
        db.execute("PRAGMA user_version=4")
    migrated = deployment.start()
    assert migrated.pollers[deployment.instance].state.targets == counts
    assert migrated.snapshot.instances[deployment.instance].recent_jobs == ()
    with sqlite3.connect(deployment.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5


async def test_bad_queries_are_one_line_400s(deployment: Deployment) -> None:
    http = await http_client(deployment.exporter)
    try:
        for path in ("/jobs", "/api/v1/jobs"):
            for query, expected in (
                ("?limit=0", "limit '0' must be a whole number from 1 to 5000"),
                ("?limit=x", "limit 'x' must be a whole number"),
                ("?status=failed&status=success", "'status' is given twice"),
                ("?colour=red", "unknown parameter 'colour'"),
                ("?target_id=%3Cscript%3E", "target_id '<script>' is not an id"),
                ("?target_id=abc%0A", "target_id 'abc\\n' is not an id"),
                ("?limit=%C2%B2", "limit '²' must be a whole number"),  # a digit to str.isdigit, not to int()
                ("?limit=%D9%A3", "limit '٣' must be a whole number"),  # an Arabic-Indic 3
                ("?status=bogus", "status 'bogus' is unknown; use success, partial_success, failed"),
                ("?status=running", "status 'running' is not a finished status"),
                ("?status=failed,", ""),  # a trailing comma is fine: checked below to be a 200
            ):
                if not expected:
                    assert (await http.get(path + query)).status == 200
                    continue
                answer = await http.get(path + query)
                assert answer.status == 400
                text = await answer.text()
                message = json.loads(text)["error"] if path.startswith("/api") else text.strip()
                assert message.startswith(expected), (path, query, message)
                assert "\n" not in message
    finally:
        await http.close()


async def test_a_parameter_name_or_value_is_echoed_cut_and_escaped(deployment: Deployment) -> None:
    http = await http_client(deployment.exporter)
    forged = "a%0d%0aX%1b[31m"
    try:
        for path in ("/jobs", "/api/v1/jobs"):
            for query in (
                "?" + "n" * 6000 + "=1",
                f"?{forged}=1&{forged}=2",
                f"?{forged}=1",
                "?target_id=" + "t%0d%0a" * 1000,
                "?status=" + "%1b" * 1000,
            ):
                answer = await http.get(path + query)
                assert answer.status == 400
                text = await answer.text()
                message = json.loads(text)["error"] if path.startswith("/api") else text.removesuffix("\n")
                assert len(message) < 300, (path, query[:40], len(message))
                assert not any(ord(c) < 0x20 or c == "\x7f" for c in message), (path, query[:40], message)
    finally:
        await http.close()


async def test_a_status_filter_matches_case_insensitively(deployment: Deployment, clock: ManualClock) -> None:
    await deployment.exporter.poll(deployment.instance)
    deployment.inject_failure()
    clock.advance(60)
    await deployment.exporter.poll(deployment.instance)
    http = await http_client(deployment.exporter)
    try:
        lower = await (await http.get("/api/v1/jobs", params={"status": "failed,partial_success"})).json()
        upper = await (await http.get("/api/v1/jobs", params={"status": "FAILED, Partial_Success"})).json()
        assert lower["count"] >= 1 and upper["jobs"] == lower["jobs"]
        page = await (await http.get("/jobs", params={"status": "FAILED"})).text()
        assert JOB_ID in page and 'value="failed"' in page
    finally:
        await http.close()


async def test_the_jobs_pages_are_behind_the_same_web_config(deployment: Deployment, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    http = await http_client(deployment.exporter, web_config=WebConfigWatcher(str(config)))
    try:
        for path in ("/jobs", "/api/v1/jobs"):
            assert (await http.get(path)).status == 401
            authorization = "Basic " + base64.b64encode(b"prometheus:scrape-pass").decode()
            assert (await http.get(path, headers={"Authorization": authorization})).status == 200
    finally:
        await http.close()


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("ftp://x/{job_id}", "must be an https:// URL"),
        ("https://x/{job}", "unknown placeholder {job}"),
        ("https://x/{job_id", "stray brace"),
    ],
)
def test_a_bad_console_pattern_is_refused_with_the_fix(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        check_console_url(pattern)
    assert check_console_url(CONSOLE) == CONSOLE
