"""Clocks for the simulated world: real time, faster than real time, or set by hand."""

from __future__ import annotations

import time
from collections.abc import Callable


class ScaledClock:
    """Simulated epoch seconds that run ``speed`` times faster than the wall clock."""

    def __init__(
        self,
        *,
        start: float | None = None,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = wall() if start is None else start
        self._speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

        self._paused_at: float | None = None

    @property
    def speed(self) -> float:
        return self._speed

    def __call__(self) -> float:
        if self._paused_at is not None:
            return self._paused_at
        return self._start + (self._monotonic() - self._origin) * self._speed

    def pause(self) -> None:
        """Stop simulated time (jobs stop moving) until :meth:`resume`."""
        if self._paused_at is None:
            self._paused_at = self()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._start = self._paused_at
            self._origin = self._monotonic()
            self._paused_at = None


class ManualClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: float) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now
