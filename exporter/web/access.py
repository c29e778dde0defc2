"""Who may use the HTTP endpoints: client certificate names, basic auth, connection limits.

Applied as aiohttp middlewares, in this order: connection tracking (so the guard knows
which connections are busy), then the web configuration's checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from exporter.web.config import Authenticator, WebConfig, WebConfigWatcher, allowed_client
from exporter.web.connections import ConnectionGuard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# bcrypt checks run in their own small pool, so a flood of wrong passwords cannot delay
# state commits (which use the default pool); past this many waiting, clients get 429.
PASSWORD_CHECK_THREADS = 2
PASSWORD_CHECKS_WAITING = 16


class AccessControl:
    def __init__(self, watcher: WebConfigWatcher, connections: ConnectionGuard | None) -> None:
        self.watcher = watcher
        self.connections = connections
        self._authenticator = Authenticator()
        self._password_pool = ThreadPoolExecutor(PASSWORD_CHECK_THREADS, thread_name_prefix="password-check")
        self._password_slots = asyncio.Semaphore(PASSWORD_CHECKS_WAITING)

    def install(self, app: web.Application) -> None:
        app.middlewares.extend([self.track, self.protect])
        app.on_response_prepare.append(self.security_headers)
        app.on_cleanup.append(self.close)

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
        self._password_pool.shutdown(wait=False, cancel_futures=True)
