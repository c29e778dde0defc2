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
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from croniter import croniter
from pydantic import BaseModel

from idaas_sync_exporter.api.errors import shown_text
from idaas_sync_exporter.api.models import MAX_CRON_CHARS, UdPullConfiguration
from idaas_sync_exporter.files import shown, shown_name

# IDaaS evaluates schedules in China Standard Time.
SCHEDULE_TZ = timezone(timedelta(hours=8))
STATUS_VALUES = ("enabled", "disabled")


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The file schema of ``model``: wire name -> rule, or -> the schema of a nested model."""
    schema: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        wire = field.alias or name
        nested = [
            arg for arg in typing.get_args(field.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        extra = field.json_schema_extra
        if nested:
            schema[wire] = schema_of(nested[0])
        elif isinstance(extra, dict) and isinstance(extra.get("rule"), str):
            schema[wire] = extra["rule"]
    return schema


SCHEMA: dict[str, Any] = schema_of(UdPullConfiguration)


class PullConfigError(ValueError):
    """One or more problems with a configuration file; ``problems`` names each by its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def validate(config: Any) -> dict[str, Any]:
    """Check ``config`` against the API document; returns a cleaned copy or raises :class:`PullConfigError`."""
    if not isinstance(config, Mapping):
        raise PullConfigError(["the file must be a mapping of the API's parameter names to values"])
    problems: list[str] = []
    cleaned = _walk(config, SCHEMA, "", problems)
    if not config.get("IncrementalCallbackStatus"):
        problems.append("IncrementalCallbackStatus: required (enabled or disabled)")
    periodic = cleaned.get("PeriodicSyncConfig") or {}
    kind = periodic.get("PeriodicSyncType")
    if kind == "cron":
        cron = periodic.get("PeriodicSyncCron")
        if not cron:
            problems.append("PeriodicSyncConfig.PeriodicSyncCron: required when PeriodicSyncType is cron")
        else:
            try:
                quartz_to_croniter(cron)
            except ValueError as exc:
                problems.append(f"PeriodicSyncConfig.PeriodicSyncCron: {exc}")
    raw_periodic = config.get("PeriodicSyncConfig")
    times_given = isinstance(raw_periodic, Mapping) and raw_periodic.get("PeriodicSyncTimes") is not None
    if kind == "time" and not times_given:
        problems.append("PeriodicSyncConfig.PeriodicSyncTimes: required when PeriodicSyncType is time (hours 0-23)")
    if cleaned.get("PeriodicSyncStatus") == "enabled" and not kind:
        problems.append("PeriodicSyncConfig.PeriodicSyncType: required when PeriodicSyncStatus is enabled")
    if problems:
        raise PullConfigError(problems)
    return cleaned


# Unknown keys named per mapping; the rest are counted in one line.
_MAX_UNKNOWN_KEYS_SHOWN = 5


def _walk(node: Mapping[str, Any], schema: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    unknown = 0
    for key, value in node.items():
        # Keys come from the file: named bounded and escaped, as the values below.
        path = f"{prefix}{shown_name(key)}"
        rule = schema.get(key) if isinstance(key, str) else None
        if rule is None:
            unknown += 1
            # A file of thousands of unknown keys is one mistake, not thousands of lines.
            if unknown <= _MAX_UNKNOWN_KEYS_SHOWN:
                problems.append(f"{path}: unknown key (allowed here: {', '.join(schema)})")
            elif unknown == _MAX_UNKNOWN_KEYS_SHOWN + 1:
                problems.append(f"{prefix or 'the file: '}more unknown keys left out; fix the ones above first")
            continue
        if value is None:
            continue
        if isinstance(rule, dict):
            if not isinstance(value, Mapping):
                problems.append(f"{path}: must be a mapping")
                continue
            cleaned[str(key)] = _walk(value, rule, f"{path}.", problems)
            continue
        checked = _check(rule, value, path, problems)
        if checked is not None:
            cleaned[str(key)] = checked
    return cleaned


def _check(rule: str, value: Any, path: str, problems: list[str]) -> Any:
    if rule == "status":
        if value not in STATUS_VALUES:
            problems.append(f"{path}: {shown(value)} is not one of enabled, disabled")
            return None
        return value
    if rule == "type":
        if value not in ("cron", "time"):
            problems.append(f"{path}: {shown(value)} is not one of cron, time")
            return None
        return value
    if rule == "str":
        if not isinstance(value, str):
            problems.append(f"{path}: must be a string")
            return None
        return value
    if rule == "strings":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{path}: must be a list of strings")
            return None
        return list(value)
    if rule == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{path}: must be a non-negative integer, got {shown(value)}")
            return None
        return value
    if rule == "hours":
        hours = value if isinstance(value, list) else [value]
        bad = [h for h in hours if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23]
        if bad or not hours:
            problems.append(f"{path}: must be a list of hours 0-23, got {shown(value)}")
            return None
        return sorted(set(hours))
    raise AssertionError(rule)


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
