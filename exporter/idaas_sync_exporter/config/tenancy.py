"""Which instances are polled, where, and with whose credentials.

From the settings alone (``IDAAS_EXPORTER_INSTANCE_IDS``, ``--region-id``, ``--endpoint``, the
AccessKey settings or the default chain) this is one account, ``default``, with every instance
in one region. A config file may list ``accounts`` and ``instances`` instead; each instance
then names its region (or endpoint) and account, and may carry its own poll interval and
target filters. Every problem is one line naming its path in the file
(``accounts[1].assume_role.role_arn: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from idaas_sync_exporter.api.endpoint import REGION_PATTERN
from idaas_sync_exporter.config.accounts import Account, check_account_problems, read_environment_keys
from idaas_sync_exporter.config.settings import (
    MAX_INSTANCES,
    TENANCY_KEYS,
    Directions,
    InstanceId,
    Settings,
    SettingsError,
    TargetIds,
    TargetTypes,
    check_endpoint,
    read_config_document,
    shown,
)
from idaas_sync_exporter.config.validation import Document, Loc, describe, document_of, locate

DEFAULT_ACCOUNT = "default"


class InstanceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, allow_inf_nan=False)

    id: InstanceId
    region: str | None = Field(None, pattern=REGION_PATTERN.pattern)
    endpoint: str | None = None
    account: str | None = None
    poll_interval_seconds: float | None = Field(None, ge=1, le=86400)
    # Sent in the URL of every listing of this instance, as the settings' are: the same rules.
    target_types: TargetTypes | None = None
    directions: Directions | None = None
    target_ids: TargetIds | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            check_endpoint(value)
        return value


class TenancyFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    # An account per instance at most is all a file can use.
    accounts: list[Account] = Field(default_factory=list, max_length=MAX_INSTANCES)
    instances: list[InstanceEntry] = Field(default_factory=list, max_length=MAX_INSTANCES)
    allow_inline_secrets: bool = False


@dataclass(frozen=True, slots=True)
class PlannedInstance:
    """One instance as it is polled: where, as whom, how often, which targets."""

    instance_id: str
    region: str
    endpoint: str | None
    account: str
    poll_interval_seconds: float
    target_types: tuple[str, ...]
    directions: tuple[str, ...]
    target_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tenancy:
    """The accounts (None: the settings' own AccessKey or the default chain) and the instances to poll."""

    accounts: Mapping[str, Account | None]
    instances: tuple[PlannedInstance, ...]

    @property
    def instance_ids(self) -> list[str]:
        return [instance.instance_id for instance in self.instances]

    def only(self, instance_ids: list[str]) -> Tenancy:
        """The same accounts with only these instances (a shard's)."""
        wanted = set(instance_ids)
        return Tenancy(self.accounts, tuple(i for i in self.instances if i.instance_id in wanted))


# What a value that does not match its pattern should look like, by key.
_PATTERN_HINTS = {
    "name": "letters, digits, '.', '_' or '-', up to 63, starting with a letter or digit",
    "role_arn": "a RAM role ARN such as acs:ram::1234567890123456:role/idaas-reader",
    "oidc_provider_arn": "an OIDC provider ARN such as acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1",
    "session_name": "2 to 64 letters, digits, '.', '@', '_' or '-'",
    "region": "a region id such as cn-hangzhou or ap-southeast-1",
    "sts_region": "a region id such as cn-hangzhou or ap-southeast-1",
    "sts_endpoint": "a host[:port] such as sts-vpc.cn-hangzhou.aliyuncs.com",
}


def _explain(path: Loc, error: ErrorDetails) -> str | None:
    if error["type"] != "string_pattern_mismatch":
        return None
    key = str(path[-1]) if path else ""
    hint = _PATTERN_HINTS.get(key, "see docs/configuration.md")
    if key.endswith("_env"):
        hint = "an environment variable name (letters, digits and '_')"
    # An account's field may hold a secret pasted into the wrong key (secret_env: <the secret>).
    unshown = " (the value is not shown: it may be a pasted secret)" if path[:1] == ("accounts",) else ""
    return f"must be {hint}{unshown}"


def _show_value(path: Loc, error: ErrorDetails) -> Loc | None:
    # Only an instance's values may be quoted: any field of an account may hold a pasted secret.
    return path if error["type"] == "string_pattern_mismatch" and path[:1] == ("instances",) else None


def parse_tenancy_file(document: Mapping[str, Any] | Document) -> TenancyFile:
    """The file's ``accounts``, ``instances`` and ``allow_inline_secrets``; :class:`SettingsError` if wrong."""
    if not isinstance(document, Document):
        document = document_of(document)
    data = document.data if isinstance(document.data, Mapping) else {}
    try:
        return TenancyFile.model_validate({key: data[key] for key in TENANCY_KEYS if key in data})
    except ValidationError as exc:
        raise SettingsError(
            describe(exc, document, model=TenancyFile, show_value=_show_value, explain=_explain)
        ) from None


def load_tenancy(settings: Settings, config_file: str | Document | None) -> Tenancy:
    """The tenancy of the settings and the config file: the document the settings were read from, or its path."""
    if not config_file:
        return plan_tenancy(settings)
    document = config_file if isinstance(config_file, Document) else read_config_document(config_file)
    return plan_tenancy(settings, document)


def plan_tenancy(
    settings: Settings,
    document: Mapping[str, Any] | Document | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    file_name: str = "config",
) -> Tenancy:
    """The accounts and instances of the settings and, when given, the config file's document.

    A document that was not read from a file (a mapping) is named ``file_name`` in problems.
    """
    env = os.environ if environ is None else environ
    if not isinstance(document, Document):
        document = Document(file_name, document or {})
    parsed = parse_tenancy_file(document)
    problems = check_account_problems(parsed.accounts, allow_inline_secrets=parsed.allow_inline_secrets)
    problems += read_environment_keys(parsed.accounts, env)
    named = {account.name: account for account in parsed.accounts}
    if parsed.accounts and settings.access_key_id:
        problems.append(
            "accounts: the config file lists accounts and the settings give an AccessKey too; "
            "name the key in an account (access_key: {id_env: ..., secret_env: ...}) or remove the accounts"
        )
    if parsed.instances and settings.instance_ids:
        problems.append(
            "instances: the config file lists instances and IDAAS_EXPORTER_INSTANCE_IDS (--instance-ids) "
            "lists instances too; keep one of them"
        )
    if parsed.accounts and not parsed.instances and len(parsed.accounts) > 1:
        problems.append("instances: the config file lists several accounts; list the instances and their account")

    accounts: dict[str, Account | None] = dict(named) if named else {DEFAULT_ACCOUNT: None}
    if parsed.instances:
        planned = _file_instances(parsed.instances, settings, accounts, problems, any_named=bool(named))
    else:
        account = next(iter(accounts)) if len(accounts) == 1 else DEFAULT_ACCOUNT
        planned = [_planned(instance_id, None, settings, account) for instance_id in settings.instance_ids]
    if problems:
        raise SettingsError([locate(document, problem) for problem in problems])
    return Tenancy(accounts, tuple(planned))


def _planned(instance_id: str, entry: InstanceEntry | None, settings: Settings, account: str) -> PlannedInstance:
    """An instance with the entry's own values where it has them, else the settings'."""

    def own(name: str) -> Any:
        value = getattr(entry, name, None) if entry is not None else None
        return value if value is not None else getattr(settings, name)

    return PlannedInstance(
        instance_id=instance_id,
        region=entry.region if entry is not None and entry.region else settings.region_id,
        endpoint=own("endpoint"),
        account=account,
        poll_interval_seconds=own("poll_interval_seconds"),
        target_types=tuple(own("target_types")),
        directions=tuple(own("directions")),
        target_ids=tuple(own("target_ids")),
    )


def _file_instances(
    entries: list[InstanceEntry],
    settings: Settings,
    accounts: Mapping[str, Account | None],
    problems: list[str],
    *,
    any_named: bool,
) -> list[PlannedInstance]:
    """The file's instances; a problem with one is added to ``problems`` and the others still checked."""
    only_account = next(iter(accounts)) if len(accounts) == 1 else None
    planned: list[PlannedInstance] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"instances[{index}]"
        if entry.id in first_index:
            problems.append(f"{where}.id: {entry.id!r} is already listed as instances[{first_index[entry.id]}]")
            continue
        first_index[entry.id] = index
        account = entry.account or only_account
        if account is None:
            problems.append(f"{where}.account: name the account, one of {', '.join(sorted(accounts))}")
        elif account not in accounts:
            choices = ", ".join(sorted(accounts)) if any_named else "none are listed"
            problems.append(f"{where}.account: no account is named {shown(account)}; accounts: {choices}")
        else:
            planned.append(_planned(entry.id, entry, settings, account))
    return planned
