"""The landing page at ``/``: what the exporter polls, where, how that went, and each target's last job.

Targets can be filtered with ``q`` (a substring of the instance id, target type, id, name, direction or
last status, in any case) and ``status`` (comma-separated finished statuses of the last job); other
parameters are ignored. Targets whose last job failed come first, and at most :data:`MAX_ROWS` are
listed, so a tenant of thousands of targets still gets a page of a reasonable size.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from idaas_sync_exporter import __version__
from idaas_sync_exporter.api.models import FINAL_STATUSES
from idaas_sync_exporter.collect.counting import TargetKey
from idaas_sync_exporter.collect.targets import TargetInfo
from idaas_sync_exporter.config.shards import Shard
from idaas_sync_exporter.links import docs_page
from idaas_sync_exporter.metrics.snapshot import InstanceView, Snapshot, TargetView
from idaas_sync_exporter.web.jobs import is_filter_value, parse_statuses
from idaas_sync_exporter.web.page import (
    REFRESH_SECONDS,
    PageContext,
    QueryError,
    ago,
    attribute,
    breakable,
    cut,
    demo_banner,
    has_invisible,
    head,
    relative,
    shown,
    status_badge,
    status_class,
    utc,
)

__all__ = ["MAX_QUERY_CHARACTERS", "MAX_ROWS", "TargetQuery", "landing_page", "shown"]

MAX_QUERY_CHARACTERS = 200
MAX_ROWS = 500
# Problems first: the cap on rows must never hide a failure behind a thousand successes. Targets
# without a finished job, or with a status this release does not know, come between.
_RANK = {"failed": 0, "partial_success": 1, "success": 3}
_OTHER_RANK = 2


@dataclass(frozen=True, slots=True)
class TargetQuery:
    text: str = ""
    statuses: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> TargetQuery:
        text = params.get("q", "")
        if len(text) > MAX_QUERY_CHARACTERS:
            raise QueryError(f"q is {len(text)} characters long; use at most {MAX_QUERY_CHARACTERS}")
        if has_invisible(text):
            raise QueryError("q holds a control or invisible character; search for plain text (a name, id or status)")
        return cls(text.strip(), parse_statuses(params.get("status", "")))

    def matches(self, status: str, *fields: str) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        needle = self.text.casefold()
        return not needle or any(needle in field.casefold() for field in (*fields, status))

    @property
    def active(self) -> bool:
        return bool(self.text or self.statuses)


@dataclass(frozen=True, slots=True)
class _Target:
    instance_id: str
    key: TargetKey
    view: TargetView
    info: TargetInfo | None

    @property
    def status(self) -> str:
        return self.view.last_job.status if self.view.last_job else ""

    @property
    def searched(self) -> tuple[str, ...]:
        name = self.info.name if self.info else ""
        return (self.instance_id, self.key.target_type, self.key.target_id, self.key.direction, name)

    @property
    def order(self) -> tuple[int, str, str, str, str]:
        name = self.info.name.casefold() if self.info else ""
        return (_RANK.get(self.status, _OTHER_RANK), self.instance_id, name, self.key.target_id, self.key.direction)


def _targets(snapshot: Snapshot) -> list[_Target]:
    return [
        _Target(instance_id, key, target, view.target_info.get((key.target_type, key.target_id)))
        for instance_id, view in snapshot.instances.items()
        for key, target in view.targets.items()
    ]


_POLL_CLASS = {"up": "ok", "down": "bad", "starting": "neutral"}


def _poll_status(view: InstanceView) -> str:
    return "up" if view.up else ("down" if view.polled else "starting")


def _instance_rows(snapshot: Snapshot, context: PageContext, intervals: Mapping[str, float]) -> list[str]:
    rows = []
    for instance_id, view in snapshot.instances.items():
        planned = context.instance(instance_id)
        region, account = ("", "")
        if planned is not None:
            region = shown(planned.region)
            if planned.endpoint:
                region += f'<br><span class="small">{cut(planned.endpoint, "w16", "")}</span>'
            account = shown(planned.account)
        interval = intervals.get(instance_id)
        status = _poll_status(view)
        rows.append(
            "<tr>"
            f"<td>{cut(instance_id, 'w20')}</td><td class='nw'>{region}</td><td>{account}</td>"
            f'<td><span class="st {_POLL_CLASS[status]}">{status}</span></td>'
            f"<td class='nw'>{'every ' + relative(interval) if interval else ''}</td>"
            f"<td class='nw'>{ago(view.last_success, snapshot.created)}</td>"
            f"<td class='brk'>{shown(view.last_error or '')}</td>"
            "</tr>"
        )
    return rows


def _target_row(target: _Target, now: float) -> str:
    key, view = target.key, target.view
    name = target.info.name if target.info and target.info.name else ""
    label = cut(name, "w20", "") if name else cut(key.target_id, "w20")
    if is_filter_value(key.target_id):
        label = f'<a href="/jobs?{html.escape(urlencode({"target_id": key.target_id}))}">{label}</a>'
    ident = f"<br>{cut(key.target_id, 'w20')}" if name else ""
    last = view.last_job
    job = '<span class="neutral">none yet</span>'
    if last is not None:
        job = status_badge(last.status)
        failure = view.last_failure
        if failure is not None and failure.job_id == last.job_id and failure.error_code:
            job += f'<br><span class="small">{breakable(failure.error_code)}</span>'
    running = sum(view.in_progress.values())
    return (
        f'<tr class="row-{status_class(target.status)}">'
        f"<td>{label}{ident}</td>"
        f"<td>{shown(key.target_type)}</td><td>{shown(key.direction)}</td>"
        f"<td>{cut(target.instance_id, 'w16')}</td>"
        f"<td>{job}</td>"
        f"<td class='nw'>{ago(view.last_job_end, now, never='-')}</td>"
        f"<td class='nw'>{ago(view.last_success_end, now)}</td>"
        f"<td>{running or ''}</td>"
        "</tr>"
    )


def _no_targets(snapshot: Snapshot) -> str:
    views = snapshot.instances.values()
    if not any(view.polled for view in views):
        why = f"the first poll has not finished yet. This page reloads every {REFRESH_SECONDS} s."
    elif not any(view.up for view in views):
        why = "no poll has succeeded yet; the instances' last errors are above."
    else:
        why = "no synchronization job has been read yet. A target is listed from its first job on."
    return f'<p class="empty" id="no-targets">No targets: {why}</p>\n'


def _status_summary(targets: list[_Target]) -> str:
    counts: dict[str, int] = {}
    for target in targets:
        counts[target.status] = counts.get(target.status, 0) + 1
    parts = []
    for status in ("failed", "partial_success", "success"):
        if counts.get(status):
            href = html.escape("/?" + urlencode({"status": status}))
            parts.append(f'<a class="{status_class(status)}" href="{href}">{counts[status]} {status}</a>')
    return " &middot; ".join(parts)


def _filter_form(query: TargetQuery, shown_count: int, matched: int, total: int) -> str:
    chosen = ",".join(sorted(query.statuses))
    choices = [("", "any last status"), ("failed,partial_success", "failed or partial_success")]
    choices += [(status, status) for status in FINAL_STATUSES]
    if chosen not in {value for value, _ in choices}:
        choices.append((chosen, chosen))
    options = "".join(
        f'<option value="{html.escape(value)}"{" selected" if value == chosen else ""}>{html.escape(label)}</option>'
        for value, label in choices
    )
    counted = f"{matched} of {total} targets" if query.active else f"{total} targets"
    if shown_count < matched:
        counted += f", the first {shown_count} shown: narrow the filter to see the others"
    clear = ' <a href="/">Clear</a>' if query.active else ""
    return (
        '<form method="get" action="/" role="search">'
        f'<label>Filter <input type="text" name="q" value="{attribute(query.text)}" '
        f'maxlength="{MAX_QUERY_CHARACTERS}" placeholder="name, id, type, direction or status"></label>'
        f'<label>Last job <select name="status">{options}</select></label>'
        f'<button type="submit">Filter</button>{clear}<span class="note" id="count">{counted}</span></form>\n'
    )


def landing_page(
    snapshot: Snapshot,
    *,
    telemetry_path: str = "/metrics",
    shard: Shard | None = None,
    context: PageContext | None = None,
    query: TargetQuery | None = None,
    poll_intervals: Mapping[str, float] | None = None,
    state_path: str | None = None,
) -> str:
    context = context or PageContext()
    query = query or TargetQuery()
    now = snapshot.created
    metrics = html.escape(telemetry_path)
    everything = _targets(snapshot)
    matched = sorted((t for t in everything if query.matches(t.status, *t.searched)), key=lambda t: t.order)
    rows = [_target_row(target, now) for target in matched[:MAX_ROWS]]
    sharding = ""
    if shard is not None and shard.count > 1:
        sharding = (
            f'<p class="note" id="shard">Shard {shard.index} of {shard.count} (0-based): this replica polls the '
            f"{len(snapshot.instances)} instance(s) below; the other shards poll the rest.</p>\n"
        )
    if snapshot.instances:
        instances = (
            '<table id="instances"><tr><th>Instance ID</th><th>Region</th><th>Account</th><th>Poll status</th>'
            "<th>Polled</th><th>Last successful poll</th><th>Last error</th></tr>\n"
            + "\n".join(_instance_rows(snapshot, context, poll_intervals or {}))
            + "</table>\n"
        )
    else:
        instances = (
            '<p class="empty" id="no-instances">No instances: this replica polls none. Name them with '
            "IDAAS_EXPORTER_INSTANCE_IDS (--instance-ids) or the config file's <code>instances</code>; with shards, "
            "the other replicas poll them.</p>\n"
        )
    if not everything:
        targets = _no_targets(snapshot) if snapshot.instances else ""
    else:
        targets = _filter_form(query, len(rows), len(matched), len(everything))
        if rows:
            targets += (
                '<table id="targets"><tr><th>Target (jobs)</th><th>Type</th><th>Direction</th><th>Instance ID</th>'
                "<th>Last job</th><th>Finished</th><th>Last success</th><th>Running</th></tr>\n"
                + "\n".join(rows)
                + "</table>\n"
            )
        else:
            targets += '<p class="empty" id="no-match">No target matches the filter.</p>\n'
    state = (
        f"state file <span class='id'>{shown(state_path)}</span>"
        if state_path
        else "state in memory only (state_path is empty): counts start afresh at each start"
    )
    docs = html.escape(context.docs_url)
    runbooks = html.escape(docs_page(context.docs_url, "alerts.md"))
    return f"""{head("IDaaS sync exporter")}<body>
{demo_banner(context)}<h1>IDaaS sync exporter</h1>
<nav><a href="{metrics}">Metrics</a> &middot; <a href="/jobs">Recent jobs</a> &middot;
<a href="/jobs?status=failed%2Cpartial_success">Failed jobs</a> &middot; <a href="/healthz">/healthz</a> &middot;
<a href="/readyz">/readyz</a> &middot; <a href="{docs}">Documentation</a> &middot;
<a href="{runbooks}">Alert runbooks</a></nav>
<h2>Instances ({len(snapshot.instances)})</h2>
{sharding}{instances}<p class="note" id="state">{state}</p>
<h2>Targets ({len(everything)}) <span class="small">{_status_summary(everything)}</span></h2>
{targets}<footer>Version {html.escape(__version__)} &middot; data as of {utc(now)} &middot;
reloads every {REFRESH_SECONDS} s &middot; failed targets first</footer>
</body></html>
"""
