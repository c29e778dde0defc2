"""Planning the re-reads of followed jobs: listings a request line can carry, the call budget, what goes first."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from idaas_sync_exporter.api.client import JobFilter
from idaas_sync_exporter.api.models import TARGET_ID_CHARS_PER_QUERY, TARGET_IDS_PER_QUERY
from idaas_sync_exporter.collect.counting import TargetKey
from idaas_sync_exporter.collect.recheck import (
    CHANGED_JOBS_PER_CALL,
    RecheckPlanner,
    query_chars,
    recheck_groups,
    spare_calls,
)
from idaas_sync_exporter.collect.state import TrackedJob

NOW_MS = 1_790_000_000_000
MINUTE_MS = 60_000


def followed(count: int, *, started_ms: int, id_length: int = 10, prefix: str = "job") -> dict[str, TrackedJob]:
    return {
        f"{prefix}_{index}": TrackedJob(
            TargetKey("application", f"app_{prefix}_{index:04d}".ljust(id_length, "x"), "egress"),
            "running",
            started_ms + index,
        )
        for index in range(count)
    }


def planner(last_seen_ms: Mapping[str, float]) -> RecheckPlanner:
    def job_filter(**overrides: Any) -> JobFilter:
        return JobFilter(**overrides)

    return RecheckPlanner(
        last_seen_ms=last_seen_ms,
        now_ms=NOW_MS,
        api_now_ms=NOW_MS,
        recheck_max_ms=10 * MINUTE_MS,
        long_running_ms=30 * MINUTE_MS,
        job_filter=job_filter,
    )


def test_a_poll_may_make_one_call_per_page_of_news_plus_one() -> None:
    assert spare_calls(jobs_changed=0, calls_made=0) == 1
    assert spare_calls(jobs_changed=0, calls_made=1) == 0
    assert spare_calls(jobs_changed=CHANGED_JOBS_PER_CALL, calls_made=1) == 1
    assert spare_calls(jobs_changed=CHANGED_JOBS_PER_CALL + 1, calls_made=1) == 2


def test_groups_fit_a_request_line_and_are_of_even_size() -> None:
    many = followed(250, started_ms=NOW_MS - MINUTE_MS)
    groups = recheck_groups(many, {})
    assert [len(group) for group in groups] == [84, 84, 82]  # not 100, 100, 50
    long_ids = followed(200, started_ms=NOW_MS - MINUTE_MS, id_length=120)
    for group in recheck_groups(long_ids, {}):
        targets = {tracked.target.target_id for tracked in group.values()}
        assert len(targets) <= TARGET_IDS_PER_QUERY
        assert sum(map(query_chars, targets)) <= TARGET_ID_CHARS_PER_QUERY
    assert sum(map(len, recheck_groups(long_ids, {}))) == len(long_ids)


def test_jobs_that_waited_longest_are_planned_first_and_those_past_the_maximum_forced() -> None:
    fresh = followed(100, started_ms=NOW_MS - 5 * MINUTE_MS, prefix="fresh")
    waiting = followed(100, started_ms=NOW_MS - 5 * MINUTE_MS, prefix="waiting")
    last_seen = {job_id: NOW_MS - MINUTE_MS for job_id in fresh} | {
        job_id: NOW_MS - 11 * MINUTE_MS for job_id in waiting
    }
    plan = planner(last_seen).plan(fresh | waiting)
    assert [(set(recheck.jobs), recheck.forced) for recheck in plan] == [(set(waiting), True), (set(fresh), False)]
    assert planner(last_seen).any_due(waiting) and not planner(last_seen).any_due(fresh)


def test_long_running_jobs_are_listed_as_running_only_after_half_the_maximum() -> None:
    old = followed(3, started_ms=NOW_MS - 60 * MINUTE_MS)
    assert planner({job_id: NOW_MS - 4 * MINUTE_MS for job_id in old}).plan(old) == []
    (recheck,) = planner({job_id: NOW_MS - 6 * MINUTE_MS for job_id in old}).plan(old)
    assert recheck.job_filter.status == "running" and not recheck.forced
    assert recheck.waited == 6 * MINUTE_MS
    assert planner({}).plan(old)[0].waited == math.inf
