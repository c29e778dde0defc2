"""Structured logging: one line per event, JSON or logfmt.

Fields passed with ``extra=`` become keys of the line. Values are rendered with
``str``; callers pass ids and counts, never credentials, and every secret type
in this project renders as ``**********``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from idaas_sync_exporter.text import escape_invisible

# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    try:
        message = record.getMessage()
    except Exception:  # wrong %-arguments: keep the event rather than lose it to a logging error
        message = f"{_text(record.msg)} {_text(record.args)}"
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": message,
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        fields["error"] = f"{type(exc).__name__}: {_text(exc)}"
    return fields


def _text(value: Any) -> str:
    """``str(value)``, or a placeholder when its ``__str__`` fails: a log line must never be lost to it."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        try:
            # NaN and Infinity are not JSON (jq refuses the line): such a line is written with text values.
            line = json.dumps(fields, default=_text, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            line = json.dumps({key: _text(value) for key, value in fields.items()}, ensure_ascii=False)
        # ensure_ascii=False keeps names readable; json escapes only U+0000-U+001F, so the rest
        # (DEL, C1 with NEL, U+2028, U+2029, format characters) is escaped here, lone surrogates replaced.
        # Outside strings a JSON line is ASCII, so every escape lands inside a string.
        return escape_invisible(line)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


def _logfmt_value(value: Any) -> str:
    text = "" if value is None else _text(value)
    # Python's isprintable is False for every character that must be escaped (and for spaces other than ' ').
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    escaped = escape_invisible(text.replace("\\", "\\\\").replace('"', '\\"'))
    return f'"{escaped}"'


LOG_FORMATS = ("logfmt", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Per-request chatter from libraries would drown the exporter's own events.
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
