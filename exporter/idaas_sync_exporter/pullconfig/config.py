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

import itertools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from idaas_sync_exporter.api.errors import shown_text
from idaas_sync_exporter.api.models import MAX_CRON_CHARS, MAX_PLAUSIBLE_COUNT, InFile, UdPullConfiguration
from idaas_sync_exporter.validation import Document, Loc, describe, document_of

# IDaaS evaluates schedules in China Standard Time.
SCHEDULE_TZ = timezone(timedelta(hours=8))
_FILE_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


def file_model(wire: type[BaseModel]) -> type[BaseModel]:
    """The strict model of the file: the fields of ``wire`` that carry an :class:`InFile` type, by wire name."""
    fields: dict[str, Any] = {}
    for name, info in wire.model_fields.items():
        nested = _nested_model(info.annotation)
        in_file = next((item.type for item in info.metadata if isinstance(item, InFile)), None)
        if nested is not None:
            fields[name] = (file_model(nested) | None, Field(None, alias=info.alias))
        elif in_file is not None:
            fields[name] = (in_file | None, Field(None, alias=info.alias))
    model: type[BaseModel] = create_model(f"{wire.__name__}File", __config__=_FILE_CONFIG, **fields)
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in getattr(annotation, "__args__", ()) if (found := _nested_model(arg))), None)


PullConfigFile = file_model(UdPullConfiguration)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The keys of the file: wire name -> the keys of a nested mapping, or ``"value"``."""
    schema: dict[str, Any] = {}
    for info in model.model_fields.values():
        nested = _nested_model(info.annotation)
        schema[str(info.alias)] = schema_of(nested) if nested is not None else "value"
    return schema


SCHEMA: dict[str, Any] = schema_of(PullConfigFile)
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


# -- schedules ------------------------------------------------------------------

_QUARTZ_DOW = {str(n): str(n - 1) for n in range(1, 8)}  # Quartz 1=SUN..7=SAT, cron 0=SUN..6=SAT


def quartz_to_croniter(expression: str) -> str:
    """A Quartz expression (seconds first, ``?``, optional year) as a croniter 6-field expression."""
    # The expression may come from the API: errors quote it cut and escaped, never whole.
    shown = repr(shown_text(expression, 80))
    if len(expression) > MAX_CRON_CHARS:
        raise ValueError(f"{shown} is longer than {MAX_CRON_CHARS} characters")
    fields = expression.split()
    if len(fields) == 7:
        if fields[6] not in ("*", "?"):
            raise ValueError(f"{shown}: a year field other than * is not supported")
        fields = fields[:6]
    if len(fields) != 6:
        raise ValueError(f"{shown} must have 6 fields (seconds minutes hours day month weekday)")
    fields = ["*" if f == "?" else f for f in fields]
    fields[5] = re.sub(r"(?<![A-Za-z#/])([1-7])(?![0-9])", lambda m: _QUARTZ_DOW[m.group(1)], fields[5])
    converted = " ".join(fields)
    if not croniter.is_valid(converted, second_at_beginning=True):
        raise ValueError(f"{shown} is not a valid cron expression")
    return converted


def max_interval_seconds(periodic: Mapping[str, Any] | None, *, now: float | None = None) -> float | None:
    """The longest gap between two scheduled runs, or ``None`` when there is no schedule."""
    if not periodic:
        return None
    kind = periodic.get("PeriodicSyncType")
    if kind == "time":
        raw = periodic.get("PeriodicSyncTimes")
        given = [h for h in (raw if isinstance(raw, list) else [raw]) if h is not None]
        # An hour past 23 is no schedule, and one of 400 digits would overflow the float below.
        if any(isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23 for h in given):
            raise ValueError("PeriodicSyncTimes must be hours 0-23")
        hours = sorted(set(given))
        if not hours:
            return None
        gaps = [(b - a) * 3600 for a, b in itertools.pairwise(hours)]
        gaps.append((24 - hours[-1] + hours[0]) * 3600)
        return float(max(gaps))
    if kind == "cron" and periodic.get("PeriodicSyncCron"):
        expression = quartz_to_croniter(str(periodic["PeriodicSyncCron"]))
        start = datetime.fromtimestamp(now if now is not None else datetime.now(UTC).timestamp(), SCHEDULE_TZ)
        return _longest_cron_gap(expression, start) or None
    return None


# Runs on the event loop at every target refresh: the work is bounded by days, not by runs,
# so a per-second schedule costs what a daily one does (walking its runs took a third of a second).
_MAX_DAYS_WALKED = 400


def _longest_cron_gap(expression: str, start: datetime) -> float:
    """The longest gap between runs of a croniter 6-field ``expression`` (seconds first), from a year of runs.

    Cron fields combine freely, so the times of day are the same on every day the schedule runs:
    the gaps within a day follow from the second, minute and hour sets, and those between days
    from the days it runs, walked at one step per day.
    """
    *_, day_of_month, month, day_of_week = expression.split()
    expanded = croniter(expression, start, second_at_beginning=True).expanded
    seconds, minutes, hours = (_values(expanded[i], size) for i, size in ((5, 60), (0, 60), (1, 24)))
    first, last = seconds[0], seconds[-1]
    longest = float(_widest(seconds, 1, 0))
    for values, unit in ((minutes, 60), (hours, 3600)):
        longest = max(longest, float(_widest(values, unit, last - first)))
        first, last = values[0] * unit + first, values[-1] * unit + last
    days = croniter(f"0 0 0 {day_of_month} {month} {day_of_week}", start, second_at_beginning=True)
    # A year of days covers weekly, monthly and day-of-week patterns.
    horizon = start + timedelta(days=366)
    previous: datetime = days.get_next(datetime)
    for _ in range(_MAX_DAYS_WALKED):
        moment: datetime = days.get_next(datetime)
        longest = max(longest, (moment - previous).total_seconds() - (last - first))
        if moment > horizon:
            break
        previous = moment
    return longest


def _values(field: list[Any], size: int) -> list[int]:
    if field == ["*"]:
        return list(range(size))
    values = sorted({value for value in field if isinstance(value, int) and 0 <= value < size})
    if len(values) != len(field) or not values:
        raise ValueError("a seconds, minutes or hours field is not a list of plain values")
    return values


def _widest(values: list[int], unit: int, inner_span: int) -> int:
    """The longest gap between neighbouring ``values`` (each ``unit`` seconds, each running for ``inner_span``)."""
    return max((b - a) * unit - inner_span for a, b in itertools.pairwise(values)) if len(values) > 1 else 0


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
