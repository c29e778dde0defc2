"""Typed views of the API responses we use.

Statistics are parsed generically: every ``*Statistics`` object in a job's
``Result`` becomes an object type and every key inside it an action, so a key the
API adds later (``Exported`` on organizational units, say) is counted rather than
dropped. Anything that would turn into a wrong number (a negative or non-integer
count, a job without an id) is refused with an error naming the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_pascal

from exporter.api.errors import MalformedResponseError

FINAL_STATUSES = frozenset({"success", "partial_success", "failed"})
IN_PROGRESS_STATUSES = frozenset({"pending", "running"})
KNOWN_STATUSES = FINAL_STATUSES | IN_PROGRESS_STATUSES
COUNT_RESULTS = ("success", "failed", "skipped")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Counts larger than this are not plausible for one job and would lose precision
# in a float64 sample; treat them as corruption rather than export them.
MAX_PLAUSIBLE_COUNT = 2**53


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """``OrganizationalUnit`` -> ``organizational_unit``; ``Binded`` -> ``binded``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


class WireModel(BaseModel):
    """Fields are snake_case in Python and PascalCase on the wire; unknown keys are kept."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="allow", frozen=True)


class ActionCounts(NamedTuple):
    # A plain tuple: a large poll creates millions of these, and they are validated by hand.
    total: int
    success: int
    failed: int
    skipped: int


class SynchronizationJob(BaseModel):
    """One synchronization job; times are epoch seconds (the API sends milliseconds)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    target_type: str
    target_id: str
    direction: str
    status: str
    trigger_type: str
    start_time: float
    end_time: float | None
    description: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # object type -> action -> counts, e.g. statistics["user"]["created"].failed
    statistics: Mapping[str, Mapping[str, ActionCounts]] = {}
    # Result keys we do not interpret, kept for debugging and forward compatibility.
    result_extra: Mapping[str, Any] = {}

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None or self.end_time < self.start_time:
            return None
        return self.end_time - self.start_time


# Ids, codes and statuses become label values; anything this long is not an id.
MAX_LABEL_FIELD = 512


def _require_str(raw: Mapping[str, Any], key: str, where: str, action: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MalformedResponseError(
            action=action, problem=f"{where}.{key} must be a non-empty string, got {_kind(value)}"
        )
    if len(value) > MAX_LABEL_FIELD:
        raise MalformedResponseError(action=action, problem=f"{where}.{key} is {len(value)} characters long")
    return value.strip()


def _optional_str(raw: Mapping[str, Any], key: str, where: str, action: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponseError(action=action, problem=f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def _label_str(raw: Mapping[str, Any], key: str, where: str, action: str) -> str | None:
    value = _optional_str(raw, key, where, action)
    if value is not None and len(value) > MAX_LABEL_FIELD:
        raise MalformedResponseError(action=action, problem=f"{where}.{key} is {len(value)} characters long")
    return value


def _millis(raw: Mapping[str, Any], key: str, where: str, action: str, required: bool) -> float | None:
    value = raw.get(key)
    if value is None or (value == 0 and not required):
        if required:
            raise MalformedResponseError(action=action, problem=f"{where}.{key} is missing")
        return None
    # bool is an int subclass in Python; a boolean time is never valid.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**14:
        raise MalformedResponseError(
            action=action,
            problem=f"{where}.{key} must be epoch milliseconds (integer), got {_kind(value)}",
        )
    return value / 1000.0


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


_COUNT_FIELDS = ("Total", "Success", "Failed", "Skipped")


def _parse_counts(raw: Any, where: str, action: str) -> ActionCounts:
    if not isinstance(raw, dict):
        raise MalformedResponseError(action=action, problem=f"{where} must be an object, got {_kind(raw)}")
    values = []
    for field in _COUNT_FIELDS:
        value = raw.get(field)
        if value is None:
            value = 0
        # type() rather than isinstance(): bool is an int subclass and never a valid count.
        elif type(value) is not int:
            raise MalformedResponseError(
                action=action, problem=f"{where}.{field} must be an integer, got {_kind(value)}"
            )
        elif not 0 <= value <= MAX_PLAUSIBLE_COUNT:
            raise MalformedResponseError(action=action, problem=f"{where}.{field} is out of range: {value}")
        values.append(value)
    return ActionCounts(*values)


def parse_statistics(
    result: Mapping[str, Any], where: str, action: str
) -> tuple[dict[str, dict[str, ActionCounts]], dict[str, Any]]:
    statistics: dict[str, dict[str, ActionCounts]] = {}
    extra: dict[str, Any] = {}
    for key, value in result.items():
        if key in ("ErrorCode", "ErrorMessage"):
            continue
        if not key.endswith("Statistics") or key == "Statistics":
            extra[key] = value
            continue
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise MalformedResponseError(action=action, problem=f"{where}.{key} must be an object, got {_kind(value)}")
        object_type = snake_case(key[: -len("Statistics")])
        per_action: dict[str, ActionCounts] = {}
        for action_key, counts in value.items():
            if counts is None:
                continue
            per_action[snake_case(action_key)] = _parse_counts(counts, f"{where}.{key}.{action_key}", action)
        statistics[object_type] = per_action
    return statistics, extra


def parse_job(raw: Any, where: str, action: str) -> SynchronizationJob:
    """Validate one job object from ListSynchronizationJobs/GetSynchronizationJob."""
    if not isinstance(raw, Mapping):
        raise MalformedResponseError(action=action, problem=f"{where} must be an object, got {_kind(raw)}")
    job_id = _require_str(raw, "SynchronizationJobId", where, action)
    where = f"{where}[{job_id}]"
    result = raw.get("Result") or {}
    if not isinstance(result, Mapping):
        raise MalformedResponseError(action=action, problem=f"{where}.Result must be an object, got {_kind(result)}")
    statistics, extra = parse_statistics(result, f"{where}.Result", action)
    return SynchronizationJob(
        job_id=job_id,
        target_type=_require_str(raw, "TargetType", where, action),
        target_id=_require_str(raw, "TargetId", where, action),
        direction=_require_str(raw, "Direction", where, action),
        status=_require_str(raw, "Status", where, action),
        trigger_type=_label_str(raw, "TriggerType", where, action) or "unknown",
        start_time=_millis(raw, "StartTime", where, action, required=True) or 0.0,
        end_time=_millis(raw, "EndTime", where, action, required=False),
        description=_optional_str(raw, "Description", where, action),
        error_code=_label_str(result, "ErrorCode", f"{where}.Result", action),
        error_message=_optional_str(result, "ErrorMessage", f"{where}.Result", action),
        statistics=statistics,
        result_extra=extra,
    )


class Instance(WireModel):
    instance_id: str
    description: str | None = None
    status: str | None = None
    create_time: int | None = None


class IdentityProvider(WireModel):
    identity_provider_id: str
    identity_provider_name: str | None = None
    identity_provider_type: str | None = None
    ud_pull_status: str | None = None
    ud_push_status: str | None = None
    incremental_callback_status: str | None = None
    periodic_sync_status: str | None = None

    @property
    def provider_kind(self) -> str:
        """``urn:alibaba:idaas:idp:tencent:wecom:pull`` -> ``tencent:wecom:pull``."""
        value = self.identity_provider_type or "unknown"
        prefix = "urn:alibaba:idaas:idp:"
        return value[len(prefix) :] if value.startswith(prefix) else value


class Application(WireModel):
    application_id: str
    application_name: str | None = None
    application_source_type: str | None = None
    status: str | None = None
    sso_type: str | None = None


class PeriodicSyncConfig(WireModel):
    periodic_sync_type: str | None = None
    periodic_sync_cron: str | None = None
    # The response model types this as int while the request takes a list; accept both.
    periodic_sync_times: list[int] | int | None = None


class PullProtectedRule(WireModel):
    user_deleted_threshold: int | None = None
    organizational_unit_deleted_threshold: int | None = None
    group_deleted_threshold: int | None = None


class UdSyncScopeConfig(WireModel):
    source_scopes: list[str] | None = None
    target_scope: str | None = None


class LdapUdPullConfig(WireModel):
    user_object_class: str | None = None
    user_object_class_custom_filter: str | None = None
    organization_unit_object_class: str | None = None
    group_object_class: str | None = None
    group_object_class_custom_filter: str | None = None
    group_member_attribute_name: str | None = None


class UdPullConfiguration(WireModel):
    instance_id: str | None = None
    identity_provider_id: str | None = None
    incremental_callback_status: str | None = None
    group_sync_status: str | None = None
    periodic_sync_status: str | None = None
    periodic_sync_config: PeriodicSyncConfig | None = None
    pull_protected_rule: PullProtectedRule | None = None
    ud_sync_scope_config: UdSyncScopeConfig | None = None
    ldap_ud_pull_config: LdapUdPullConfig | None = None


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], raw: Any, where: str, action: str) -> M:
    """Validate ``raw`` into ``model``; a mismatch names the first bad field."""
    if not isinstance(raw, Mapping):
        raise MalformedResponseError(action=action, problem=f"{where} must be an object, got {_kind(raw)}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise MalformedResponseError(action=action, problem=f"{where}.{path}: {first['msg']}") from None
