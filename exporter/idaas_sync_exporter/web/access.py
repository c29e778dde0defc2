"""Who may use the HTTP endpoints: client certificate names, basic auth, connection limits.

Applied as aiohttp middlewares, in this order: connection tracking (so the guard knows
which connections are busy), then the web configuration's checks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from idaas_sync_exporter.web.config import Authenticator, WebConfig, WebConfigWatcher, allowed_client
from idaas_sync_exporter.web.connections import LOG_EVERY_SECONDS, ConnectionGuard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# bcrypt checks run in their own small pool, so a flood of wrong passwords cannot delay
# state commits (which use the default pool); past this many waiting, clients get 429.
PASSWORD_CHECK_THREADS = 2
PASSWORD_CHECKS_WAITING = 16
# aiohttp writes its line about a request it cannot parse to this logger.
AIOHTTP_SERVER_LOGGER = "aiohttp.server"
# What a refused request is said to be, by the parser's exception: fixed words, since aiohttp's own
# text quotes the request, Authorization and Cookie values included.
REFUSAL_KINDS = {
    "LineTooLong": "a request line or header over the size limit",
    "InvalidURLError": "a URL the HTTP parser cannot read",
    "BadHttpMethod": "a method the HTTP parser cannot read",
    "BadStatusLine": "a request line the HTTP parser cannot read",
    "InvalidHeader": "a header the HTTP parser refuses",
    "ContentLengthError": "a body length the HTTP parser refuses",
    "TransferEncodingError": "a transfer coding the HTTP parser refuses",
    "ContentEncodingError": "a content coding the HTTP parser refuses",
}
REFUSED_REQUEST = "a request the HTTP parser refuses"
# llhttp quotes the bytes from the line it stopped at: a header line starts with its name. Only a
# name that is an RFC 9110 token is told; nothing after the colon ever is.
_QUOTED_HEADER_NAME = re.compile(r":\n\n  b['\"]([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):")


class RefusedRequestLog(logging.Filter):
    """Turns aiohttp's line about each malformed request into a rate-limited warning.

    aiohttp logs every request it cannot parse (a request line over 8 KB, a raw non-ASCII byte in
    the URL, a bad header) at error level, with a traceback: any client could write error lines at
    will. The mistake is the client's, so this writes a warning instead, at most one per kind (the
    parser's exception) every ``every`` seconds, with how many of that kind were left out meanwhile,
    as connections.RateLimitedLog does for refused connections. Failures of the exporter's own
    handlers (500s) pass unchanged.
    """

    def __init__(self, *, every: float = LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.ERROR or not isinstance(error, HttpProcessingError) or not 400 <= error.code < 500:
            return True
        kind = type(error).__name__
        now = self._clock()
        if now - self._last.get(kind, -float("inf")) < self._every:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.msg, record.args = "refused a malformed request", ()
        record.exc_info, record.exc_text = None, None
        record.__dict__.update(
            kind=kind,
            status=error.code,
            error=REFUSAL_KINDS.get(kind, REFUSED_REQUEST),
            suppressed_since_last=self._suppressed.pop(kind, 0),
        )
        header = _QUOTED_HEADER_NAME.search(str(error.message))
        if header is not None:
            record.__dict__["header"] = header[1]
        return True


class AccessControl:
    def __init__(self, watcher: WebConfigWatcher, connections: ConnectionGuard | None) -> None:
        self.watcher = watcher
        self.connections = connections
        self._authenticator = Authenticator()
        self._password_pool = ThreadPoolExecutor(PASSWORD_CHECK_THREADS, thread_name_prefix="password-check")
        self._password_slots = asyncio.Semaphore(PASSWORD_CHECKS_WAITING)
        self.refusals = RefusedRequestLog()

    def install(self, app: web.Application) -> None:
        app.middlewares.extend([self.track, self.protect])
        app.on_response_prepare.append(self.security_headers)
        app.on_startup.append(self.start_refusal_log)
        app.on_cleanup.append(self.close)

    async def start_refusal_log(self, app: web.Application) -> None:
        logging.getLogger(AIOHTTP_SERVER_LOGGER).addFilter(self.refusals)

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.connections is None:
            return await handler(request)
        self.connections.request_started(request.transport)
        try:
            return await handler(request)
        finally:
            self.connections.request_finished(request.transport)

    @web.middleware
    async def protect(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.watcher.maybe_reload()
        config = self.watcher.config
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        if not allowed_client(config.tls, peercert):
            return web.Response(status=403, text="Forbidden: client certificate name not allowed\n")
        # /healthz stays open so liveness probes need no credentials; it reveals nothing.
        if config.auth_enabled and request.path != "/healthz":
            refused = await self._check_credentials(config, request.headers.get("Authorization"))
            if refused is not None:
                return refused
        return await handler(request)

    async def _check_credentials(self, config: WebConfig, header: str | None) -> web.Response | None:
        """None when the credentials are right, else the answer that refuses them."""
        allowed = self._authenticator.cached(config, header)
        if allowed is None:
            allowed = await self._check_password(config, header)
        if allowed is None:
            return web.Response(status=429, text="Too many password checks at once\n", headers={"Retry-After": "1"})
        if not allowed:
            return web.Response(
                status=401, text="Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="idaas-sync-exporter"'}
            )
        return None

    async def _check_password(self, config: WebConfig, header: str | None) -> bool | None:
        """The bcrypt verdict, or None when too many checks are already waiting."""
        if self._password_slots.locked():
            return None
        async with self._password_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._password_pool, self._authenticator.check, config, header)

    async def security_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in self.watcher.config.headers.items():
            response.headers[name] = value

    async def close(self, app: web.Application) -> None:
        logging.getLogger(AIOHTTP_SERVER_LOGGER).removeFilter(self.refusals)
        self._password_pool.shutdown(wait=False, cancel_futures=True)
