"""Accounts of the configuration file: where each account's AccessKey comes from.

An account names exactly one credential source. Secrets are never read from the file itself
unless the file says ``allow_inline_secrets: true``; environment variables are read once at
start (a missing one is a start-up error naming it), files on every request when they have
changed (Kubernetes rewrites mounted Secrets in place), and every other source is the
alibabacloud-credentials provider of that name, which refreshes its own STS tokens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from exporter.api.credentials import CredentialsProvider, LibraryCredentialsProvider

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ROLE_ARN = re.compile(r"^acs:ram::\d{1,20}:role/[A-Za-z0-9._@/-]{1,128}$")
# STS's RoleSessionName: 2-64 of letters, digits, '.', '@', '-', '_'.
SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
SOURCES = ("access_key", "assume_role", "oidc", "ecs_ram_role", "cli_profile", "default_chain")
DEFAULT_SESSION_NAME = "idaas-sync-exporter"
# AccessKey values are short; a "secret file" of megabytes is a wrong path, not a key.
_MAX_KEY_FILE_BYTES = 4096

EnvName = Annotated[str, Field(pattern=ENV_NAME.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AccessKeySource(_Strict):
    """An AccessKey pair, each part from an environment variable, a file or (if allowed) the file itself."""

    id: str | None = None
    id_env: EnvName | None = None
    id_file: str | None = None
    secret: SecretStr | None = None
    secret_env: EnvName | None = None
    secret_file: str | None = None
    security_token_env: EnvName | None = None
    security_token_file: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> AccessKeySource:
        for part, names in (
            ("id", ("id", "id_env", "id_file")),
            ("secret", ("secret_env", "secret_file", "secret")),
        ):
            given = [name for name in names if getattr(self, name) is not None]
            if len(given) != 1:
                raise ValueError(f"give exactly one of {', '.join(names)} for the AccessKey {part}")
        if self.security_token_env is not None and self.security_token_file is not None:
            raise ValueError("give security_token_env or security_token_file, not both")
        return self


class _StsOptions(_Strict):
    session_name: str = Field(DEFAULT_SESSION_NAME, pattern=SESSION_NAME.pattern)
    duration_seconds: int = Field(3600, ge=900, le=43200)
    # A regional STS endpoint (sts.<region>.aliyuncs.com) or an explicit host, e.g. for a VPC endpoint.
    sts_region: str | None = Field(None, pattern=r"^[a-z]{2,}(-[a-z0-9]+)+$")
    sts_endpoint: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


class AssumeRoleSource(_StsOptions):
    """STS AssumeRole of a RAM role, signed with another account's credentials."""

    role_arn: str = Field(pattern=ROLE_ARN.pattern)
    source_account: str
    external_id: str | None = Field(None, min_length=2, max_length=1224)


class OidcSource(_StsOptions):
    """RRSA: the pod's OIDC token exchanged for the role's STS credentials.

    Each field left out is read from the variable ACK's RRSA webhook sets
    (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE).
    """

    role_arn: str | None = Field(None, pattern=ROLE_ARN.pattern)
    oidc_provider_arn: str | None = Field(None, pattern=r"^acs:ram::\d{1,20}:oidc-provider/[A-Za-z0-9._-]{1,128}$")
    oidc_token_file: str | None = None


class EcsRamRoleSource(_Strict):
    """The RAM role attached to the ECS instance, from its metadata service."""

    role_name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")


class CliProfileSource(_Strict):
    """A profile of the Alibaba Cloud CLI's ~/.aliyun/config.json."""

    profile: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    file: str | None = None


class DefaultChainSource(_Strict):
    """The SDK's default chain (environment, RRSA, CLI profile, credentials file, ECS RAM role)."""


class Account(_Strict):
    name: str = Field(pattern=ACCOUNT_NAME.pattern)
    access_key: AccessKeySource | None = None
    assume_role: AssumeRoleSource | None = None
    oidc: OidcSource | None = None
    ecs_ram_role: EcsRamRoleSource | None = None
    cli_profile: CliProfileSource | None = None
    default_chain: DefaultChainSource | None = None
    # The API quota is per account; None takes --requests-per-second.
    requests_per_second: float | None = Field(None, gt=0, le=100, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_sources_are_given(cls, data: Any) -> Any:
        # `ecs_ram_role:` with nothing under it is YAML null, and means that source with its defaults.
        if isinstance(data, dict):
            return {key: ({} if key in SOURCES and value is None else value) for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Account:
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            shown = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one credential source ({', '.join(SOURCES)}); got {shown}")
        return self

    @property
    def source(self) -> str:
        return next(name for name in SOURCES if getattr(self, name) is not None)

    def describe(self) -> str:
        """The source in a log line: kind and non-secret identifiers only."""
        if self.assume_role is not None:
            return f"assume_role {self.assume_role.role_arn} via {self.assume_role.source_account}"
        if self.access_key is not None:
            key = self.access_key
            where = key.id_env or key.id_file or "the config file"
            return f"access_key id from {where}"
        return self.source


def check_account_problems(accounts: list[Account], *, allow_inline_secrets: bool) -> list[str]:
    """Problems across accounts (names, role sources, inline secrets), each naming its path in the file."""
    problems = []
    first_index: dict[str, int] = {}
    for index, account in enumerate(accounts):
        if account.name in first_index:
            problems.append(
                f"accounts[{index}].name: {account.name!r} is already the name of accounts[{first_index[account.name]}]"
            )
        first_index.setdefault(account.name, index)
    for index, account in enumerate(accounts):
        key = account.access_key
        if key is not None and key.secret is not None and not allow_inline_secrets:
            problems.append(
                f"accounts[{index}].access_key.secret: a secret written in the config file is refused; "
                "use secret_env or secret_file (or set allow_inline_secrets: true at the top of the file)"
            )
        role = account.assume_role
        if role is None:
            continue
        if role.source_account not in first_index:
            problems.append(
                f"accounts[{index}].assume_role.source_account: no account is named {role.source_account!r}; "
                f"accounts are {', '.join(sorted(first_index))}"
            )
            continue
        seen = [account.name]
        current = accounts[first_index[role.source_account]]
        while current.assume_role is not None and current.name not in seen:
            seen.append(current.name)
            upstream = current.assume_role.source_account
            if upstream not in first_index:
                break
            current = accounts[first_index[upstream]]
        if current.name in seen and current.assume_role is not None:
            problems.append(
                f"accounts[{index}].assume_role.source_account: the roles go round in a circle "
                f"({' -> '.join([*seen, current.name])}); one account must hold a key of its own"
            )
    return problems


def read_environment_keys(accounts: list[Account], environ: Mapping[str, str]) -> list[str]:
    """Problems with the variables and files named by access_key sources, each naming its path in the file."""
    problems = []
    for index, account in enumerate(accounts):
        key = account.access_key
        if key is None:
            continue
        for field_name in ("id_env", "secret_env", "security_token_env"):
            variable = getattr(key, field_name)
            if variable is not None and not environ.get(variable):
                problems.append(
                    f"accounts[{index}].access_key.{field_name}: the environment variable {variable} "
                    "is not set or empty; set it, or read the value from a file (*_file)"
                )
        for field_name in ("id_file", "secret_file", "security_token_file"):
            path = getattr(key, field_name)
            if path is None:
                continue
            try:
                _read_key_file(path)
            except ValueError as exc:
                problems.append(f"accounts[{index}].access_key.{field_name}: {exc}")
    return problems


def _read_key_file(path: str) -> str:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ValueError(f"{path} is larger than {_MAX_KEY_FILE_BYTES} bytes; it should hold one key only")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"{path} is empty")
    return value


@dataclass(frozen=True, slots=True)
class _FilePart:
    """One part of an AccessKey read from a file, re-read only when the file changes."""

    path: str

    def signature(self) -> tuple[int, int, int]:
        status = os.stat(self.path)
        return (status.st_mtime_ns, status.st_size, status.st_ino)


class _AccessKeyProvider:
    """An alibabacloud-credentials provider over an access_key source (so AssumeRole can sign with it)."""

    def __init__(self, source: AccessKeySource, environ: Mapping[str, str]) -> None:
        self._parts: dict[str, Callable[[], str | None]] = {
            "id": self._part(source.id, source.id_env, source.id_file, environ),
            "secret": self._part(
                source.secret.get_secret_value() if source.secret else None,
                source.secret_env,
                source.secret_file,
                environ,
            ),
            "token": self._part(None, source.security_token_env, source.security_token_file, environ),
        }
        self._cache: dict[str, tuple[tuple[int, int, int], str]] = {}

    def _part(
        self, inline: str | None, variable: str | None, path: str | None, environ: Mapping[str, str]
    ) -> Callable[[], str | None]:
        if path is not None:
            part = _FilePart(path)
            return lambda: self._read(part)
        value = inline if inline is not None else (environ.get(variable, "") if variable else None)
        return lambda: value

    def _read(self, part: _FilePart) -> str:
        signature = part.signature()
        cached = self._cache.get(part.path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        value = _read_key_file(part.path)
        self._cache[part.path] = (signature, value)
        return value

    def get_credentials(self) -> Any:
        from alibabacloud_credentials.provider.refreshable import Credentials as LibraryCredentials

        try:
            key_id, secret, token = (self._parts[name]() for name in ("id", "secret", "token"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"AccessKey file: {exc}") from None
        return LibraryCredentials(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token or None,
            provider_name=self.get_provider_name(),
        )

    async def get_credentials_async(self) -> Any:
        return self.get_credentials()

    def get_provider_name(self) -> str:
        return "access_key"

    def __repr__(self) -> str:
        return "_AccessKeyProvider(**********)"


def _library_provider(account: Account, accounts: Mapping[str, Account], environ: Mapping[str, str]) -> Any:
    """The alibabacloud-credentials provider of ``account``'s source (built, not yet asked)."""
    from alibabacloud_credentials.provider import (
        CLIProfileCredentialsProvider,
        DefaultCredentialsProvider,
        EcsRamRoleCredentialsProvider,
        OIDCRoleArnCredentialsProvider,
        RamRoleArnCredentialsProvider,
    )

    if account.access_key is not None:
        return _AccessKeyProvider(account.access_key, environ)
    if account.assume_role is not None:
        role = account.assume_role
        upstream = _library_provider(accounts[role.source_account], accounts, environ)
        return RamRoleArnCredentialsProvider(
            credentials_provider=upstream,
            role_arn=role.role_arn,
            role_session_name=role.session_name,
            duration_seconds=role.duration_seconds,
            external_id=role.external_id,
            sts_region_id=role.sts_region,
            sts_endpoint=role.sts_endpoint,
        )
    if account.oidc is not None:
        oidc = account.oidc
        return OIDCRoleArnCredentialsProvider(
            role_arn=oidc.role_arn,
            oidc_provider_arn=oidc.oidc_provider_arn,
            oidc_token_file_path=oidc.oidc_token_file,
            role_session_name=oidc.session_name,
            duration_seconds=oidc.duration_seconds,
            sts_region_id=oidc.sts_region,
            sts_endpoint=oidc.sts_endpoint,
        )
    if account.ecs_ram_role is not None:
        return EcsRamRoleCredentialsProvider(role_name=account.ecs_ram_role.role_name)
    if account.cli_profile is not None:
        return CLIProfileCredentialsProvider(
            profile_name=account.cli_profile.profile, profile_file=account.cli_profile.file
        )
    return DefaultCredentialsProvider()


def credentials_for(
    account: Account, accounts: Mapping[str, Account], environ: Mapping[str, str] | None = None
) -> CredentialsProvider:
    """The credentials of ``account``; built lazily, so nothing is fetched before the first request.

    Sources that need a service to exist (OIDC token file, ECS metadata) raise from their
    constructor when it does not; that becomes the account's poll error, not a crash.
    """
    env = dict(os.environ if environ is None else environ)
    return LibraryCredentialsProvider(
        lambda: _library_provider(account, accounts, env),
        label=f"account {account.name} ({account.describe()})",
        secrets=lambda: _secrets_of(account, accounts, env),
    )


def _secrets_of(account: Account, accounts: Mapping[str, Account], environ: Mapping[str, str]) -> list[str]:
    """Values an error text must never show: every secret this account's chain of sources holds."""
    found = []
    current: Account | None = account
    seen: set[str] = set()
    while current is not None and current.name not in seen:
        seen.add(current.name)
        key = current.access_key
        if key is not None:
            if key.secret is not None:
                found.append(key.secret.get_secret_value())
            for variable in (key.secret_env, key.security_token_env):
                if variable and environ.get(variable):
                    found.append(environ[variable])
        current = accounts.get(current.assume_role.source_account) if current.assume_role else None
    return found
