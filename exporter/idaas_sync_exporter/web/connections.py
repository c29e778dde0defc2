"""Connection limits for the metrics server, so clients without credentials cannot starve scrapes.

aiohttp closes idle keep-alive connections only after 75 s and never times out a connection
that sends no request at all; a thousand such connections exhaust the process's descriptors
(and then the API client's). The guard wraps each connection's protocol:

- a new connection has ``first_request_seconds`` to deliver a complete request head, and an
  idle keep-alive connection ``idle_seconds`` to start its next request; otherwise it is closed;
- at most ``limit`` connections are open: when one more arrives, the connection idle for the
  longest is closed to make room (a scraper is never locked out by idle ones); when all are
  busy, the new one is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# At most one log line per this many seconds for refused connections and accept errors.
LOG_EVERY_SECONDS = 10.0


class RateLimitedLog:
    """Logs an event at most every ``every`` seconds, with how many were left out meanwhile."""

    def __init__(self, message: str, *, every: float = LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._message = message
        self._every = every
        self._clock = clock
        self._last = -float("inf")
        self._suppressed = 0

    def __call__(self, **extra: Any) -> None:
        now = self._clock()
        if now - self._last < self._every:
            self._suppressed += 1
            return
        log.warning(self._message, extra={**extra, "suppressed_since_last": self._suppressed})
        self._last = now
        self._suppressed = 0


class ConnectionGuard:
    def __init__(self, *, limit: int = 256, first_request_seconds: float = 10.0, idle_seconds: float = 90.0) -> None:
        self.limit = limit
        self.first_request_seconds = first_request_seconds
        self.idle_seconds = idle_seconds
        # Open connections, idle ones in the order they became idle (oldest first).
        self._idle: OrderedDict[asyncio.BaseTransport, asyncio.TimerHandle | None] = OrderedDict()
        self._busy: set[asyncio.BaseTransport] = set()
        self._log_refused = RateLimitedLog("connection refused: every connection is busy")

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._busy)

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(factory(), self)

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        if self.open_connections >= self.limit:
            if not self._idle:
                self._log_refused(limit=self.limit)
                return False
            oldest = next(iter(self._idle))
            self._close_idle(oldest)
        self._set_idle(transport, self.first_request_seconds)
        return True

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is None or transport not in self._idle:
            return
        timer = self._idle.pop(transport)
        if timer is not None:
            timer.cancel()
        self._busy.add(transport)

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is None or transport not in self._busy:
            return
        self._busy.discard(transport)
        if not transport.is_closing():
            self._set_idle(transport, self.idle_seconds)

    def forget(self, transport: asyncio.BaseTransport) -> None:
        timer = self._idle.pop(transport, None)
        if timer is not None:
            timer.cancel()
        self._busy.discard(transport)

    def _set_idle(self, transport: asyncio.BaseTransport, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._idle[transport] = loop.call_later(seconds, self._close_idle, transport)

    def _close_idle(self, transport: asyncio.BaseTransport) -> None:
        self.forget(transport)
        transport.close()


class _GuardedProtocol(asyncio.Protocol):
    """Passes everything to aiohttp's protocol; tells the guard when the connection comes and goes."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(transport):
            abort = getattr(transport, "abort", transport.close)
            abort()
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._guard.forget(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log accept() failures (out of descriptors) at most every few seconds instead of per attempt."""
    limited = RateLimitedLog("cannot accept connections", every=LOG_EVERY_SECONDS)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "accept" in str(context.get("message", "")):
            limited(error=str(context.get("exception", ""))[:200])
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
