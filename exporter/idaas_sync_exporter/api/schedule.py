"""Inbound-sync schedules as the API gives them: Quartz cron expressions and hours of the day.

Read by the poller (how long a scheduled provider may go without a run, for the missed-run alert)
and by ``pull-config`` (a file's cron expression is checked before it is sent).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from croniter import croniter

from idaas_sync_exporter.api.errors import shown_text
from idaas_sync_exporter.api.models import MAX_CRON_CHARS

# IDaaS evaluates schedules in China Standard Time.
SCHEDULE_TZ = timezone(timedelta(hours=8))
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
