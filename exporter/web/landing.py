"""The landing page at ``/``: what the exporter polls, how that went, and each target's last job."""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import UTC, datetime

from exporter import PROJECT_URL, __version__
from exporter.metrics.snapshot import Snapshot
from exporter.shards import Shard

DOCS_URL = f"{PROJECT_URL}/blob/main/README.md"
# Seconds between reloads: the page shows state that changes once per poll, and a reload costs one
# render of this page (no API call). A <meta> refresh needs no script, so the page stays usable
# under a Content-Security-Policy that forbids scripts.
REFRESH_SECONDS = 30

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
td,th{padding:.25em .8em;text-align:left;border-bottom:1px solid #ddd}
th{background:#f4f4f4}
.id{color:#666;font-family:monospace;font-size:.9em}
.up{color:#1a7f37}.down{color:#cf222e}.starting{color:#9a6700}
footer,.note{color:#666;font-size:.9em}
.esc{color:#9a6700;background:#fff8c5;font-family:monospace}
"""

# Characters that draw nothing or change how their neighbours are drawn: controls, format characters
# (the bidi overrides and isolates that make "abc\u202efdp.exe" look like "abcexe.pdf", zero-width
# joiners and spaces, soft hyphens), line and paragraph separators, lone surrogates (which UTF-8 cannot
# carry) and unassigned code points (which a later Unicode may make any of these).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
# Hangul fillers are letters to Unicode, yet draw nothing: a favourite for names that look empty.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_NOT_ASCII = re.compile(r"[^ -~]")


def shown(text: str) -> str:
    """Text from outside (names, ids, statuses, errors) as HTML for both pages.

    HTML-escaped, and each invisible character shown as its ``\\uXXXX`` escape in a highlighted span
    titled with its code point and name, so it can be told from the same six characters typed.
    """
    escaped = html.escape(text)
    if escaped.isprintable() and _INVISIBLE_LETTERS.isdisjoint(escaped):
        return escaped
    return _NOT_ASCII.sub(_show_invisible, escaped)


def _show_invisible(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _INVISIBLE_LETTERS:
        return char
    code = ord(char)
    escape = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    title = f"U+{code:04X} {unicodedata.name(char, '')}".rstrip()
    return f'<span class="esc" title="{title}">{escape}</span>'


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cells(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _instance_rows(snapshot: Snapshot) -> list[str]:
    rows = []
    for instance_id, view in snapshot.instances.items():
        status = "up" if view.up else ("down" if view.polled else "starting")
        rows.append(
            _cells(
                f'<span class="id">{shown(instance_id)}</span>',
                f'<span class="{status}">{status}</span>',
                _when(view.last_success),
                shown(view.last_error or ""),
            )
        )
    return rows


def _target_rows(snapshot: Snapshot) -> list[str]:
    rows = []
    for instance_id, view in snapshot.instances.items():
        for key, target in sorted(view.targets.items()):
            info = view.target_info.get((key.target_type, key.target_id))
            name = shown(info.name) if info else ""
            rows.append(
                _cells(
                    f'<span class="id">{shown(instance_id)}</span>',
                    shown(key.target_type),
                    f'{name} <span class="id">{shown(key.target_id)}</span>',
                    shown(key.direction),
                    shown(target.last_job.status if target.last_job else "-"),
                    _when(target.last_success_end),
                    str(sum(target.in_progress.values())),
                )
            )
    return rows


def landing_page(snapshot: Snapshot, *, telemetry_path: str = "/metrics", shard: Shard | None = None) -> str:
    metrics = html.escape(telemetry_path)
    targets = _target_rows(snapshot)
    sharding = ""
    if shard is not None and shard.count > 1:
        sharding = (
            f'<p class="note" id="shard">Shard {shard.index} of {shard.count} (0-based): this replica polls the '
            f"{len(snapshot.instances)} instance(s) below; the other shards poll the rest.</p>\n"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>IDaaS sync exporter</title>
<style>{_STYLE}</style></head>
<body><h1>IDaaS sync exporter</h1>
<nav><a href="{metrics}">Metrics</a> &middot; <a href="/jobs">Recent jobs</a> &middot;
<a href="/jobs?status=failed%2Cpartial_success">Failed jobs</a> &middot; <a href="/healthz">/healthz</a> &middot;
<a href="/readyz">/readyz</a> &middot; <a href="{DOCS_URL}">Documentation</a></nav>
<h2>Instances</h2>
{sharding}<table id="instances">
<tr><th>Instance ID</th><th>Poll status</th><th>Last successful poll</th><th>Last error</th></tr>
{"".join(_instance_rows(snapshot))}</table>
<h2>Targets ({len(targets)})</h2>
<table id="targets"><tr><th>Instance ID</th><th>Type</th><th>Target (name and ID)</th><th>Direction</th>
<th>Last job</th><th>Last success</th><th>In progress</th></tr>
{"".join(targets)}</table>
<footer>Version {html.escape(__version__)} &middot; refreshes every {REFRESH_SECONDS} s &middot;
shown {_when(snapshot.created)}</footer>
</body></html>
"""
