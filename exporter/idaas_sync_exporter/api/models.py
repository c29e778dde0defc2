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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_pascal

from idaas_sync_exporter.api.answer import RepairedText
from idaas_sync_exporter.api.errors import OTHER_CODE, MalformedResponseError, shown_text

# The vocabularies of the API documentation, declared once for the whole exporter. Values the
# API adds later are kept and exported too; these are the ones every target shows, at 0 if need be.
FINAL_STATUSES = ("success", "partial_success", "failed")
IN_PROGRESS_STATUSES = ("pending", "running")
COUNT_RESULTS = ("success", "failed", "skipped")
OBJECT_TYPES = ("user", "organizational_unit", "group", "group_member")
ACTIONS = ("created", "updated", "binded", "deleted", "same", "pushed", "exported")
TRIGGER_TYPES = ("auto", "manual")
# How many target ids one listing may filter by (the settings' target_ids, a batched re-read), and
# how many characters they may take together: API fronts refuse request lines over 8 KB (400
# LineTooLong), and the rest of a signed query needs about 1 KB.
TARGET_IDS_PER_QUERY = 100
TARGET_ID_CHARS_PER_QUERY = 5000
# What a job's target and direction may be: the filters of the settings and the config file's
# instances, and what the simulator accepts, take these.
DIRECTIONS = ("ingress", "egress")
TARGET_TYPES = ("identity_provider", "application")
# Values beyond those documented that a target may show as labels (object types, actions, trigger
# types, each counted on its own); further new ones are counted under OTHER_LABEL, so an API that
# invents a name per job cannot add series, and state, forever. The documented ones are always kept.
MAX_NEW_OBJECT_TYPES = 8
MAX_NEW_ACTIONS = 8
MAX_NEW_TRIGGER_TYPES = 4
OTHER_LABEL = OTHER_CODE

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Counts larger than this are not plausible for one job and would lose precision
# in a float64 sample; treat them as corruption rather than export them.
MAX_PLAUSIBLE_COUNT = 2**53


def bounded_label(value: str, documented: Collection[str], present: Collection[str], limit: int) -> str:
    """``value``, or OTHER_LABEL when it is undocumented and ``present`` already holds ``limit`` undocumented
    values: like idaas_sync_exporter.api.errors.bounded_code, but what the API documents is never folded."""
    if value in documented or value in present:
        return value
    new = sum(1 for known in present if known not in documented and known != OTHER_LABEL)
    return value if new < limit else OTHER_LABEL


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
    """One synchronization job; times are the API's epoch milliseconds."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    target_type: str
    target_id: str
    direction: str
    status: str
    trigger_type: str
    start_ms: int
    end_ms: int | None
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
        if self.end_ms is None or self.end_ms < self.start_ms:
            return None
        return (self.end_ms - self.start_ms) / 1000


# Ids, codes and statuses become label values. What the API documents is short and plain
# (``idp_my664lwkhpicbyzirog3xxxxx``, ``UdPullProtectedRule.DeletedThresholdExceeded``); anything
# else is not used as a label.
MAX_ID_LENGTH = 128
_ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,127}")
_WORD_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# An error code that does not look like one is exported as this, with the job still counted.
INVALID_ERROR_CODE = "invalid"

# Why a job was quarantined (not used at all) or repaired (used without the bad part).
QUARANTINE_REASONS = ("malformed",)
REPAIR_REASONS = ("bad_statistic", "bad_end_time", "bad_error_code", "bad_trigger_type", "bad_text")
# Every reason of idaas_exporter_jobs_anomalous_total, so that each series exists from the start: the
# examination's reasons and the poller's own (a job dated after the API's clock, one that appeared late).
ANOMALY_REASONS = (*QUARANTINE_REASONS, *REPAIR_REASONS, "future_start", "late")


class Anomaly(NamedTuple):
    """Something wrong with one job as the API showed it."""

    job_id: str | None  # None when the job had no usable id
    reason: str  # one of QUARANTINE_REASONS or REPAIR_REASONS
    detail: str  # what was wrong, bounded, for the log line


class Examined(NamedTuple):
    """A job as far as it could be used: ``job`` is None when it was quarantined."""

    job: SynchronizationJob | None
    anomalies: tuple[Anomaly, ...]


class _QuarantineError(Exception):
    """A field the job cannot be used without is unusable."""


class _Examiner:
    """Validates one raw job, repairing what can be repaired and recording every problem."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where
        self.job_id: str | None = None
        self.anomalies: list[Anomaly] = []

    def note(self, reason: str, detail: str) -> None:
        # Details quote keys from the answer: cut and escaped once here, for every writer after.
        self.anomalies.append(Anomaly(self.job_id, reason, shown_text(detail, 300)))

    def required(self, key: str, shape: re.Pattern[str]) -> str:
        value = self.raw.get(key)
        if isinstance(value, str):
            value = value.strip()
        if not isinstance(value, str) or not value:
            raise _QuarantineError(f"{self.where}.{key} must be a non-empty string, got {_kind(value)}")
        if len(value) > MAX_ID_LENGTH or not shape.fullmatch(value):
            raise _QuarantineError(
                f"{self.where}.{key} is not a plain identifier: {_kind(value)} ({len(value)} characters)"
            )
        return value

    def text(self, mapping: Mapping[str, Any], key: str, where: str) -> str | None:
        value = mapping.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.note("bad_text", f"{where}.{key} must be a string, got {_kind(value)}; left out")
            return None
        if len(value) > 4096 or not _encodable(value):
            self.note("bad_text", f"{where}.{key} is {len(value)} characters or not valid text; left out")
            return None
        if isinstance(value, RepairedText):
            self.note("bad_text", f"{where}.{key} held invalid bytes or a lone surrogate; kept with U+FFFD instead")
            return str(value)
        return value

    def start_ms(self) -> int:
        value = self.raw.get("StartTime")
        if type(value) is not int or not 0 < value < 10**14:
            raise _QuarantineError(f"{self.where}.StartTime must be epoch milliseconds (integer), got {_kind(value)}")
        return value

    def end_ms(self) -> int | None:
        value = self.raw.get("EndTime")
        if value is None or value == 0:
            return None
        if type(value) is not int or not 0 < value < 10**14:
            self.note("bad_end_time", f"{self.where}.EndTime must be epoch milliseconds, got {_kind(value)}; ignored")
            return None
        return value

    def trigger_type(self) -> str:
        value = self.raw.get("TriggerType")
        if value is None or value == "":
            return "unknown"
        if not isinstance(value, str) or not _WORD_SHAPE.fullmatch(value):
            self.note("bad_trigger_type", f"{self.where}.TriggerType is {_kind(value)}; exported as unknown")
            return "unknown"
        return value

    def error_code(self, result: Mapping[str, Any]) -> str | None:
        value = result.get("ErrorCode")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _ID_SHAPE.fullmatch(value):
            length = f" ({len(value)} characters)" if isinstance(value, str) else ""
            self.note("bad_error_code", f"{self.where}.Result.ErrorCode is {_kind(value)}{length}; exported as invalid")
            return INVALID_ERROR_CODE
        return value

    def statistics(self, result: Mapping[str, Any]) -> tuple[dict[str, dict[str, ActionCounts]], dict[str, Any]]:
        statistics: dict[str, dict[str, ActionCounts]] = {}
        extra: dict[str, Any] = {}
        where = f"{self.where}.Result"
        folded_any = False
        for key, value in result.items():
            if key in ("ErrorCode", "ErrorMessage"):
                continue
            if not isinstance(key, str) or not key.endswith("Statistics") or key == "Statistics":
                extra[str(key)] = value
                continue
            if value is None:
                continue
            object_type = snake_case(key[: -len("Statistics")])
            if not _WORD_SHAPE.fullmatch(object_type) or not isinstance(value, Mapping):
                self.note("bad_statistic", f"{where}.{key[:60]} must be an object, got {_kind(value)}; left out")
                continue
            folded_type = bounded_label(object_type, OBJECT_TYPES, statistics, MAX_NEW_OBJECT_TYPES)
            per_action = statistics.setdefault(folded_type, {})
            folded = folded_type != object_type
            for action_key, counts in value.items():
                if counts is None:
                    continue
                action = snake_case(action_key) if isinstance(action_key, str) else ""
                problem = None if _WORD_SHAPE.fullmatch(action) else f"is not an action name: {_kind(action_key)}"
                parsed = _counts(counts) if problem is None else problem
                if isinstance(parsed, str):
                    self.note("bad_statistic", f"{where}.{key[:60]}.{str(action_key)[:60]} {parsed}; left out")
                    continue
                folded_action = bounded_label(action, ACTIONS, per_action, MAX_NEW_ACTIONS)
                folded = folded or folded_action != action
                previous = per_action.get(folded_action)
                # Counted whole under ``other``: folding keeps every total exact.
                per_action[folded_action] = parsed if previous is None else _sum_counts(previous, parsed)
            if folded and not folded_any:
                folded_any = True
                self.note(
                    "bad_statistic",
                    f"{where} has more than {MAX_NEW_OBJECT_TYPES} undocumented object types or "
                    f"{MAX_NEW_ACTIONS} undocumented actions; the rest counted as {OTHER_LABEL}",
                )
        return statistics, extra


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: it could be neither stored nor exported
        return False
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


_COUNT_FIELDS = ("Total", "Success", "Failed", "Skipped")


def _counts(raw: Any) -> ActionCounts | str:
    """The four counts of one action, or what is wrong with them."""
    if not isinstance(raw, Mapping):
        return f"must be an object, got {_kind(raw)}"
    values = []
    for field in _COUNT_FIELDS:
        value = raw.get(field)
        if value is None:
            value = 0
        # type() rather than isinstance(): bool is an int subclass and never a valid count.
        elif type(value) is not int:
            return f"{field} must be an integer, got {_kind(value)}"
        elif not 0 <= value <= MAX_PLAUSIBLE_COUNT:
            return f"{field} is out of range: {value}"
        values.append(value)
    return ActionCounts(*values)


def _sum_counts(first: ActionCounts, second: ActionCounts) -> ActionCounts:
    return ActionCounts(*(a + b for a, b in zip(first, second, strict=True)))


def examine_job(raw: Any, where: str, *, statistics: bool = True) -> Examined:
    """Validate one job object from ListSynchronizationJobs/GetSynchronizationJob.

    A job without a usable id, target, direction, status or start time is quarantined
    (``job`` is None). Anything else wrong is repaired: a bad statistic, EndTime, error
    code or trigger type is left out or replaced, and recorded as an anomaly. Without
    ``statistics`` the per-object counts are neither read nor checked (the job has
    empty statistics): for a job already counted, whose counts were read then.
    """
    if not isinstance(raw, Mapping):
        return Examined(None, (Anomaly(None, "malformed", shown_text(f"{where} must be an object, got {_kind(raw)}")),))
    examiner = _Examiner(raw, where)
    try:
        examiner.job_id = examiner.required("SynchronizationJobId", _ID_SHAPE)
        examiner.where = f"{where}[{examiner.job_id}]"
        result = raw.get("Result") or {}
        if not isinstance(result, Mapping):
            examiner.note("bad_statistic", f"{examiner.where}.Result must be an object, got {_kind(result)}; left out")
            result = {}
        counts, extra = examiner.statistics(result) if statistics else ({}, {})
        job = SynchronizationJob(
            job_id=examiner.job_id,
            target_type=examiner.required("TargetType", _WORD_SHAPE),
            target_id=examiner.required("TargetId", _ID_SHAPE),
            direction=examiner.required("Direction", _WORD_SHAPE),
            status=examiner.required("Status", _WORD_SHAPE),
            trigger_type=examiner.trigger_type(),
            start_ms=examiner.start_ms(),
            end_ms=examiner.end_ms(),
            description=examiner.text(raw, "Description", examiner.where),
            error_code=examiner.error_code(result),
            error_message=examiner.text(result, "ErrorMessage", f"{examiner.where}.Result"),
            statistics=counts,
            result_extra=extra,
        )
    except _QuarantineError as problem:
        return Examined(None, (Anomaly(examiner.job_id, "malformed", shown_text(str(problem), 300)),))
    return Examined(job, tuple(examiner.anomalies))


def parse_job(raw: Any, where: str, action: str) -> SynchronizationJob:
    """Like :func:`examine_job`, but a quarantined job is a :class:`MalformedResponseError`."""
    examined = examine_job(raw, where)
    if examined.job is None:
        raise MalformedResponseError(action=action, problem=examined.anomalies[0].detail)
    return examined.job


# Prometheus drops a whole scrape whose label value passes its label_value_length_limit (often
# 1024 or less); names and types from the API are cut well before that, visibly.
MAX_LABEL_LENGTH = 256
CUT_MARKER = "\u2026"  # "…"


def label_value(value: str) -> str:
    """``value`` as a label value: at most MAX_LABEL_LENGTH characters, a cut one ending in CUT_MARKER."""
    if len(value) <= MAX_LABEL_LENGTH:
        return value
    return value[: MAX_LABEL_LENGTH - len(CUT_MARKER)] + CUT_MARKER


def is_plain_id(value: str) -> bool:
    """Whether ``value`` has the shape of an API id, as a job's TargetId must (see examine_job)."""
    return _ID_SHAPE.fullmatch(value) is not None


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


# The inbound-sync configuration, once: parsed from Get answers here, and the file of
# ``pull-config set`` (see pullconfig/config.py) is derived from these models: each field the file
# may set carries its type there, in its metadata (:class:`InFile`); the rest are answer-only.
# Numbers of a configuration answer become samples (thresholds) or schedule arithmetic (hours):
# one out of range is refused at parse, so the configuration is reported unreadable, never exported.
# A threshold past 2**53 would not even be an exact float64 sample; 400 digits are no float at all.
Threshold = Annotated[int, Field(ge=0, le=MAX_PLAUSIBLE_COUNT)]
Hour = Annotated[int, Field(ge=0, le=23)]
# A cron expression is some dozens of characters; a longer one is refused before croniter sees it.
MAX_CRON_CHARS = 256


@dataclass(frozen=True, slots=True)
class InFile:
    """The type a field has in a ``pull-config set`` file: what the API document allows, strictly.

    An answer is read leniently (a status the API adds later is still a status); a file is what the
    user asks the API to store, so it is held to the document.
    """

    type: Any


def _one_or_more(value: Any) -> Any:
    # The request takes a list of hours; a single hour is written plainly just as often.
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


Status = Annotated[str | None, InFile(Literal["enabled", "disabled"])]
Text = Annotated[str | None, InFile(str)]
Hours = Annotated[
    list[Hour],
    BeforeValidator(_one_or_more),
    Field(min_length=1, max_length=24 * 4),
    AfterValidator(lambda hours: sorted(set(hours))),
]
Count = Annotated[Threshold | None, InFile(Threshold)]


class PeriodicSyncConfig(WireModel):
    periodic_sync_type: Annotated[str | None, InFile(Literal["cron", "time"])] = None
    periodic_sync_cron: Annotated[
        Annotated[str, Field(max_length=MAX_CRON_CHARS)] | None,
        InFile(Annotated[str, Field(max_length=MAX_CRON_CHARS)]),
    ] = None
    # The response model types this as int while the request takes a list; accept both.
    periodic_sync_times: Annotated[Annotated[list[Hour], Field(max_length=24 * 4)] | Hour | None, InFile(Hours)] = None


class PullProtectedRule(WireModel):
    user_deleted_threshold: Count = None
    organizational_unit_deleted_threshold: Count = None
    group_deleted_threshold: Count = None


class UdSyncScopeConfig(WireModel):
    source_scopes: Annotated[list[str] | None, InFile(list[str])] = None
    target_scope: Text = None


class LdapUdPullConfig(WireModel):
    user_object_class: Text = None
    user_object_class_custom_filter: Text = None
    organization_unit_object_class: Text = None
    group_object_class: Text = None
    group_object_class_custom_filter: Text = None
    group_member_attribute_name: Text = None


class UdPullConfiguration(WireModel):
    instance_id: str | None = None
    identity_provider_id: str | None = None
    incremental_callback_status: Status = None
    group_sync_status: Status = None
    periodic_sync_status: Status = None
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
