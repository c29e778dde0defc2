"""The HTTP endpoints over a real exporter polling the simulator."""

from __future__ import annotations

import asyncio
import gzip
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.config.tenancy import PlannedInstance
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.runtime import stop_polling
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import SimulatorApp
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web import landing
from idaas_sync_exporter.web.access import RefusedRequestLog
from idaas_sync_exporter.web.page import ago
from idaas_sync_exporter.web.server import ENDPOINTS_KEY, Endpoints, build_app, wants_gzip, wants_openmetrics
from tests.conftest import inject_failed_job, instance_id_of


def endpoints_of(http: TestClient[web.Request, web.Application]) -> Endpoints:
    server = http.server
    assert isinstance(server, TestServer)
    return server.app[ENDPOINTS_KEY]


async def test_readyz_follows_poll_health(
    http: TestClient[web.Request, web.Application],
    exporter: Exporter,
    sim_app: SimulatorApp,
    world: World,
    clock: ManualClock,
) -> None:
    instance = instance_id_of(world)
    assert (await http.get("/readyz")).status == 503  # before the first poll
    await exporter.poll(instance)
    assert (await http.get("/readyz")).status == 200
    sim_app.faults.server_error_rate = 1.0
    clock.advance(600)
    await exporter.poll(instance)  # fails: the API answers 5xx
    response = await http.get("/readyz")
    assert response.status == 503
    assert "last successful poll" in await response.text()
    await endpoints_of(http).settled()
    metrics = await (await http.get("/metrics")).text()
    assert f'idaas_up{{instance_id="{instance}"}} 0' in metrics
    assert f'idaas_exporter_poll_failures_total{{instance_id="{instance}"}} 1' in metrics
    assert "ServiceUnavailable" in metrics or "InternalError" in metrics
    assert (await http.get("/healthz")).status == 200  # the process is alive all the same


async def test_metrics_negotiates_format_and_gzip(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World
) -> None:
    await exporter.poll(instance_id_of(world))
    await endpoints_of(http).settled()
    plain = await http.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await plain.text()
    assert "idaas_sync_jobs_total" in text and "idaas_exporter_build_info" in text
    om = await http.get("/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await om.text()).endswith("# EOF\n")
    for _ in range(200):  # compression runs in the background; plain text is served meanwhile
        zipped = await http.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        if "Content-Encoding" in zipped.headers:
            break
        assert await zipped.text() == text
        await asyncio.sleep(0.01)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()).decode() == text


async def test_landing_page_lists_instances_and_targets(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World
) -> None:
    instance = instance_id_of(world)
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    page = await (await http.get("/")).text()
    assert instance in page and 'href="/metrics"' in page
    assert "DingTalk" in page and "HR Portal" in page
    # Names and ids side by side; a link to the docs; a refresh without script.
    some_target = next(iter(exporter.snapshot.instances[instance].targets))
    assert some_target.target_id in page
    assert 'href="https://' in page and "Documentation" in page
    assert '<meta http-equiv="refresh"' in page and "<script" not in page


async def test_each_target_links_to_its_jobs_and_problems_come_first(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    failing = world.instances[instance].providers[1].identity_provider_id
    inject_failed_job(world, instance, failing)
    clock.advance(120)
    await exporter.poll(instance)
    page = await (await http.get("/")).text()
    targets = page[page.index('<table id="targets">') :]
    rows = targets.split("<tr")[2:]
    assert 'class="st bad">failed</span>' in rows[0] and failing in rows[0]  # the failure first
    # Its link to its jobs, and the error code of its last job, breakable only after the dots.
    assert f'href="/jobs?target_id={failing}"' in rows[0] and 'class="small">IdentityProvider.<wbr>' in rows[0]
    assert "<time " in rows[0] and 'title="20' in rows[0]  # relative, with the UTC time on hover


async def test_the_landing_page_filters_targets_and_bounds_the_filter(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World
) -> None:
    instance = instance_id_of(world)
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    total = sum(len(view.targets) for view in exporter.snapshot.instances.values())
    page = await (await http.get("/", params={"q": "dingtalk"})).text()
    shown_rows = page[page.index('<table id="targets">') :].count("<tr") - 1
    assert shown_rows == 1 and "DingTalk" in page and "HR Portal" not in page
    assert f"1 of {total} targets" in page and 'value="dingtalk"' in page
    success = await (await http.get("/", params={"status": "SUCCESS"})).text()
    assert 'class="st warn"' not in success and 'class="st bad"' not in success
    assert '<option value="success" selected>' in success
    hostile = await (await http.get("/", params={"q": '"><script>alert(1)</script>'})).text()
    assert "<script" not in hostile and 'value="&quot;&gt;&lt;script&gt;' in hostile
    assert 'id="no-match"' in hostile
    assert (await http.get("/", params={"utm_source": "chat"})).status == 200  # other parameters are ignored
    for params, message in (
        ({"q": "x" * 201}, "q is 201 characters long; use at most 200"),
        ({"q": "a\u202eb"}, "q holds a control or invisible character"),
        ({"status": "running"}, "status 'running' is not a finished status"),
    ):
        answer = await http.get("/", params=params)
        text = await answer.text()
        assert answer.status == 400 and text.startswith(message) and text.count("\n") == 1, text
    twice = await http.get("/?q=a&q=b")
    assert twice.status == 400 and "'q' is given twice" in await twice.text()


async def test_the_landing_page_shows_at_most_max_rows_targets(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "MAX_ROWS", 3)
    instance = instance_id_of(world)
    await exporter.poll(instance)
    total = sum(len(view.targets) for view in exporter.snapshot.instances.values())
    page = await (await http.get("/")).text()
    assert page[page.index('<table id="targets">') :].count("<tr") - 1 == 3
    assert f"{total} targets, the first 3 shown" in page


async def test_the_landing_page_says_where_each_instance_is_polled_and_what_runs(
    exporter: Exporter, world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    planned = PlannedInstance(instance, "ap-southeast-1", None, "finance", 45.0, (), (), ())
    exporter.poll_intervals[instance] = 45.0
    app = build_app(
        exporter,
        poll_interval=60,
        clock=clock,
        docs_url="https://git.example/mirror/docs",
        instances=[planned],
        demo_speed=30,
    )
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        before = await (await client.get("/")).text()
        assert "No targets: the first poll has not finished yet" in before
        await exporter.poll(instance)
        page = await (await client.get("/")).text()
    finally:
        await client.close()
    instances = page[page.index('<table id="instances">') : page.index("</table>")]
    assert "ap-southeast-1" in instances and "finance" in instances and "every 45 s" in instances
    assert 'id="demo"' in page and "simulated data" in page and "runs 30× faster" in page
    assert 'href="https://git.example/mirror/docs">Documentation</a>' in page
    assert 'href="https://git.example/mirror/docs/alerts.md"' in page
    assert "state in memory only" in page


async def test_the_landing_page_says_when_there_are_no_instances(clock: ManualClock) -> None:
    exporter = Exporter(store=StateStore(None), pollers={}, api_stats=ApiStats(), clock=clock)
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, clock=clock))
    )
    await client.start_server()
    try:
        page = await (await client.get("/")).text()
    finally:
        await client.close()
        exporter.store.close()
    assert 'id="no-instances"' in page and 'id="demo"' not in page


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (0.2, "just now"),
        (45, "45 s ago"),
        (180, "3 min ago"),
        (5 * 3600, "5 h ago"),
        (3 * 86400, "3 d ago"),
        (-120, "in 2 min"),
    ],
)
def test_times_are_relative_to_the_snapshot_with_the_utc_time_on_hover(offset: float, text: str) -> None:
    now = 1_800_000_000.0
    shown = ago(now - offset, now)
    assert f">{text}</time>" in shown and 'title="2027-' in shown and " UTC" in shown
    assert "never" in ago(None, now)


async def test_metrics_are_served_under_the_configured_telemetry_path(
    exporter: Exporter, world: World, clock: ManualClock
) -> None:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, clock=clock, telemetry_path="/probe/idaas"))
    )
    await client.start_server()
    try:
        await exporter.poll(instance_id_of(world))
        answer = await client.get("/probe/idaas")
        assert answer.status == 200 and "idaas_up" in await answer.text()
        assert (await client.get("/metrics")).status == 404
        assert 'href="/probe/idaas"' in await (await client.get("/")).text()
    finally:
        await client.close()


def test_gzip_negotiation() -> None:
    assert wants_gzip("gzip, deflate")
    assert wants_gzip("br;q=1.0, gzip;q=0.8")
    assert not wants_gzip("gzip;q=0")
    assert not wants_gzip("identity")
    assert not wants_gzip("gzip;q=0, *")  # the named coding decides, not the wildcard
    assert wants_gzip("*;q=0.5")
    assert not wants_gzip("gzip;q=nan") and not wants_gzip("gzip;q=2")


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ("text/plain, Application/OpenMetrics-Text", True),  # a tie goes to the format asked for by name
        ("application/openmetrics-text;q=0, text/plain", False),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=0.3, text/plain;q=0.5", False),
        ("application/openmetrics-text;q=0.3, text/*;q=0.5", False),
        ("application/openmetrics-text;q=0.5, */*;q=0.8, text/plain;q=0.1", True),  # text/plain is the specific one
        ("application/openmetrics-text;q=junk, text/plain", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_openmetrics_negotiation_honours_weights(accept: str, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics


async def test_openmetrics_refused_with_q_0_gets_the_text_format(
    http: TestClient[web.Request, web.Application],
) -> None:
    refused = await http.get("/metrics", headers={"Accept": "application/openmetrics-text;q=0, text/plain"})
    assert refused.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in await refused.text()
    asked = await http.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert asked.headers["Content-Type"].startswith("application/openmetrics-text")


async def test_pull_configuration_metrics_and_unreadable_providers(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World
) -> None:
    instance = instance_id_of(world)
    state = world.instances[instance]
    inbound = [p for p in state.providers if p.pull_config is not None]
    unreadable = inbound[-1].identity_provider_id
    del state.pull_configs[unreadable]  # the API now refuses to return it
    await exporter.refresh_targets(instance)
    await endpoints_of(http).settled()
    text = await (await http.get("/metrics")).text()
    first = inbound[0]
    threshold = state.pull_configs[first.identity_provider_id]["PullProtectedRule"]["UserDeletedThreshold"]
    prefix = f'instance_id="{instance}",target_id="{first.identity_provider_id}",object_type="user"'
    assert f"idaas_sync_pull_deletion_threshold{{{prefix}}} {threshold}\n" in text
    assert (
        f'idaas_sync_pull_feature_enabled{{instance_id="{instance}",'
        f'target_id="{first.identity_provider_id}",feature="periodic_sync"}} 1\n'
    ) in text
    # DingTalk syncs at 3, 9, 15 and 21 o'clock: the longest gap is 6 hours.
    assert (
        f'idaas_sync_pull_schedule_max_interval_seconds{{instance_id="{instance}",'
        f'target_id="{first.identity_provider_id}"}} 21600\n'
    ) in text
    assert unreadable not in {
        line.split('target_id="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("idaas_sync_pull_deletion_threshold{")
    }
    assert (
        f'idaas_exporter_pull_config_failures_total{{instance_id="{instance}",'
        f'code="OperationNotSupported.IdentityProvider"}} 1\n'
    ) in text


async def test_shutdown_lets_a_scheduled_poll_commit(exporter: Exporter, sim_app: SimulatorApp) -> None:
    # As in `serve`: the scheduler runs the poll as its own task; stopping must still wait for it.
    sim_app.faults.latency_seconds = 0.2
    instance = next(iter(exporter.pollers))
    scheduler = AsyncIOScheduler()
    exporter.schedule(scheduler, poll_interval=3600, target_refresh=3600)
    scheduler.start()
    for _ in range(500):
        if exporter.polls_in_flight:
            break
        await asyncio.sleep(0.01)
    assert exporter.polls_in_flight == 1
    await stop_polling(scheduler, exporter)  # what `serve` does on SIGTERM
    assert exporter.polls_in_flight == 0
    assert exporter.health[instance].polled
    assert exporter.pollers[instance].state.cursor_ms is not None, "the poll committed"


async def test_every_scrape_sees_the_same_snapshot_in_either_encoding(
    http: TestClient[web.Request, web.Application],
    exporter: Exporter,
    sim_app: SimulatorApp,
    world: World,
    clock: ManualClock,
) -> None:
    instance = instance_id_of(world)
    endpoints = endpoints_of(http)
    previous = None
    for attempt in range(20):
        failing = attempt % 2 == 1
        sim_app.faults.server_error_rate = 1.0 if failing else 0.0
        clock.advance(60)
        await exporter.poll(instance)
        expected = f'idaas_up{{instance_id="{instance}"}} {0 if failing else 1}'
        # Right after the poll a scrape gets the previous snapshot or this one, in either encoding,
        # and never goes back: once one scrape has the new snapshot, every later one has it too.
        answers = []
        for encoding in ("gzip", "identity", "gzip", "identity"):
            text = await (await http.get("/metrics", headers={"Accept-Encoding": encoding})).text()
            answers += [line for line in text.splitlines() if line.startswith("idaas_up{")]
        assert set(answers) <= {expected, previous}, f"scrape {attempt}: {answers}"
        if expected in answers:
            assert set(answers[answers.index(expected) :]) == {expected}, f"scrape {attempt} went back: {answers}"
        # Once prepared, every encoding serves the new snapshot.
        await endpoints.settled()
        for encoding in ("gzip", "identity"):
            text = await (await http.get("/metrics", headers={"Accept-Encoding": encoding})).text()
            assert expected in text, f"{encoding} scrape {attempt} served an older snapshot"
        previous = expected


async def test_http_1_0_scrapes_get_a_content_length(
    http: TestClient[web.Request, web.Application], exporter: Exporter
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:80]
    length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert length and int(length[0].split(b":")[1]) == len(body)
    assert b"idaas_exporter_build_info" in body


async def test_a_poll_that_finds_nothing_new_keeps_every_view_and_renders_nothing(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    endpoints = endpoints_of(http)
    await exporter.poll(instance)
    clock.advance(60)
    await exporter.poll(instance)
    await endpoints.settled()
    before = exporter.snapshot
    renders = endpoints.renderer.target_renders
    # Simulated time stands still: the next poll learns nothing new.
    await exporter.poll(instance)
    await endpoints.settled()
    after = exporter.snapshot
    assert after.version > before.version
    assert after.instances[instance].targets is before.instances[instance].targets
    assert endpoints.renderer.target_renders == renders
    response = await http.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    text = (await response.read()).decode()  # aiohttp decodes the multi-member body
    assert f'idaas_up{{instance_id="{instance}"}} 1' in text


async def test_process_and_self_metrics_come_from_prometheus_client_in_both_formats(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World
) -> None:
    import platform

    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    await exporter.poll(instance_id_of(world))
    await endpoints_of(http).prepare_current()
    text = await (await http.get("/metrics")).text()
    families = {f.name: f for f in parse_text(text)}
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert name in families, name
    build = families["idaas_exporter_build_info"].samples[0].labels
    assert build["python_version"] == platform.python_version() and build["revision"]
    assert families["idaas_exporter_api_requests"].samples  # the poll's requests
    # The sync families come first, the exporter's own after them.
    assert text.index("# TYPE idaas_up gauge") < text.index("# TYPE idaas_exporter_build_info gauge")
    openmetrics = await (await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})).text()
    assert openmetrics.count("# EOF") == 1 and openmetrics.endswith("# EOF\n")
    parsed = {f.name for f in parse_openmetrics(openmetrics)}
    assert {"process_cpu_seconds", "idaas_exporter_build_info", "idaas_sync_jobs"} <= parsed


def test_the_revision_comes_from_the_image_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from idaas_sync_exporter.config.settings import REVISION_VARIABLE
    from idaas_sync_exporter.metrics.selfmetrics import BuildInfo

    monkeypatch.setenv(REVISION_VARIABLE, "0123abcd")
    assert BuildInfo.current().revision == "0123abcd"


async def test_the_landing_page_names_the_shard(exporter: Exporter, clock: ManualClock) -> None:
    from idaas_sync_exporter.config.shards import Shard

    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, clock=clock, shard=Shard(1, 3)))
    )
    await client.start_server()
    try:
        page = await (await client.get("/")).text()
        assert "Shard 1 of 3" in page
        assert (
            'idaas_exporter_shard_info{shard_index="1",shard_count="3"} 1'
            in await (await client.get("/metrics")).text()
        )
    finally:
        await client.close()


async def raw_get(http: TestClient[web.Request, web.Application], target: bytes) -> tuple[int, bytes]:
    """Status and body of a GET sent byte for byte, as no HTTP client library would send it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


ENDPOINTS = ("/", "/metrics", "/healthz", "/readyz", "/jobs", "/api/v1/jobs")
# Queries no endpoint can read: refused by the HTTP parser before any handler runs.
UNPARSABLE_QUERIES = (b"?limit=\xd9\xa3", b"?a=\xff\xfe", b"?" + b"a" * 9000, b"?a=\x1b[2J")
# Queries that reach the handlers: the jobs endpoints refuse them, the others ignore their query.
ODD_QUERIES = (b"?limit=%C2%B2", b"?status=%ff", b"?%ZZ=1", b"?limit=%", b"?&&==&", b"?status=FAILED%00", b"?=")


async def test_malformed_requests_are_400s_never_500s_on_every_endpoint(
    http: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    for path in ENDPOINTS:
        for query in UNPARSABLE_QUERIES:
            status, _ = await raw_get(http, path.encode() + query)
            assert status == 400, (path, query[:40])
        for query in ODD_QUERIES:
            status, body = await raw_get(http, path.encode() + query)
            # The landing page reads its own filters (q, status) and ignores other parameters.
            if "jobs" in path or (path == "/" and query.startswith(b"?status=")):
                assert status == 400 and body.count(b"\n") <= 1, (path, query, body)
            else:
                assert status in (200, 503), (path, query)  # /readyz: 503 before the first poll
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_refused_requests_are_one_warning_per_kind_not_an_error_each(
    http: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for _ in range(100):
        assert (await raw_get(http, b"/metrics?" + b"a" * 9000))[0] == 400
    for _ in range(100):
        assert (await raw_get(http, b"/metrics?a=\xff"))[0] == 400
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.__dict__["kind"], r.__dict__["suppressed_since_last"]) for r in lines] == [
        ("WARNING", "LineTooLong", 0),
        ("WARNING", "InvalidURLError", 0),
    ]
    assert lines[0].exc_info is None and len(lines[0].__dict__["error"]) <= 200


def test_a_refusal_after_the_quiet_period_counts_those_left_out() -> None:
    from aiohttp.http_exceptions import LineTooLong

    now = [0.0]
    refusals = RefusedRequestLog(every=10, clock=lambda: now[0])
    logger = logging.getLogger("aiohttp.server")

    def refused() -> logging.LogRecord:
        error = LineTooLong(b"x" * 9000, 8190)
        return logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("127.0.0.1",),
            (LineTooLong, error, None),
        )

    records = [refused() for _ in range(100)]
    assert [refusals.filter(r) for r in records].count(True) == 1
    now[0] = 10.0
    later = refused()
    assert refusals.filter(later) and later.__dict__["suppressed_since_last"] == 99
    assert later.levelno == logging.WARNING
    crash = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("127.0.0.1",),
        (ValueError, ValueError("a bug of ours"), None),
    )
    assert refusals.filter(crash) and crash.levelno == logging.ERROR, "the exporter's own failures stay errors"
