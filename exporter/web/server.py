"""HTTP endpoints: ``/metrics``, ``/`` (landing page), ``/healthz``, ``/readyz``.

A scrape reads the current snapshot's cached exposition; it never calls the API
and never waits for a poll.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from aiohttp import HttpVersion11, web

from exporter import __version__
from exporter.metrics.catalogue import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.snapshot import Snapshot
from exporter.service import Exporter
from exporter.web.config import Authenticator, WebConfig, WebConfigWatcher, allowed_client
from exporter.web.connections import ConnectionGuard

EXPORTER_KEY: web.AppKey[Exporter] = web.AppKey("exporter", Exporter)
WRITE_SIZE = 1 << 20


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def wants_gzip(accept_encoding: str) -> bool:
    """True when ``Accept-Encoding`` allows gzip (a ``q=0`` weight refuses it)."""
    for part in accept_encoding.split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        if coding.lower() not in ("gzip", "*"):
            continue
        weight = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        if weight > 0:
            return True
    return False


# bcrypt checks run in their own small pool, so a flood of wrong passwords cannot delay
# state commits (which use the default pool); past this many waiting, clients get 429.
PASSWORD_CHECK_THREADS = 2
PASSWORD_CHECKS_WAITING = 16


def build_app(
    exporter: Exporter,
    *,
    poll_interval: float,
    clock: Callable[[], float] = time.time,
    web_config: WebConfigWatcher | None = None,
    connections: ConnectionGuard | None = None,
) -> web.Application:
    cache = ExpositionCache()
    watcher = web_config or WebConfigWatcher(None)
    authenticator = Authenticator()
    password_pool = ThreadPoolExecutor(PASSWORD_CHECK_THREADS, thread_name_prefix="password-check")
    password_slots = asyncio.Semaphore(PASSWORD_CHECKS_WAITING)

    @web.middleware
    async def track(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if connections is None:
            return await handler(request)
        connections.request_started(request.transport)
        try:
            return await handler(request)
        finally:
            connections.request_finished(request.transport)

    async def check_password(config: WebConfig, header: str | None) -> bool | None:
        """The bcrypt verdict, or None when too many checks are already waiting."""
        if password_slots.locked():
            return None
        async with password_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(password_pool, authenticator.check, config, header)

    @web.middleware
    async def protect(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        watcher.maybe_reload()
        config = watcher.config
        if not allowed_client(config.tls, request.transport.get_extra_info("peercert") if request.transport else None):
            return web.Response(status=403, text="Forbidden: client certificate name not allowed\n")
        # /healthz stays open so liveness probes need no credentials; it reveals nothing.
        if config.auth_enabled and request.path != "/healthz":
            header = request.headers.get("Authorization")
            allowed = authenticator.cached(config, header)
            if allowed is None:
                allowed = await check_password(config, header)
            if allowed is None:
                return web.Response(status=429, text="Too many password checks at once\n", headers={"Retry-After": "1"})
            if not allowed:
                return web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="idaas-sync-exporter"'},
                )
        return await handler(request)

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in watcher.config.headers.items():
            response.headers[name] = value

    app = web.Application(middlewares=[track, protect])

    async def stop_password_pool(app: web.Application) -> None:
        password_pool.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(stop_password_pool)
    app.on_response_prepare.append(security_headers)
    app[EXPORTER_KEY] = exporter
    preparing: set[asyncio.Task[None]] = set()

    def on_publish(snapshot: Snapshot) -> None:
        # Render and compress right after a poll, in the background, so that no scrape
        # waits for compression.
        task = asyncio.get_running_loop().create_task(cache.prepare(snapshot))
        preparing.add(task)
        task.add_done_callback(preparing.discard)

    exporter.listeners.append(on_publish)

    async def metrics(request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        rendered = cache.rendered(exporter.snapshot)
        headers = {
            "Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
            "Vary": "Accept, Accept-Encoding",
        }
        if wants_gzip(request.headers.get("Accept-Encoding", "")):
            # Every scrape sees the newest snapshot: until its gzip form is ready, the
            # answer is plain text (allowed whatever the client accepts), never an older body.
            body = cache.ready_gzip(rendered, openmetrics=openmetrics)
            if body is not None:
                headers["Content-Encoding"] = "gzip"
                return web.Response(body=body, headers=headers)
        if request.version < HttpVersion11:
            # HTTP/1.0 has no chunked encoding: the length must be known up front.
            return web.Response(body=rendered.body(openmetrics=openmetrics), headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        # Coalesce the cached pieces into writes of about a megabyte: few syscalls, no full copy.
        buffer = bytearray()
        for chunk in rendered.chunks(openmetrics=openmetrics):
            buffer += chunk
            if len(buffer) >= WRITE_SIZE:
                await response.write(bytes(buffer))
                buffer.clear()
        if buffer:
            await response.write(bytes(buffer))
        await response.write_eof()
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        problems = readiness_problems(exporter, poll_interval=poll_interval, now=clock())
        if problems:
            return web.Response(status=503, text="not ready\n" + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=landing_page(exporter, now=clock()), content_type="text/html")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", landing)
    return app


def readiness_problems(exporter: Exporter, *, poll_interval: float, now: float) -> list[str]:
    """Ready once every instance has been polled successfully, and while that stays recent."""
    problems = []
    stale_after = max(3 * poll_interval, 30.0)
    for instance_id, view in exporter.snapshot.instances.items():
        if view.last_success is None:
            problems.append(
                f"{instance_id}: no successful poll yet" + (f" ({view.last_error})" if view.last_error else "")
            )
        elif now - view.last_success > stale_after:
            problems.append(f"{instance_id}: last successful poll {now - view.last_success:.0f}s ago")
    return problems


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def landing_page(exporter: Exporter, *, now: float) -> str:
    snapshot = exporter.snapshot
    rows = []
    for instance_id, view in snapshot.instances.items():
        status = "up" if view.up else ("down" if view.polled else "starting")
        rows.append(
            f"<tr><td>{html.escape(instance_id)}</td><td>{status}</td><td>{_when(view.last_success)}</td>"
            f"<td>{html.escape(view.last_error or '')}</td></tr>"
        )
    targets = []
    for instance_id, view in snapshot.instances.items():
        for key, target in sorted(view.targets.items()):
            info = view.target_info.get((key.target_type, key.target_id))
            name = info.name if info else key.target_id
            last = target.last_job.status if target.last_job else "-"
            running = sum(target.in_progress.values())
            targets.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(cell))}</td>"
                    for cell in (
                        instance_id,
                        key.target_type,
                        name,
                        key.direction,
                        last,
                        _when(target.last_success_end),
                        running,
                    )
                )
                + "</tr>"
            )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>IDaaS sync exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>IDaaS sync exporter</h1>
<p>Version {html.escape(__version__)} &middot; <a href="/metrics">/metrics</a> &middot;
<a href="/healthz">/healthz</a> &middot; <a href="/readyz">/readyz</a></p>
<h2>Instances</h2>
<table><tr><th>Instance</th><th>Poll status</th><th>Last successful poll</th><th>Last error</th></tr>
{"".join(rows)}</table>
<h2>Targets</h2>
<table><tr><th>Instance</th><th>Type</th><th>Target</th><th>Direction</th><th>Last job</th>
<th>Last success</th><th>In progress</th></tr>
{"".join(targets)}</table>
</body></html>
"""
