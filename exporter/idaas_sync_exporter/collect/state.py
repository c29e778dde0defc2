"""What the exporter remembers about one instance between polls, and a poll's copy-on-write changes.

Committed state is never mutated: a poll works on a :class:`PollWork` and its result
replaces the state in one commit (see :mod:`idaas_sync_exporter.collect.store`), so a crash before
the commit simply redoes the poll.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import orjson

from idaas_sync_exporter.collect.counting import FinishedJob, TargetKey, TargetTally


@dataclass(slots=True)
class TrackedJob:
    """A job seen pending/running, followed until the API reports it final."""

    target: TargetKey
    status: str
    start_ms: int


@dataclass(slots=True)
class InstanceState:
    """Committed state of one instance. Never mutated after commit: a poll works on a :class:`PollWork`."""

    instance_id: str
    # Latest job start time the API has shown us (API clock, ms). The next poll
    # re-reads from cursor - overlap, so the cost follows new jobs, not the window.
    cursor_ms: int | None = None
    targets: dict[TargetKey, TargetTally] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)  # job id -> start ms
    tracked: dict[str, TrackedJob] = field(default_factory=dict)
    # The latest finished jobs, newest first, for the recent-jobs page (bounded by the poller).
    recent: tuple[FinishedJob, ...] = ()

    @property
    def is_cold(self) -> bool:
        return self.cursor_ms is None

    def begin(self) -> PollWork:
        return PollWork(self)

    def meta_json(self) -> str:
        # orjson: thousands of ids each poll, encoded in a worker thread that holds the GIL meanwhile.
        return orjson.dumps(
            {
                "cursor_ms": self.cursor_ms,
                "counted": self.counted,
                "tracked": [[job_id, *t.target, t.status, t.start_ms] for job_id, t in self.tracked.items()],
            }
        ).decode()


class PollWork:
    """A poll's changes, copy-on-write over the committed state.

    Only the targets a poll touches are copied, so a poll's cost (and what it
    writes to disk) follows the jobs it saw, not the number of targets.
    """

    def __init__(self, base: InstanceState) -> None:
        self.base = base
        self.cursor_ms = base.cursor_ms
        self.targets = dict(base.targets)
        self.counted = dict(base.counted)
        self.tracked = dict(base.tracked)
        self.touched: set[TargetKey] = set()
        # Jobs this poll saw finish: all of them (for the recent jobs), and those it counted (one event each).
        self.seen_final: list[FinishedJob] = []
        self.counted_final: list[FinishedJob] = []

    def tally(self, key: TargetKey) -> TargetTally:
        if key not in self.touched:
            current = self.targets.get(key)
            self.targets[key] = TargetTally() if current is None else current.copy()
            self.touched.add(key)
        return self.targets[key]

    def changed_nothing(self) -> bool:
        base = self.base
        return (
            not self.touched
            and self.cursor_ms == base.cursor_ms
            and self.counted == base.counted
            and self.tracked == base.tracked
        )

    def result(self, recent_limit: int) -> InstanceState:
        # Untouched targets keep the very same dictionary, so whoever renders them can tell
        # in one comparison that nothing changed.
        targets = self.targets if self.touched else self.base.targets
        recent = self.base.recent
        if self.seen_final:
            # A cold poll sees a day of jobs; only the newest few are kept.
            newest = heapq.nlargest(recent_limit, self.seen_final, key=lambda job: job.order)
            recent = tuple(heapq.nlargest(recent_limit, (*newest, *recent), key=lambda job: job.order))
        return InstanceState(self.base.instance_id, self.cursor_ms, targets, self.counted, self.tracked, recent)

    def new_recent(self, state: InstanceState) -> list[FinishedJob]:
        """The jobs of ``state.recent`` this poll added (what the store inserts)."""
        known = {job.job_id for job in self.base.recent}
        return [job for job in state.recent if job.job_id not in known]
