"""What the two HTML pages (``/`` and ``/jobs``) share: style, escaping of outside text, times, statuses.

The pages carry no script, so they work under a Content-Security-Policy that forbids scripts: times
are rendered relative to the snapshot on the server, with the absolute time in a ``title``, and
filters are plain GET forms.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from idaas_sync_exporter.config.tenancy import PlannedInstance
from idaas_sync_exporter.links import DOCS_URL


class QueryError(ValueError):
    """A query parameter of a page is wrong; the message is one line naming it and the fix."""


# Seconds between reloads: the pages show state that changes once per poll, and a reload costs one
# render (no API call). A <meta> refresh needs no script.
REFRESH_SECONDS = 30

# Laid out for 1280 px without horizontal scrolling: long ids are cut with an ellipsis (the full
# value stays in the text, for search and copy, and in the title), times and ids never break. One
# constant sheet and no style attributes, so a policy may allow it by its hash instead of 'unsafe-inline'.
STYLE = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 1.5em;color:#1f2328}
h1{font-size:1.4em;margin:.2em 0 .4em}h2{font-size:1.15em;margin:1.2em 0 .4em}
a{color:#0969da}nav{margin-bottom:.8em}
table{border-collapse:collapse;width:100%;margin-bottom:.6em}
td,th{padding:.3em .5em;text-align:left;border-bottom:1px solid #d8dee4;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
tr.row-bad{background:#fff5f5}tr.row-warn{background:#fffbeb}
.id{color:#59636e;font-family:ui-monospace,monospace;font-size:.88em}
.cut{display:inline-block;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
vertical-align:bottom}
.w9{max-width:9em}.w12{max-width:12em}.w16{max-width:16em}.w20{max-width:20em}
@media (min-width:1600px){.w9{max-width:16em}.w12{max-width:20em}}
.nw,time{white-space:nowrap}
.small,.note,footer{color:#59636e;font-size:.88em}
.st{display:inline-block;padding:0 .45em;border-radius:1em;font-size:.9em;font-weight:600;white-space:nowrap;
border:1px solid currentColor}
.ot{font-weight:600}.objects{min-width:24em}.err{min-width:11em}.brk,.objects,.err{overflow-wrap:anywhere}
.ok{color:#1a7f37}.bad{color:#cf222e}.warn{color:#9a6700}.neutral{color:#59636e}
.banner{background:#ddf4ff;border:1px solid #54aeff;padding:.5em .8em;border-radius:6px;margin-bottom:.8em}
.empty{background:#f6f8fa;border:1px dashed #d8dee4;padding:.8em;border-radius:6px}
form{margin:.6em 0;display:flex;gap:.6em;align-items:center;flex-wrap:wrap}
input[type=text]{width:22em;max-width:100%}
.esc{color:#9a6700;background:#fff8c5;font-family:monospace}
footer{margin-top:1.5em}
"""

# Characters that draw nothing or change how their neighbours are drawn: controls, format characters
# (the bidi overrides and isolates that make "abc\u202efdp.exe" look like "abcexe.pdf", zero-width
# joiners and spaces, soft hyphens), line and paragraph separators, lone surrogates (which UTF-8 cannot
# carry) and unassigned code points (which a later Unicode may make any of these).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
# Hangul fillers are letters to Unicode, yet draw nothing: a favourite for names that look empty.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_NOT_ASCII = re.compile(r"[^ -~]")


def is_invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES or char in _INVISIBLE_LETTERS


def has_invisible(text: str) -> bool:
    return any(map(is_invisible, text))


def _maybe_invisible(text: str) -> bool:
    # isprintable() runs in C and is False for every invisible character (and for some visible
    # separators such as U+00A0): the common all-visible text is passed over in one call.
    return not (text.isprintable() and _INVISIBLE_LETTERS.isdisjoint(text))


def _escape_of(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(text: str) -> str:
    """Text from outside (names, ids, statuses, errors) as HTML for both pages.

    HTML-escaped, and each invisible character shown as its ``\\uXXXX`` escape in a highlighted span
    titled with its code point and name, so it can be told from the same six characters typed.
    """
    escaped = html.escape(text)
    if not _maybe_invisible(escaped):
        return escaped
    return _NOT_ASCII.sub(_show_invisible, escaped)


def _show_invisible(match: re.Match[str]) -> str:
    char = match.group()
    if not is_invisible(char):
        return char
    title = f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()
    return f'<span class="esc" title="{title}">{_escape_of(char)}</span>'


def attribute(text: str) -> str:
    """Text from outside as an attribute value (a tooltip): escaped, invisible characters as plain escapes.

    A tooltip draws text raw, so a bidi override there would spoof as well as in the page.
    """
    if _maybe_invisible(text):
        text = _NOT_ASCII.sub(lambda m: _escape_of(m.group()) if is_invisible(m.group()) else m.group(), text)
    return html.escape(text, quote=True)


def cut(text: str, width: str, css: str = "id") -> str:
    """``text`` on one line, cut with an ellipsis beyond ``width`` (a class: w9 to w20, in em); whole in the title."""
    return f'<span class="cut {width} {css}" title="{attribute(text)}">{shown(text)}</span>'


def breakable(code: str) -> str:
    """An error code such as ``IdentityProvider.ConnectionFailed``, allowed to break after its dots only."""
    return ".<wbr>".join(shown(part) for part in code.split("."))


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(seconds: float) -> str:
    """A span of time as a person says it: ``45 s``, ``3 min``, ``5 h``, ``2 d``."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def ago(ts: float | None, now: float, *, never: str = "never") -> str:
    """``ts`` relative to ``now`` (the snapshot's time), the absolute UTC time in the title."""
    if ts is None:
        return f'<span class="neutral">{never}</span>'
    delta = now - ts
    # A time after the snapshot's is possible (the API's clock ahead of the exporter's host): said as such.
    text = "just now" if abs(delta) < 1 else f"{relative(delta)} ago" if delta > 0 else f"in {relative(delta)}"
    iso = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}" title="{utc(ts)}">{text}</time>'


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours >= 2 else f"{hours * 60 + minutes} min"


# The colour of a job status; anything else (running, pending, a status this release does not know)
# stays neutral. The class comes from this table, never from the status text itself.
_STATUS_CLASS = {"success": "ok", "failed": "bad", "partial_success": "warn"}


def status_class(status: str) -> str:
    return _STATUS_CLASS.get(status, "neutral")


def status_badge(status: str) -> str:
    return f'<span class="st {status_class(status)}">{shown(status)}</span>'


@dataclass(frozen=True, slots=True)
class PageContext:
    """What the pages say beyond the snapshot: where the docs are, which instances are polled where, the demo."""

    docs_url: str = DOCS_URL
    instances: Sequence[PlannedInstance] = ()
    # Simulated seconds per second when running ``serve --demo``; None otherwise.
    demo_speed: float | None = None

    def instance(self, instance_id: str) -> PlannedInstance | None:
        return next((i for i in self.instances if i.instance_id == instance_id), None)


def demo_banner(context: PageContext) -> str:
    if context.demo_speed is None:
        return ""
    pace = f" It runs {context.demo_speed:g}× faster than real time." if context.demo_speed != 1 else ""
    return (
        '<p class="banner" id="demo"><strong>Demo:</strong> simulated data from the built-in IDaaS API simulator'
        f" (<code>serve --demo</code>), not a real tenant.{pace}</p>\n"
    )


def head(title: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
"""
