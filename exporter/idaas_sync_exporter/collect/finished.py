"""What is said about one finished job: the log event written once per counted job, and the jobs API.

Both use the same field names, so a query written against the log store (Loki, SLS,
Elasticsearch) reads the same as one against ``/api/v1/jobs``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from idaas_sync_exporter.collect.counting import FinishedJob
from idaas_sync_exporter.collect.targets import TargetInfo
from idaas_sync_exporter.pacing import paced

log = logging.getLogger("idaas_sync_exporter.jobs")
EVENT_MESSAGE = "sync job finished"


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


def console_link(pattern: str, instance_id: str, job: FinishedJob) -> str:
    values = {
        "instance_id": instance_id,
        "job_id": job.job_id,
        "target_type": job.target.target_type,
        "target_id": job.target.target_id,
        "direction": job.target.direction,
    }
    return pattern.format_map({name: quote(value, safe="") for name, value in values.items()})
