"""Clocks for the simulated world: real time, faster than real time, or set by hand.

A world's clock says what time it is *in the world*: when jobs are scheduled, start and end.
What the API reports may be another timeline: :class:`CompressedClock` lets the world live
faster than real time while every time the API answers stays at or before the wall clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class CompressedClock:
    """The clock of the demo and of ``simulate``: a world ``speed`` times faster, reported on the wall clock.

    Before the clock was made (its origin) the world's history runs at the real pace: a job an
    hour before the origin is reported an hour before it. From the origin on, the world runs
    ``speed`` times faster (``speed`` times as many jobs an hour, each ``speed`` times shorter),
    and its times are compressed by the same factor onto the wall clock, so the present of the
    world is the present of the wall clock. An API answer therefore never holds a time later
    than the moment it is sent, however long the simulator runs, while jobs keep coming
    ``speed`` times as often as the scenario schedules them.

    A clock that ran ahead (simulated time = start + speed x elapsed) reported jobs from the
    future: ``time() - last_success`` went negative within minutes. One that started behind and
    caught up would report old jobs as hours old (falsely stuck, falsely stale) and then slow
    to the real pace.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        wall: Callable[[], float] = time.time,
        origin: float | None = None,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a positive number")
        self._speed = speed
        self._wall = wall
        # Whole milliseconds, so the mapping of times to the wire is exact integer arithmetic.
        self._origin_ms = math.floor((wall() if origin is None else origin) * 1000)
        self._latest = self._origin_ms / 1000
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def origin(self) -> float:
        return self._origin_ms / 1000

    def __call__(self) -> float:
        """The world's time, in epoch seconds."""
        wall_ms = math.floor(self._wall() * 1000)
        world = (self._origin_ms + math.floor((wall_ms - self._origin_ms) * self._speed)) / 1000
        with self._lock:
            # A wall clock stepped back must not undo jobs the API has already shown.
            self._latest = max(self._latest, world)
            return self._latest

    def api_ms(self, world_ms: int) -> int:
        """The time the API reports for the world's time ``world_ms``: the history since the origin compressed."""
        if world_ms <= self._origin_ms:
            return world_ms
        return self._origin_ms + math.floor((world_ms - self._origin_ms) / self._speed)


class ScaledClock:
    """Simulated epoch seconds that run ``speed`` times faster than the wall clock.

    For tests that need many jobs quickly and compare counts, not times: the world's times
    run ahead of the wall clock and are reported as they are. Demos use :class:`CompressedClock`.
    """

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
