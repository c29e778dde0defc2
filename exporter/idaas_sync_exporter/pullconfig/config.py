"""Inbound-sync (UD pull) configuration: validation as the API document states, and schedule analysis.

The file format of ``pull-config set`` is the API document's own terms::

    IncrementalCallbackStatus: enabled
    PeriodicSyncStatus: enabled
    PeriodicSyncConfig:
      PeriodicSyncType: cron
      PeriodicSyncCron: "0 45 1 * * ?"
    PullProtectedRule:
      UserDeletedThreshold: 30
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from idaas_sync_exporter.api.models import MAX_CRON_CHARS, MAX_PLAUSIBLE_COUNT
from idaas_sync_exporter.api.pullfile import SCHEMA, PullConfigFile
from idaas_sync_exporter.api.schedule import quartz_to_croniter
from idaas_sync_exporter.config.validation import Document, Loc, describe, document_of

# Fields whose value a problem quotes, as the file writes them: choices and numbers, never free text
# (a custom LDAP filter may hold anything).
_QUOTED = frozenset(
    {"IncrementalCallbackStatus", "GroupSyncStatus", "PeriodicSyncStatus", "PeriodicSyncType", "PeriodicSyncTimes"}
    | set(SCHEMA["PullProtectedRule"])
)


class PullConfigError(ValueError):
    """One or more problems with a configuration file; ``problems`` names each by its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _quoted(path: Loc, error: ErrorDetails) -> Loc | None:
    for index, step in enumerate(path):
        if step in _QUOTED:
            return path[: index + 1]
    return None


def _explain(path: Loc, error: ErrorDetails) -> str | None:
    if error["type"] == "extra_forbidden":
        return None
    if not path and error["type"] == "model_type":
        return "the file must be a mapping of the API's parameter names to values"
    if "PeriodicSyncTimes" in path:
        return "must be a list of hours 0-23"
    if path[:1] == ("PullProtectedRule",) and len(path) > 1:
        return f"must be a non-negative integer, at most {MAX_PLAUSIBLE_COUNT}"
    return None


def validate(config: Any, document: Document | None = None) -> dict[str, Any]:
    """Check ``config`` against the API document; returns a cleaned copy or raises :class:`PullConfigError`.

    ``document`` is the file ``config`` was read from, for the position of each problem.
    """
    document = document if document is not None else document_of(config)
    problems: list[str] = []
    cleaned: dict[str, Any] = {}
    try:
        cleaned = PullConfigFile.model_validate(config).model_dump(by_alias=True, exclude_none=True)
    except ValidationError as exc:
        problems += describe(exc, document, model=PullConfigFile, show_value=_quoted, explain=_explain)
    if isinstance(config, Mapping):
        problems += [document.line(path, problem) for path, problem in _schedule_problems(config)]
    if problems:
        raise PullConfigError(problems)
    return cleaned


def _schedule_problems(config: Mapping[Any, Any]) -> list[tuple[Loc, str]]:
    """What the API document asks across fields: a callback status, and the schedule its type needs."""
    problems: list[tuple[Loc, str]] = []
    if config.get("IncrementalCallbackStatus") is None:
        problems.append((("IncrementalCallbackStatus",), "required (enabled or disabled)"))
    raw = config.get("PeriodicSyncConfig")
    periodic: Mapping[Any, Any] = raw if isinstance(raw, Mapping) else {}
    kind = periodic.get("PeriodicSyncType") if periodic.get("PeriodicSyncType") in ("cron", "time") else None
    where = ("PeriodicSyncConfig",)
    if kind == "cron":
        cron = periodic.get("PeriodicSyncCron")
        if not cron:
            problems.append(((*where, "PeriodicSyncCron"), "required when PeriodicSyncType is cron"))
        elif isinstance(cron, str) and len(cron) <= MAX_CRON_CHARS:  # else the model said what is wrong
            try:
                quartz_to_croniter(cron)
            except ValueError as exc:
                problems.append(((*where, "PeriodicSyncCron"), str(exc)))
    if kind == "time" and periodic.get("PeriodicSyncTimes") is None:
        problems.append(((*where, "PeriodicSyncTimes"), "required when PeriodicSyncType is time (hours 0-23)"))
    if config.get("PeriodicSyncStatus") == "enabled" and not kind:
        problems.append(((*where, "PeriodicSyncType"), "required when PeriodicSyncStatus is enabled"))
    return problems


def to_request(config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated file as SetIdentityProviderUdPullConfiguration parameters (before flattening)."""
    return {key: value for key, value in config.items() if value not in (None, {}, [])}


def from_response(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The Get response in the file format: ids dropped, empty values dropped, keys in document order."""
    result: dict[str, Any] = {}
    for key, rule in SCHEMA.items():
        value = raw.get(key)
        if value in (None, "", {}, []):
            continue
        if isinstance(rule, dict) and isinstance(value, Mapping):
            inner = {k: value[k] for k in rule if value.get(k) not in (None, "", [])}
            if "PeriodicSyncTimes" in inner and isinstance(inner["PeriodicSyncTimes"], int):
                inner["PeriodicSyncTimes"] = [inner["PeriodicSyncTimes"]]
            if inner:
                result[key] = inner
        else:
            result[key] = value
    return result
