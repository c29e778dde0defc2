"""What is said about one finished job: the log event written once per counted job, and the jobs API.

Both use the same field names, so a query written against the log store (Loki, SLS,
Elasticsearch) reads the same as one against ``/api/v1/jobs``.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from idaas_sync_exporter.collect.counting import FinishedJob
from idaas_sync_exporter.collect.targets import TargetInfo
from idaas_sync_exporter.pacing import paced

log = logging.getLogger("idaas_sync_exporter.jobs")
EVENT_MESSAGE = "sync job finished"
# The IDaaS console's entry page (its instance list); see docs/configuration.md for a job-level pattern.
DEFAULT_CONSOLE_URL = "https://yundun.console.aliyun.com/?p=idaas"
CONSOLE_PLACEHOLDERS = ("instance_id", "job_id", "target_type", "target_id", "direction")


def iso_time(millis: int | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, as log stores parse it; None stays None."""
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(instance_id: str, job: FinishedJob, target_name: str | None) -> dict[str, Any]:
    """The job's fields, counts nested by object type, action and result (non-zero ones only)."""
    objects: dict[str, dict[str, dict[str, int]]] = {}
    for (object_type, action, result), count in job.objects:
        objects.setdefault(object_type, {}).setdefault(action, {})[result] = count
    duration = None
    if job.end_ms is not None and job.end_ms >= job.start_ms:
        duration = (job.end_ms - job.start_ms) / 1000
    return {
        "instance_id": instance_id,
        "target_type": job.target.target_type,
        "target_id": job.target.target_id,
        "target_name": target_name,
        "direction": job.target.direction,
        "job_id": job.job_id,
        "trigger_type": job.trigger_type,
        "status": job.status,
        "start": iso_time(job.start_ms),
        "end": iso_time(job.end_ms),
        "duration_seconds": duration,
        "error_code": job.error_code,
        "objects": objects,
    }


def event_fields(instance_id: str, job: FinishedJob, target_name: str | None) -> dict[str, Any]:
    """:func:`describe` with the counts as flat keys (``objects_user_deleted_success=3``), for logfmt."""
    fields = describe(instance_id, job, target_name)
    del fields["objects"]
    for (object_type, action, result), count in job.objects:
        fields[f"objects_{object_type}_{action}_{result}"] = count
    return fields


# Events written between returns to the event loop: a poll after a burst counts thousands of jobs,
# and writing all their lines at once held scrapes for over 100 ms in bench/run.py.
EVENTS_PER_SLICE = 25


async def write_events(
    instance_id: str, jobs: tuple[FinishedJob, ...], names: Mapping[tuple[str, str], TargetInfo]
) -> None:
    """One log event per job, in the order they finished; called after the poll that counted them committed."""
    async for job in paced(sorted(jobs, key=lambda finished: finished.order), EVENTS_PER_SLICE):
        named = names.get((job.target.target_type, job.target.target_id))
        log.info(EVENT_MESSAGE, extra=event_fields(instance_id, job, named.name if named is not None else None))


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


def console_link(pattern: str, instance_id: str, job: FinishedJob) -> str:
    values = {
        "instance_id": instance_id,
        "job_id": job.job_id,
        "target_type": job.target.target_type,
        "target_id": job.target.target_id,
        "direction": job.target.direction,
    }
    return pattern.format_map({name: quote(value, safe="") for name, value in values.items()})
