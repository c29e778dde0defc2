"""The simulated cloud of ``simulate --accounts FILE``: accounts, their AccessKeys, RAM roles and instances.

One file describes every account and region; each ``simulate`` process serves one region's
instances (``--region``) from it, so two processes on two ports stand in for two regional
endpoints of the same accounts. An account's key sees only its own instances; another account's
instance is answered ``EntityNotExists.Instance``, as the API answers it. A role may be assumed
through the STS stand-in (:mod:`idaas_sync_exporter.simulator.sts`) by the accounts its trust policy names,
and the credentials it issues are accepted by every process that read the same file.

Keys are named the way the exporter's config file names them (``id``/``id_env``/``id_file``,
``secret_env``/``secret_file``), so one pair of variables or files can serve both. Every value is
read and checked at start; a problem is one line naming its place in the file, never a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from idaas_sync_exporter.api.credentials import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    SECURITY_TOKEN,
    CredentialPart,
    CredentialsError,
    checked_credential,
)
from idaas_sync_exporter.api.endpoint import REGION_PATTERN
from idaas_sync_exporter.config.accounts import ACCOUNT_NAME, ROLE_ARN, AccessKeySource, KeyFileError, read_key_file
from idaas_sync_exporter.config.settings import INSTANCE_ID_PATTERN, INSTANCE_ID_RULE
from idaas_sync_exporter.config.yamlfile import YamlFileError, read_yaml
from idaas_sync_exporter.files import shown
from idaas_sync_exporter.simulator.server import AccessKey

# AccessKey ids of this prefix are the STS stand-in's temporary credentials.
STS_KEY_PREFIX = "STS."


class CloudFileError(ValueError):
    """The accounts file is wrong; ``problems`` are one line each, naming their place in the file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class CloudInstance(_Strict):
    id: str = Field(pattern=INSTANCE_ID_PATTERN)
    region: str = Field(pattern=REGION_PATTERN.pattern)


class CloudRole(_Strict):
    """A RAM role of the account, and who may assume it (its trust policy)."""

    role_arn: str = Field(pattern=ROLE_ARN.pattern)
    trusted_accounts: list[str] = Field(min_length=1)
    # When set, AssumeRole must send this ExternalId (the trust policy's sts:ExternalId condition).
    external_id: str | None = Field(None, min_length=2, max_length=1224)
    max_session_duration: int = Field(3600, ge=900, le=43200)


class CloudAccount(_Strict):
    name: str = Field(pattern=ACCOUNT_NAME.pattern)
    access_key: AccessKeySource | None = None
    roles: list[CloudRole] = Field(default_factory=list)
    instances: list[CloudInstance] = Field(default_factory=list)


class CloudFile(_Strict):
    accounts: list[CloudAccount] = Field(min_length=1, max_length=1000)
    allow_inline_secrets: bool = False


@dataclass(frozen=True, slots=True)
class Role:
    account: str
    role_arn: str
    trusted_accounts: frozenset[str]
    external_id: str | None
    max_session_duration: int

    @property
    def owner_uid(self) -> str:
        return self.role_arn.split(":")[3]

    @property
    def role_name(self) -> str:
        return self.role_arn.rpartition(":role/")[2]


@dataclass(frozen=True, slots=True)
class Cloud:
    """What the file describes, its secrets read: keys by id, roles by ARN, instances by account."""

    keys: Mapping[str, AccessKey]
    key_accounts: Mapping[str, str]  # AccessKey id -> account name
    roles: Mapping[str, Role]
    instances: Mapping[str, tuple[CloudInstance, ...]]  # account name -> its instances

    def instance_ids(self, region: str | None = None) -> list[str]:
        """The instances in ``region`` (every region: None), in the file's order."""
        return [i.id for listed in self.instances.values() for i in listed if region is None or i.region == region]

    def regions(self) -> list[str]:
        return sorted({i.region for listed in self.instances.values() for i in listed})

    def account_instances(self, account: str, served: set[str]) -> frozenset[str]:
        return frozenset(i.id for i in self.instances.get(account, ()) if i.id in served)

    def served_keys(self, served: set[str]) -> list[AccessKey]:
        """Each account's key, limited to that account's instances among ``served``."""
        return [
            AccessKey(
                key.access_key_id,
                key.access_key_secret,
                key.security_token,
                instances=self.account_instances(self.key_accounts[key_id], served),
            )
            for key_id, key in self.keys.items()
        ]


# What a value that does not match its pattern should look like, by key.
_HINTS = {
    "name": "letters, digits, '.', '_' or '-', up to 63, starting with a letter or digit",
    "role_arn": "a RAM role ARN such as acs:ram::1234567890123456:role/idaas-sync-reader",
    "region": "a region id such as cn-hangzhou or ap-southeast-1",
    "id": f"an instance id: {INSTANCE_ID_RULE}",
}


def _place(location: tuple[Any, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "file"


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        location = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; see docs/simulator.md"
        elif error["type"] == "string_pattern_mismatch":
            key = str(location[-1]) if location else ""
            hint = _HINTS.get(key, "see docs/simulator.md")
            if key.endswith("_env"):
                hint = "an environment variable name (letters, digits and '_')"
            # Any field of a key may hold a secret pasted into the wrong place: values are not shown.
            message = f"must be {hint} (the value is not shown)"
        problems.append(f"{_place(location)}: {message}")
    return problems


def load_cloud(path: str, environ: Mapping[str, str]) -> Cloud:
    """The cloud the file at ``path`` describes; :class:`CloudFileError` naming every problem."""
    try:
        document = read_yaml(path)
    except YamlFileError as exc:
        raise CloudFileError([str(exc)]) from None
    try:
        parsed = CloudFile.model_validate(document if document is not None else {})
    except ValidationError as exc:
        raise CloudFileError(_describe(exc)) from None
    return _build(parsed, environ)


def _build(parsed: CloudFile, environ: Mapping[str, str]) -> Cloud:
    problems: list[str] = []
    names: dict[str, int] = {}
    for index, account in enumerate(parsed.accounts):
        if account.name in names:
            problems.append(
                f"accounts[{index}].name: {account.name!r} is already the name of accounts[{names[account.name]}]"
            )
        names.setdefault(account.name, index)
        if account.access_key is None and not account.roles:
            problems.append(f"accounts[{index}]: give the account an access_key, or roles another account may assume")
    keys, key_accounts = _keys(parsed, environ, problems)
    roles = _roles(parsed, set(names), {a.name for a in parsed.accounts if a.access_key is not None}, problems)
    owners: dict[str, str] = {}
    instances: dict[str, tuple[CloudInstance, ...]] = {}
    for index, account in enumerate(parsed.accounts):
        for instance_index, instance in enumerate(account.instances):
            if instance.id in owners:
                problems.append(
                    f"accounts[{index}].instances[{instance_index}].id: {instance.id} is already an instance of "
                    f"account {owners[instance.id]}"
                )
            owners.setdefault(instance.id, account.name)
        instances[account.name] = instances.get(account.name, ()) + tuple(account.instances)
    if problems:
        raise CloudFileError(problems)
    return Cloud(keys, key_accounts, roles, instances)


def _keys(
    parsed: CloudFile, environ: Mapping[str, str], problems: list[str]
) -> tuple[dict[str, AccessKey], dict[str, str]]:
    """Each account's AccessKey by id, and the account of each id."""
    keys: dict[str, AccessKey] = {}
    accounts: dict[str, str] = {}
    for index, account in enumerate(parsed.accounts):
        if account.access_key is None:
            continue
        where = f"accounts[{index}].access_key"
        key = _read_key(account.access_key, where, environ, parsed.allow_inline_secrets, problems)
        if key is None:
            continue
        if key.access_key_id in keys:
            problems.append(f"{where}: the AccessKey id is already the key of account {accounts[key.access_key_id]}")
            continue
        keys[key.access_key_id] = key
        accounts[key.access_key_id] = account.name
    return keys, accounts


def _roles(parsed: CloudFile, names: set[str], keyed: set[str], problems: list[str]) -> dict[str, Role]:
    """The roles by ARN; each trusted account must exist and hold a key to sign AssumeRole with."""
    roles: dict[str, Role] = {}
    for index, account in enumerate(parsed.accounts):
        for role_index, role in enumerate(account.roles):
            where = f"accounts[{index}].roles[{role_index}]"
            if role.role_arn in roles:
                problems.append(f"{where}.role_arn: the role is already one of account {roles[role.role_arn].account}")
                continue
            for trusted in role.trusted_accounts:
                if trusted not in names:
                    problems.append(f"{where}.trusted_accounts: no account is named {shown(trusted)}")
                elif trusted not in keyed:
                    problems.append(
                        f"{where}.trusted_accounts: account {trusted} has no access_key to sign AssumeRole with"
                    )
            roles[role.role_arn] = Role(
                account.name,
                role.role_arn,
                frozenset(role.trusted_accounts),
                role.external_id,
                role.max_session_duration,
            )
    return roles


def _read_key(
    source: AccessKeySource, where: str, environ: Mapping[str, str], allow_inline: bool, problems: list[str]
) -> AccessKey | None:
    if source.secret is not None and not allow_inline:
        problems.append(
            f"{where}.secret: a secret written in the file is refused; use secret_env or secret_file "
            "(or set allow_inline_secrets: true at the top of the file)"
        )
        return None
    before = len(problems)
    key_id = _value(source.id, source.id_env, source.id_file, ACCESS_KEY_ID, f"{where}.id", environ, problems)
    secret = _value(
        source.secret.get_secret_value() if source.secret is not None else None,
        source.secret_env,
        source.secret_file,
        ACCESS_KEY_SECRET,
        f"{where}.secret",
        environ,
        problems,
    )
    token = _value(
        None,
        source.security_token_env,
        source.security_token_file,
        SECURITY_TOKEN,
        f"{where}.security_token",
        environ,
        problems,
    )
    if len(problems) > before or key_id is None or secret is None:
        return None
    if key_id.startswith(STS_KEY_PREFIX):
        problems.append(f"{where}.id: AccessKey ids starting {STS_KEY_PREFIX} are the STS stand-in's; choose another")
        return None
    return AccessKey(key_id, SecretStr(secret), SecretStr(token) if token is not None else None)


def _value(
    inline: str | None,
    variable: str | None,
    path: str | None,
    part: CredentialPart,
    where: str,
    environ: Mapping[str, str],
    problems: list[str],
) -> str | None:
    """One part of a key, read and checked; a problem names the field, never the value (nor a secret's source)."""
    if variable is not None:
        value = environ.get(variable, "")
        if not value.strip():
            # The name of an id's variable may be shown; a secret's may be a secret pasted into the wrong key.
            named = (
                f"the environment variable {variable}" if part is ACCESS_KEY_ID else "the environment variable it names"
            )
            problems.append(
                f"{where}_env: {named} is not set or empty; set it, or name a file with {where.rpartition('.')[2]}_file"
            )
            return None
        source = f"{where}_env"
    elif path is not None:
        try:
            value = read_key_file(path)
        except KeyFileError as exc:
            text = str(exc) if part is ACCESS_KEY_ID else "cannot be read as a key file (the path is not shown)"
            problems.append(f"{where}_file: {text}")
            return None
        source = f"{where}_file"
    elif inline is not None:
        value, source = inline, where
    else:
        return None
    try:
        return checked_credential(value, part, source)
    except CredentialsError as exc:
        problems.append(str(exc))
        return None
