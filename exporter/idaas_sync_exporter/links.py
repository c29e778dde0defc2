"""Where the project and its documentation live, and the check of a documentation base URL.

The documentation base is a setting (``docs_url`` of the exporter for its pages, ``docs_url`` of the
rules config for runbook links) so that a mirror, a fork or an internal Git server can point both at
its own copy; both default to :data:`DOCS_URL`.
"""

from __future__ import annotations

import re

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
