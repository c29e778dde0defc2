"""HTTP endpoints: ``/metrics``, ``/`` (landing page), ``/jobs``, ``/api/v1/jobs``, ``/healthz``, ``/readyz``.

A scrape reads the current snapshot's cached exposition; it never calls the API
and never waits for a poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from idaas_sync_exporter.config.shards import Shard
from idaas_sync_exporter.config.tenancy import PlannedInstance
from idaas_sync_exporter.links import DEFAULT_CONSOLE_URL, DOCS_URL
from idaas_sync_exporter.memory import release_free_memory
from idaas_sync_exporter.metrics.catalogue import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from idaas_sync_exporter.metrics.exposition import ExpositionCache, Prepared, Renderer
from idaas_sync_exporter.metrics.selfmetrics import SelfMetrics
from idaas_sync_exporter.metrics.snapshot import Snapshot
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.web.access import AccessControl
from idaas_sync_exporter.web.config import WebConfigWatcher
from idaas_sync_exporter.web.connections import ConnectionGuard
from idaas_sync_exporter.web.jobs import JobQuery, JobQueryError, jobs_json, jobs_page, quoted
from idaas_sync_exporter.web.landing import TargetQuery, landing_page
from idaas_sync_exporter.web.page import PageContext, QueryError

EXPORTER_KEY: web.AppKey[Exporter] = web.AppKey("exporter", Exporter)
ENDPOINTS_KEY: web.AppKey[Endpoints] = web.AppKey("endpoints")
WRITE_SIZE = 1 << 20
# Giving freed heap back to the OS walks the heap: worth it after a large re-render only.
TRIM_AFTER_BLOCKS = 32
OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"


def weighted(header: str) -> list[tuple[str, float]]:
    """(lower-cased item, weight) for each item of an ``Accept`` or ``Accept-Encoding`` list.

    A weight is ``q`` (1 when absent); one that is not a number from 0 to 1 counts as 0, so a
    malformed preference never wins.
    """
    items = []
    for part in header.split(","):
        item, *params = (piece.strip() for piece in part.split(";"))
        if not item:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:  # also refuses nan
                    weight = 0.0
        items.append((item.lower(), weight))
    return items


def preference(header: str, *ranges: str) -> float:
    """The weight the header gives the first of ``ranges`` it names (most specific first), else 0.

    The most specific range that matches decides (RFC 9110, section 12.5.1): ``gzip;q=0, *`` refuses gzip.
    """
    weights: dict[str, float] = {}
    for item, weight in weighted(header):
        weights[item] = max(weight, weights.get(item, 0.0))
    return next((weights[r] for r in ranges if r in weights), 0.0)


def wants_openmetrics(accept: str) -> bool:
    """True when ``Accept`` names OpenMetrics with a weight above 0 and at least that of text/plain.

    Text stays the default: ``*/*`` alone, or OpenMetrics refused with ``q=0``, gets the text format.
    """
    openmetrics = preference(accept, OPENMETRICS_MEDIA_TYPE)
    return openmetrics > 0 and openmetrics >= preference(accept, "text/plain", "text/*", "*/*")


def wants_gzip(accept_encoding: str) -> bool:
    """True when ``Accept-Encoding`` allows gzip (a ``q=0`` weight refuses it)."""
    return preference(accept_encoding, "gzip", "*") > 0


def build_app(
    exporter: Exporter,
    *,
    poll_interval: float,
    clock: Callable[[], float] = time.time,
    web_config: WebConfigWatcher | None = None,
    connections: ConnectionGuard | None = None,
    telemetry_path: str = "/metrics",
    self_metrics: SelfMetrics | None = None,
    shard: Shard | None = None,
    console_url: str = DEFAULT_CONSOLE_URL,
    docs_url: str = DOCS_URL,
    instances: Sequence[PlannedInstance] = (),
    demo_speed: float | None = None,
) -> web.Application:
    """The exporter's HTTP application; ``instances`` (where each is polled, as whom) and ``demo_speed``
    (when serving the demo) are only shown on the pages."""
    app = web.Application()
    AccessControl(web_config or WebConfigWatcher(None), connections).install(app)
    app[EXPORTER_KEY] = exporter
    endpoints = Endpoints(
        exporter,
        poll_interval=poll_interval,
        clock=clock,
        telemetry_path=telemetry_path,
        self_metrics=self_metrics or SelfMetrics(shard=shard),
        shard=shard,
        console_url=console_url,
        page=PageContext(docs_url=docs_url, instances=tuple(instances), demo_speed=demo_speed),
    )
    app[ENDPOINTS_KEY] = endpoints
    exporter.listeners.append(endpoints.on_publish)
    app.router.add_get(telemetry_path, endpoints.metrics)
    app.router.add_get("/healthz", endpoints.healthz)
    app.router.add_get("/readyz", endpoints.readyz)
    app.router.add_get("/", endpoints.landing)
    app.router.add_get("/jobs", endpoints.jobs)
    app.router.add_get("/api/v1/jobs", endpoints.jobs_api)
    return app


class Endpoints:
    def __init__(
        self,
        exporter: Exporter,
        *,
        poll_interval: float,
        clock: Callable[[], float],
        telemetry_path: str,
        self_metrics: SelfMetrics,
        shard: Shard | None = None,
        console_url: str = DEFAULT_CONSOLE_URL,
        page: PageContext | None = None,
    ) -> None:
        self._exporter = exporter
        self._page = page or PageContext()
        self._console_url = console_url
        self._telemetry_path = telemetry_path
        self._shard = shard
        self._poll_interval = poll_interval
        self._clock = clock
        self.renderer = Renderer(self_metrics)
        self._cache = ExpositionCache(self.renderer)
        self._preparing: set[asyncio.Task[Prepared]] = set()
        self._examined_version = -1  # of the last preparation judged for a memory trim

    async def _prepare(self, snapshot: Snapshot) -> Prepared:
        prepared = await self._cache.prepare(snapshot)
        # Several callers can be handed the same preparation; only the first one judges it.
        if prepared.version > self._examined_version:
            self._examined_version = prepared.version
            if prepared.compressed_blocks >= TRIM_AFTER_BLOCKS:
                release_free_memory()
        return prepared

    def on_publish(self, snapshot: Snapshot) -> None:
        # Render and compress right after a poll, in the background; scrapes keep getting the
        # previous snapshot, in every encoding alike, until this one is ready in all of them.
        task = asyncio.get_running_loop().create_task(self._prepare(snapshot))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def prepare_current(self) -> None:
        """Prepare the current snapshot; called before the listener opens, so no scrape ever waits."""
        await self._prepare(self._exporter.snapshot)

    async def settled(self) -> None:
        """Wait until every published snapshot is prepared (for tests and shutdown)."""
        while self._preparing:
            await asyncio.gather(*self._preparing)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        # The server prepares a snapshot before it listens; only an app driven without that
        # (in tests) can get here first and wait for one.
        prepared = self._cache.served() or await self._prepare(self._exporter.snapshot)
        headers = {
            "Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
            "Vary": "Accept, Accept-Encoding",
        }
        if wants_gzip(request.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=prepared.gzipped[openmetrics], headers=headers)
        return await _stream(request, prepared, headers, openmetrics=openmetrics)

    async def jobs(self, request: web.Request) -> web.Response:
        try:
            query = _job_query(request)
        except JobQueryError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        page = jobs_page(self._exporter.snapshot, query, self._console_url, self._page)
        return web.Response(text=page, content_type="text/html")

    async def jobs_api(self, request: web.Request) -> web.Response:
        try:
            query = _job_query(request)
        except JobQueryError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(jobs_json(self._exporter.snapshot, query, self._console_url))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        problems = readiness_problems(
            self._exporter.snapshot,
            poll_interval=self._poll_interval,
            now=self._clock(),
            own_intervals=self._exporter.poll_intervals,
        )
        if problems:
            return web.Response(status=503, text="not ready\n" + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def landing(self, request: web.Request) -> web.Response:
        try:
            # Other parameters are ignored, as they were before the page had a filter.
            query = TargetQuery.parse(_single_params(request, ("q", "status")))
        except QueryError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        snapshot = self._exporter.snapshot
        page = landing_page(
            snapshot,
            telemetry_path=self._telemetry_path,
            shard=self._shard,
            context=self._page,
            query=query,
            poll_intervals={i: self._exporter.interval_of(i, self._poll_interval) for i in snapshot.instances},
            state_path=self._exporter.store.path,
        )
        return web.Response(text=page, content_type="text/html")


async def _stream(
    request: web.Request, prepared: Prepared, headers: dict[str, str], *, openmetrics: bool
) -> web.StreamResponse:
    # The length is known, so no chunked framing (which would copy every write once more),
    # and HTTP/1.0 clients are served the same way.
    response = web.StreamResponse(headers=headers)
    response.content_length = prepared.lengths[openmetrics]
    await response.prepare(request)
    # Coalesce the cached pieces into writes of about a megabyte: few syscalls, one copy.
    pending: list[bytes] = []
    size = 0
    for chunk in prepared.rendered.chunks(openmetrics=openmetrics):
        pending.append(chunk)
        size += len(chunk)
        if size >= WRITE_SIZE:
            await response.write(b"".join(pending))
            pending.clear()
            size = 0
    if pending:
        await response.write(b"".join(pending))
    await response.write_eof()
    return response


def _single_params(request: web.Request, names: Sequence[str] | None = None) -> dict[str, str]:
    """The query's parameters (those in ``names``, when given), each given at most once."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if names is not None and name not in names:
            continue
        if name in params:
            raise JobQueryError(f"{quoted(name)} is given twice; give it once (status takes a comma-separated list)")
        params[name] = value
    return params


def _job_query(request: web.Request) -> JobQuery:
    return JobQuery.parse(_single_params(request))


def readiness_problems(
    snapshot: Snapshot, *, poll_interval: float, now: float, own_intervals: Mapping[str, float] | None = None
) -> list[str]:
    """Ready once every instance has been polled successfully, and while that stays recent."""
    problems = []
    for instance_id, view in snapshot.instances.items():
        stale_after = max(3 * (own_intervals or {}).get(instance_id, poll_interval), 30.0)
        if view.last_success is None:
            problems.append(
                f"{instance_id}: no successful poll yet" + (f" ({view.last_error})" if view.last_error else "")
            )
        elif now - view.last_success > stale_after:
            problems.append(f"{instance_id}: last successful poll {now - view.last_success:.0f}s ago")
    return problems
