"""The recent jobs: ``/jobs`` (HTML) and ``/api/v1/jobs`` (JSON), newest first, from the served snapshot.

Each instance keeps its last N finished jobs in the state file (``--recent-jobs``), so a restart
keeps them. Filters: ``status`` (comma-separated), ``target_id``, ``instance_id``, ``limit``.
Each job links to the IDaaS console through a configurable URL pattern.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from exporter.api.models import FINAL_STATUSES, IN_PROGRESS_STATUSES
from exporter.collect.counting import FinishedJob
from exporter.collect.finished import console_link, describe, iso_time
from exporter.metrics.snapshot import Snapshot
from exporter.web.landing import shown

MAX_LIMIT = 5000
_FILTER_VALUE = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
_LIMIT = re.compile(r"[0-9]{1,6}")
_CHOICES = ", ".join(FINAL_STATUSES)


# The longest a parameter name or value from the query is quoted in a message.
QUOTED_CHARACTERS = 64


class JobQueryError(ValueError):
    """A query parameter of the jobs pages is wrong; the message is one line naming it and the fix."""


def quoted(text: str, limit: int = QUOTED_CHARACTERS) -> str:
    """``text`` as a message quotes it: cut to ``limit`` with a marker; repr escapes CR, LF, ESC and the like."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


@dataclass(frozen=True, slots=True)
class JobQuery:
    statuses: frozenset[str] = frozenset()
    target_id: str | None = None
    instance_id: str | None = None
    limit: int = MAX_LIMIT

    @classmethod
    def parse(cls, params: dict[str, str]) -> JobQuery:
        unknown = sorted(set(params) - {"status", "target_id", "instance_id", "limit"})
        if unknown:
            raise JobQueryError(f"unknown parameter {quoted(unknown[0])}; use status, target_id, instance_id or limit")
        statuses = frozenset(_status(part) for part in params.get("status", "").split(",") if part.strip())
        for name in ("target_id", "instance_id"):
            value = params.get(name)
            if value and not _FILTER_VALUE.fullmatch(value):
                raise JobQueryError(f"{name} {quoted(value)} is not an id; use letters, digits and _.:@/+=-")
        limit = MAX_LIMIT
        if params.get("limit"):
            text = params["limit"]
            # Only ASCII digits: str.isdigit also accepts '²' (which int() refuses) and '٣' (which it reads as 3).
            if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
                raise JobQueryError(f"limit {quoted(text, 16)} must be a whole number from 1 to {MAX_LIMIT}")
            limit = int(text)
        return cls(statuses, params.get("target_id") or None, params.get("instance_id") or None, limit)

    def matches(self, instance_id: str, job: FinishedJob) -> bool:
        return (
            (not self.statuses or job.status in self.statuses)
            and (self.target_id is None or job.target.target_id == self.target_id)
            and (self.instance_id is None or instance_id == self.instance_id)
        )


def _status(text: str) -> str:
    """A finished-job status, matched case-insensitively: a filter that can match nothing is refused, not empty."""
    status = text.strip().lower()
    if status in FINAL_STATUSES:
        return status
    given = quoted(text.strip(), 32)
    if status in IN_PROGRESS_STATUSES:
        raise JobQueryError(f"status {given} is not a finished status; the list holds finished jobs only: {_CHOICES}")
    raise JobQueryError(f"status {given} is unknown; use {_CHOICES} (comma-separated)")


def recent_jobs(snapshot: Snapshot, query: JobQuery) -> Iterator[tuple[str, FinishedJob]]:
    """(instance id, job) newest first across instances, filtered, at most ``query.limit``."""
    chosen = [
        (instance_id, job)
        for instance_id, view in snapshot.instances.items()
        for job in view.recent_jobs
        if query.matches(instance_id, job)
    ]
    chosen.sort(key=lambda pair: pair[1].order, reverse=True)
    yield from chosen[: query.limit]


def _name(snapshot: Snapshot, instance_id: str, job: FinishedJob) -> str | None:
    info = snapshot.instances[instance_id].target_info.get((job.target.target_type, job.target.target_id))
    return info.name if info else None


def jobs_json(snapshot: Snapshot, query: JobQuery, console_url: str) -> dict[str, Any]:
    jobs = []
    for instance_id, job in recent_jobs(snapshot, query):
        fields = describe(instance_id, job, _name(snapshot, instance_id, job))
        fields["console_url"] = console_link(console_url, instance_id, job)
        jobs.append(fields)
    return {"jobs": jobs, "count": len(jobs), "shown_at": iso_time(round(snapshot.created * 1000))}


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;border-bottom:1px solid #ddd}
th{background:#f4f4f4}.id{color:#666;font-family:monospace;font-size:.9em}
.failed{color:#cf222e}.partial_success{color:#9a6700}.success{color:#1a7f37}.note{color:#666;font-size:.9em}
form{margin:1em 0}.esc{color:#9a6700;background:#fff8c5;font-family:monospace}
"""


def _objects_summary(job: FinishedJob) -> str:
    """Objects done per action and failed, across object types: the numbers the on-call person scans for."""
    totals: dict[str, int] = {}
    for (_, action, result), count in job.objects:
        # Done (success) by action, failed in one sum; skipped objects are in the JSON only.
        key = action if result == "success" else "failed" if result == "failed" else None
        if key is not None:
            totals[key] = totals.get(key, 0) + count
    return ", ".join(f"{name} {count}" for name, count in sorted(totals.items())) or "-"


def jobs_page(snapshot: Snapshot, query: JobQuery, console_url: str) -> str:
    rows = []
    for instance_id, job in recent_jobs(snapshot, query):
        name = _name(snapshot, instance_id, job)
        link = html.escape(console_link(console_url, instance_id, job))
        duration = "" if job.end_ms is None else f"{max(0, job.end_ms - job.start_ms) / 1000:.0f} s"
        rows.append(
            "<tr>"
            f"<td>{html.escape(iso_time(job.sort_ms) or '')}</td>"
            f'<td class="{html.escape(job.status)}">{shown(job.status)}</td>'
            f'<td>{shown(name or "")} <span class="id">{shown(job.target.target_id)}</span></td>'
            f"<td>{shown(job.target.direction)}</td><td>{shown(job.trigger_type)}</td>"
            f"<td>{shown(job.error_code or '')}</td><td>{shown(_objects_summary(job))}</td>"
            f"<td>{duration}</td>"
            f'<td><a class="id" href="{link}">{shown(job.job_id)}</a></td>'
            f'<td class="id">{shown(instance_id)}</td>'
            "</tr>"
        )
    status = ",".join(sorted(query.statuses))
    failures = "?" + urlencode({"status": "failed,partial_success"})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Recent sync jobs - IDaaS sync exporter</title>
<style>{_STYLE}</style></head>
<body><h1>Recent sync jobs</h1>
<nav><a href="/">Exporter</a> &middot; <a href="/jobs">All</a> &middot;
<a href="/jobs{html.escape(failures)}">Failed and partially successful</a> &middot;
<a href="/api/v1/jobs{html.escape("?" + urlencode({"status": status}) if status else "")}">JSON</a></nav>
<form method="get" action="/jobs">
<label>Status <input name="status" value="{html.escape(status)}" placeholder="failed,partial_success"></label>
<label>Target ID <input name="target_id" value="{html.escape(query.target_id or "")}"></label>
<button type="submit">Filter</button></form>
<table id="jobs"><tr><th>Finished (UTC)</th><th>Status</th><th>Target</th><th>Direction</th><th>Trigger</th>
<th>Error code</th><th>Objects</th><th>Duration</th><th>Job ID (console)</th><th>Instance ID</th></tr>
{"".join(rows)}</table>
<p class="note">{len(rows)} job(s), newest first; each instance keeps its latest finished jobs in the state file.</p>
</body></html>
"""
