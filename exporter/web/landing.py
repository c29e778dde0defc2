"""The landing page at ``/``: what the exporter polls, how that went, and each target's last job."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from exporter import __version__
from exporter.metrics.snapshot import Snapshot


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def landing_page(snapshot: Snapshot) -> str:
    rows = []
    for instance_id, view in snapshot.instances.items():
        status = "up" if view.up else ("down" if view.polled else "starting")
        rows.append(
            f"<tr><td>{html.escape(instance_id)}</td><td>{status}</td><td>{_when(view.last_success)}</td>"
            f"<td>{html.escape(view.last_error or '')}</td></tr>"
        )
    targets = []
    for instance_id, view in snapshot.instances.items():
        for key, target in sorted(view.targets.items()):
            info = view.target_info.get((key.target_type, key.target_id))
            name = info.name if info else key.target_id
            last = target.last_job.status if target.last_job else "-"
            running = sum(target.in_progress.values())
            targets.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(cell))}</td>"
                    for cell in (
                        instance_id,
                        key.target_type,
                        name,
                        key.direction,
                        last,
                        _when(target.last_success_end),
                        running,
                    )
                )
                + "</tr>"
            )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>IDaaS sync exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>IDaaS sync exporter</h1>
<p>Version {html.escape(__version__)} &middot; <a href="/metrics">/metrics</a> &middot;
<a href="/healthz">/healthz</a> &middot; <a href="/readyz">/readyz</a></p>
<h2>Instances</h2>
<table><tr><th>Instance</th><th>Poll status</th><th>Last successful poll</th><th>Last error</th></tr>
{"".join(rows)}</table>
<h2>Targets</h2>
<table><tr><th>Instance</th><th>Type</th><th>Target</th><th>Direction</th><th>Last job</th>
<th>Last success</th><th>In progress</th></tr>
{"".join(targets)}</table>
</body></html>
"""
