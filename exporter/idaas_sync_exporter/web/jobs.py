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

from idaas_sync_exporter.api.models import ACTIONS, FINAL_STATUSES, IN_PROGRESS_STATUSES, OBJECT_TYPES
from idaas_sync_exporter.collect.counting import FinishedJob
from idaas_sync_exporter.collect.finished import console_link, describe, iso_time
from idaas_sync_exporter.metrics.snapshot import Snapshot
from idaas_sync_exporter.web.page import (
    PageContext,
    QueryError,
    ago,
    breakable,
    cut,
    demo_banner,
    duration,
    head,
    shown,
    status_badge,
    status_class,
    utc,
)

MAX_LIMIT = 5000
_FILTER_VALUE = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
_LIMIT = re.compile(r"[0-9]{1,6}")
_CHOICES = ", ".join(FINAL_STATUSES)


# The longest a parameter name or value from the query is quoted in a message.
QUOTED_CHARACTERS = 64


class JobQueryError(QueryError):
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
        statuses = parse_statuses(params.get("status", ""))
        for name in ("target_id", "instance_id"):
            value = params.get(name)
            if value and not is_filter_value(value):
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


def is_filter_value(text: str) -> bool:
    """Whether ``text`` can be a ``target_id`` or ``instance_id`` filter (a page links to it only then)."""
    return _FILTER_VALUE.fullmatch(text) is not None


def parse_statuses(text: str) -> frozenset[str]:
    """The finished statuses of a comma-separated ``status`` parameter; :class:`JobQueryError` for any other."""
    return frozenset(_status(part) for part in text.split(",") if part.strip())


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


# Objects whose action is "same" did not change; they and skipped ones are in the JSON only.
_UNCHANGED = "same"


def _place(name: str, known: tuple[str, ...]) -> tuple[int, str]:
    """Where ``name`` sorts: the documented names in their documented order, then any others by name."""
    return (known.index(name) if name in known else len(known), name)


def _counts(per_action: dict[str, int]) -> list[str]:
    return [
        f'<span class="nw">{shown(action)} {count}</span>'
        for action, count in sorted(per_action.items(), key=lambda item: _place(item[0], ACTIONS))
    ]


def _objects(job: FinishedJob) -> str:
    """One line per object type that changed or failed: failed objects first, by action, then those done."""
    done: dict[str, dict[str, int]] = {}
    failed: dict[str, dict[str, int]] = {}
    for (object_type, action, result), count in job.objects:
        if result == "failed":
            into = failed
        elif result == "success" and action != _UNCHANGED:
            into = done
        else:
            continue
        per_action = into.setdefault(object_type, {})
        per_action[action] = per_action.get(action, 0) + count
    lines = []
    for object_type in sorted(done.keys() | failed.keys(), key=lambda name: _place(name, OBJECT_TYPES)):
        parts = []
        if object_type in failed:
            parts.append(
                f'<strong class="bad nw">{sum(failed[object_type].values())} failed</strong> '
                f'<span class="bad">({", ".join(_counts(failed[object_type]))})</span>'
            )
        parts += _counts(done.get(object_type, {}))
        lines.append(f'<div><span class="ot">{shown(object_type)}:</span> {"&nbsp;&middot; ".join(parts)}</div>')
    return "".join(lines) or '<span class="neutral">no changes</span>'


def _job_row(snapshot: Snapshot, instance_id: str, job: FinishedJob, console_url: str) -> str:
    name = _name(snapshot, instance_id, job)
    target_id = job.target.target_id
    label = cut(name, "w12", "") if name else cut(target_id, "w12")
    if is_filter_value(target_id):
        label = f'<a href="/jobs?{html.escape(urlencode({"target_id": target_id}))}">{label}</a>'
    ident = f"<br>{cut(target_id, 'w12')}" if name else ""
    now = snapshot.created
    finished = ago(job.sort_ms / 1000, now)
    took = "" if job.end_ms is None else "took " + duration(max(0, job.end_ms - job.start_ms) / 1000)
    link = html.escape(console_link(console_url, instance_id, job))
    started = f"started {utc(job.start_ms / 1000)}"
    return (
        f'<tr class="row-{status_class(job.status)}">'
        f'<td>{finished}<br><span class="small nw" title="{started}">{took}</span></td>'
        f'<td>{status_badge(job.status)}<br><span class="small">{shown(job.trigger_type)}</span></td>'
        f'<td>{label} <span class="small">{shown(job.target.direction)}</span>{ident}</td>'
        f"<td><div class='err'>{breakable(job.error_code) if job.error_code else ''}</div></td>"
        f'<td><div class="objects">{_objects(job)}</div></td>'
        f'<td><a class="console" href="{link}">{cut(job.job_id, "w9")}</a></td>'
        f"<td>{cut(instance_id, 'w9')}</td>"
        "</tr>"
    )


def _filters(query: JobQuery) -> str:
    status = ",".join(sorted(query.statuses))
    # Kept through a new search from the form, which has no field for them.
    kept = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in (
            ("instance_id", query.instance_id or ""),
            ("limit", str(query.limit) if query.limit != MAX_LIMIT else ""),
        )
        if value
    )
    return (
        '<form method="get" action="/jobs">'
        f'<label>Status <input type="text" name="status" value="{html.escape(status)}" '
        'placeholder="failed,partial_success"></label>'
        f'<label>Target ID <input type="text" name="target_id" value="{html.escape(query.target_id or "")}"></label>'
        f'{kept}<button type="submit">Filter</button>'
        + (' <a href="/jobs">Clear</a>' if query.statuses or query.target_id or query.instance_id else "")
        + "</form>\n"
    )


def jobs_page(snapshot: Snapshot, query: JobQuery, console_url: str, context: PageContext | None = None) -> str:
    chosen = list(recent_jobs(snapshot, query))
    rows = [_job_row(snapshot, instance_id, job, console_url) for instance_id, job in chosen]
    counts: dict[str, int] = {}
    for _, job in chosen:
        counts[job.status] = counts.get(job.status, 0) + 1
    tally = "".join(
        f' &middot; <span class="{status_class(status)}">{counts[status]} {status}</span>'
        for status in ("failed", "partial_success", "success")
        if counts.get(status)
    )
    filtered = bool(query.statuses or query.target_id or query.instance_id)
    if rows:
        table = (
            '<table id="jobs"><tr><th>Finished</th><th>Status, trigger</th><th>Target</th><th>Error code</th>'
            "<th>Objects (failed first)</th><th>Job ID (console)</th><th>Instance ID</th></tr>\n"
            + "\n".join(rows)
            + "</table>\n"
        )
    elif filtered:
        table = '<p class="empty" id="no-jobs">No finished job matches these filters.</p>\n'
    else:
        table = (
            '<p class="empty" id="no-jobs">No finished jobs yet: the list fills as polls read them, and each '
            "instance keeps its latest ones in the state file.</p>\n"
        )
    status = ",".join(sorted(query.statuses))
    failures = "?" + urlencode({"status": "failed,partial_success"})
    api = html.escape("?" + urlencode({"status": status}) if status else "")
    return f"""{head("Recent sync jobs - IDaaS sync exporter")}<body>
{demo_banner(context or PageContext())}<h1>Recent sync jobs</h1>
<nav><a href="/">Exporter</a> &middot; <a href="/jobs">All</a> &middot;
<a href="/jobs{html.escape(failures)}">Failed and partially successful</a> &middot;
<a href="/api/v1/jobs{api}">JSON</a></nav>
{_filters(query)}<p class="note" id="count">{len(rows)} job(s), newest first{tally}</p>
{table}<footer>Data as of {utc(snapshot.created)}; times are relative to it (hover for the UTC time). Each instance
keeps its latest finished jobs in the state file. Skipped and unchanged objects are in the JSON.</footer>
</body></html>
"""
