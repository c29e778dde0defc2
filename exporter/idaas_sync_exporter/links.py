"""Links the exporter writes: where its documentation lives, and each job's link to the IDaaS console.

The documentation base is a setting (``docs_url`` of the exporter for its pages, ``docs_url`` of the
rules config for runbook links) so that a mirror, a fork or an internal Git server can point both at
its own copy; both default to :data:`DOCS_URL`.
"""

from __future__ import annotations

import re
import string

PROJECT_URL = "https://github.com/idaas-sync-exporter/idaas-sync-exporter"
DOCS_URL = f"{PROJECT_URL}/blob/main/docs"

# http(s), a host, an optional port and path; no query or fragment, since pages are appended to it.
_DOCS_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!$&'()*+,;=:@-]*)*")
_MAX_LENGTH = 512


def check_docs_url(value: str) -> str:
    """``value`` without a trailing slash; ValueError naming the rule (never the value) if it is not a base URL."""
    if len(value) > _MAX_LENGTH or not _DOCS_URL.fullmatch(value):
        raise ValueError(
            f"must be an http(s) URL of the folder that holds the docs pages, without query or fragment "
            f"(at most {_MAX_LENGTH} characters), such as {DOCS_URL}"
        )
    return value.rstrip("/")


def docs_page(base: str, page: str, anchor: str = "") -> str:
    """The link to ``page`` (such as ``alerts.md``) under the documentation base ``base``."""
    return f"{base}/{page}" + (f"#{anchor}" if anchor else "")


# The IDaaS console's entry page (its instance list); see docs/configuration.md for a job-level pattern.
DEFAULT_CONSOLE_URL = "https://yundun.console.aliyun.com/?p=idaas"
CONSOLE_PLACEHOLDERS = ("instance_id", "job_id", "target_type", "target_id", "direction")


# The scheme and host of a console link come from the pattern alone: placeholders may only follow
# the host (in the path, query or fragment), so a job or target id can never choose where it leads.
_FIXED_ORIGIN = re.compile(r"https://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Far above any console URL; the patterns are repeated on every row of /jobs and /api/v1/jobs.
MAX_CONSOLE_URL_LENGTH = 2048
_PATTERN_USAGE = "such as https://console.example/idaas/{instance_id}/jobs/{job_id}"


def check_console_url(pattern: str) -> str:
    """``pattern`` when it is an https URL with a fixed host and only known ``{placeholders}``; ValueError otherwise.

    The messages do not quote the pattern: the settings' own message does, cut to a bounded length.
    """
    if len(pattern) > MAX_CONSOLE_URL_LENGTH:
        raise ValueError(
            f"is {len(pattern)} characters long; a console link pattern may have at most {MAX_CONSOLE_URL_LENGTH}"
        )
    if any(character.isspace() or not character.isprintable() for character in pattern):
        raise ValueError(f"must not contain spaces or control characters; write a URL {_PATTERN_USAGE}")
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"has a stray brace ({exc}); write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in CONSOLE_PLACEHOLDERS:
            raise ValueError(
                f"has the unknown placeholder {{{name[:40]}}}; use {', '.join(CONSOLE_PLACEHOLDERS)} in braces"
            )
        if spec or conversion:
            # A format spec such as {job_id:>30000000} would make every link megabytes long.
            raise ValueError(f"has {{{name}}} with a format spec or conversion; write the placeholder as {{{name}}}")
    placeholders = any(name is not None for _, name, _, _ in parts)
    before_first = parts[0][0] if parts and placeholders else pattern
    origin = _FIXED_ORIGIN.match(before_first)
    rest = before_first[origin.end() :] if origin else ""
    # The host ends where the path, query or fragment begins; a placeholder right after it would extend it.
    host_is_fixed = rest[:1] in ("/", "?", "#") or (not rest and not placeholders)
    if origin is None or not host_is_fixed:
        raise ValueError(f"must be an https:// URL whose host is written out before any placeholder, {_PATTERN_USAGE}")
    return pattern
