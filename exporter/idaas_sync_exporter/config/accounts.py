"""Accounts of the configuration file: where each account's AccessKey comes from.

An account names exactly one credential source. Secrets are never read from the file itself
unless the file says ``allow_inline_secrets: true``; environment variables are read once at
start (a missing one is a start-up error naming it), files on every request when they have
changed (Kubernetes rewrites mounted Secrets in place), and every other source is the
alibabacloud-credentials provider of that name, which refreshes its own STS tokens.

Each value is checked where it is read (see :func:`idaas_sync_exporter.api.credentials.checked_credential`),
at start and again whenever a file changes; a key file must be a small regular file, and is read
off the event loop, so a FIFO or a device put in its place cannot stop the exporter. The files the
credentials library reads itself (an OIDC token, a CLI profile, the default chain's) are checked the
same way before it reads them, as it reads them whole. A secret's variable name and file path are
never shown: a secret pasted into the wrong field is a valid name and path.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from idaas_sync_exporter.api.credentials import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    MAX_OIDC_TOKEN_BYTES,
    MAX_PROFILE_FILE_BYTES,
    SECURITY_TOKEN,
    CredentialPart,
    CredentialsError,
    CredentialsProvider,
    LibraryCredentialsProvider,
    LibraryFile,
    chain_failure_message,
    checked_credential,
    default_chain_files,
    library_file_problem,
)
from idaas_sync_exporter.files import SmallFileError, read_small_file, shown_path

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ROLE_ARN = re.compile(r"^acs:ram::\d{1,20}:role/[A-Za-z0-9._@/-]{1,128}$")
# STS's RoleSessionName: 2-64 of letters, digits, '.', '@', '-', '_'.
SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
SOURCES = ("access_key", "assume_role", "oidc", "ecs_ram_role", "cli_profile", "default_chain")
DEFAULT_SESSION_NAME = "idaas-sync-exporter"
# AccessKey values are short and STS tokens a few KiB; a larger "key file" is a wrong path, not a key.
_MAX_KEY_FILE_BYTES = 16 * 1024
# Which value each field of an access_key source gives.
_PART_OF_FIELD: dict[str, CredentialPart] = {
    "id": ACCESS_KEY_ID,
    "id_env": ACCESS_KEY_ID,
    "id_file": ACCESS_KEY_ID,
    "secret": ACCESS_KEY_SECRET,
    "secret_env": ACCESS_KEY_SECRET,
    "secret_file": ACCESS_KEY_SECRET,
    "security_token": SECURITY_TOKEN,
    "security_token_env": SECURITY_TOKEN,
    "security_token_file": SECURITY_TOKEN,
}

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

    def inline_token(self) -> SecretStr | None:
        """An STS token given with the key itself: only the settings give one (a file names a variable or file)."""
        return None

    def inline_name(self, field_name: str) -> str:
        """How an error names a value written inline (``id``, ``secret``, ``security_token``)."""
        return f"{field_name} in the config file"

    def provider_name(self, with_token: bool) -> str:
        """What requests name as their credentials provider (``x-acs-credentials-provider``)."""
        return "access_key"


class SettingsKeySource(AccessKeySource):
    """The flat settings' AccessKey (``IDAAS_EXPORTER_ACCESS_KEY_ID``...), as the source of the ``default`` account.

    Built by :func:`settings_account`, never read from a file: a file's ``access_key`` is an
    :class:`AccessKeySource`, which refuses these fields.
    """

    security_token: SecretStr | None = None
    # Each value's setting as an error names it: the variable, the flag and the file key.
    names: dict[str, str] = Field(default_factory=dict)

    def inline_token(self) -> SecretStr | None:
        return self.security_token

    def inline_name(self, field_name: str) -> str:
        return self.names.get(field_name, field_name)

    def provider_name(self, with_token: bool) -> str:
        # The names the SDK's own static providers send, as the settings' key always has.
        return "static_sts" if with_token else "static_ak"


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
            where = (
                key.id_env
                or key.id_file
                or ("the settings" if isinstance(key, SettingsKeySource) else "the config file")
            )
            return f"access_key id from {where}"
        return self.source


def settings_account(
    name: str,
    access_key_id: str | None,
    access_key_secret: SecretStr | None,
    security_token: SecretStr | None,
    *,
    names: Mapping[str, str],
) -> Account:
    """The account of the flat settings: their AccessKey, or the default chain when they give none.

    One account like any of the config file's, so its credentials come from the same factory
    (:func:`credentials_for`); ``names`` says how an error calls each value (``id``, ``secret``,
    ``security_token``): by the setting the user gave it as, never by its value.
    """
    if not access_key_id or access_key_secret is None:
        return Account(name=name, default_chain=DefaultChainSource())
    token = security_token if security_token is not None and security_token.get_secret_value().strip() else None
    source = SettingsKeySource(id=access_key_id, secret=access_key_secret, security_token=token, names=dict(names))
    return Account(name=name, access_key=source)


def inline_key_problems(account: Account) -> list[str]:
    """Problems with the values an account's ``access_key`` holds inline, each named as the source names it."""
    key = account.access_key
    if key is None:
        return []
    problems = []
    if key.id is not None:
        problems += _problem_of(key.id, "id", key.inline_name("id"))
    if key.secret is not None:
        problems += _problem_of(key.secret.get_secret_value(), "secret", key.inline_name("secret"))
    token = key.inline_token()
    if token is not None:
        problems += _problem_of(token.get_secret_value(), "security_token", key.inline_name("security_token"))
    return problems


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
                # Not quoted: like every field of an account, it may hold a secret pasted into the wrong key.
                f"accounts[{index}].assume_role.source_account: no account has the name given "
                f"(the value is not shown: it may be a pasted secret); accounts are {', '.join(sorted(first_index))}"
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
    """Problems with the values, variables and files of access_key sources, each naming its path in the file.

    Every value is read and checked here, so that a bad one stops the exporter at start with one
    line instead of failing every poll; none is ever quoted.
    """
    problems = []
    for index, account in enumerate(accounts):
        # A file the library reads that is there already must be fit to read; one not there yet
        # (an OIDC token still being mounted) fails the polls until it is.
        for file in _own_library_files(account, environ):
            if (problem := library_file_problem(file)) is not None:
                problems.append(f"accounts[{index}].{account.source}: {problem}")
        key = account.access_key
        if key is None:
            continue
        where = f"accounts[{index}].access_key"
        if key.id is not None:
            problems += _problem_of(key.id, "id", f"{where}.id")
        if key.secret is not None:
            problems += _problem_of(key.secret.get_secret_value(), "secret", f"{where}.secret")
        for field_name in ("id_env", "secret_env", "security_token_env"):
            variable = getattr(key, field_name)
            if variable is None:
                continue
            if not environ.get(variable, "").strip():
                named = f"the environment variable {variable}" if _shows_name(field_name) else _NAME_NOT_SHOWN
                problems.append(
                    f"{where}.{field_name}: {named} is not set or empty; set it, or read the value from a file (*_file)"
                )
                continue
            problems += _problem_of(environ[variable], field_name, _source(f"{where}.{field_name}", variable))
        for field_name in ("id_file", "secret_file", "security_token_file"):
            path = getattr(key, field_name)
            if path is None:
                continue
            try:
                value = read_key_file(path)
            except KeyFileError as exc:
                problems.append(f"{where}.{field_name}: {_file_problem(exc, field_name, path)}")
                continue
            problems += _problem_of(value, field_name, _source(f"{where}.{field_name}", path))
    return problems


# A secret pasted into secret_env or secret_file instead of its name or path is a valid variable
# name or path, so the name and path of a secret are never shown; those of an id may be.
_NAME_NOT_SHOWN = "the environment variable it names (the name is not shown: it may be a pasted secret)"
_PATH_NOT_SHOWN = "the file it names (the path is not shown: it may be a pasted secret)"


def _shows_name(field_name: str) -> bool:
    """Whether the variable name or path in ``field_name`` may be shown: only an id's."""
    return field_name.startswith("id")


def _source(field: str, name_or_path: str) -> str:
    """How a problem names where a value came from: the field, with the variable or path when it may be shown."""
    return f"{field} {name_or_path}" if _shows_name(field.rpartition(".")[2]) else field


def _file_problem(error: OSError | KeyFileError, field_name: str, path: str) -> str:
    """The problem of reading the file of ``field_name``, its path left out unless it may be shown."""
    text = f"cannot read {shown_path(path)}: {error.strerror}" if isinstance(error, OSError) else str(error)
    if _shows_name(field_name):
        return text
    # The path, as a message shows it (a long one quoted and cut), opens the message or follows
    # "cannot read"; a short path may also be a part of other words.
    for written in dict.fromkeys((shown_path(path), path)):
        for lead in ("", "cannot read "):
            if text.startswith(lead + written):
                return lead + _PATH_NOT_SHOWN + text[len(lead + written) :]
    for written in dict.fromkeys((shown_path(path), path)):
        text = text.replace(written, _PATH_NOT_SHOWN)
    return text


def _problem_of(value: str, field_name: str, source: str) -> list[str]:
    """The one-line problem of ``value`` as the value of ``field_name``, or none."""
    try:
        checked_credential(value, _PART_OF_FIELD[field_name], source)
    except CredentialsError as exc:
        return [str(exc)]
    return []


class KeyFileError(ValueError):
    """A key file cannot be read as one; the message names the path and never the contents."""


def read_key_file(path: str) -> str:
    """The text of the key file at ``path`` (symlinks followed); KeyFileError if it is not a small regular file.

    Read by :func:`idaas_sync_exporter.files.read_small_file`: opened without blocking and judged on the
    open descriptor, so a FIFO, a device such as /dev/zero or a file swapped in is refused at once.
    """
    try:
        data = read_small_file(
            path,
            _MAX_KEY_FILE_BYTES,
            too_large="it should hold one key only",
            not_regular="point it at a file holding only the key",
        )
    except SmallFileError as exc:
        raise KeyFileError(str(exc)) from None
    # Undecodable bytes become U+FFFD, which the value check refuses as non-ASCII.
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class _FilePart:
    """One part of an AccessKey read from a file, re-read only when the file changes."""

    path: str
    field_name: str

    def signature(self) -> tuple[int, int, int, int]:
        status = os.stat(self.path)
        return (status.st_mtime_ns, status.st_size, status.st_ino, status.st_mode)


class _AccessKeyProvider:
    """An alibabacloud-credentials provider over an access_key source (so AssumeRole can sign with it)."""

    def __init__(self, source: AccessKeySource, environ: Mapping[str, str]) -> None:
        self._source = source
        self._parts: dict[str, Callable[[], str | None]] = {
            "id": self._part("id", source.id, source.id_env, source.id_file, environ),
            "secret": self._part(
                "secret",
                source.secret.get_secret_value() if source.secret else None,
                source.secret_env,
                source.secret_file,
                environ,
            ),
            "token": self._part(
                "security_token",
                token.get_secret_value() if (token := source.inline_token()) else None,
                source.security_token_env,
                source.security_token_file,
                environ,
            ),
        }
        self._cache: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def _part(
        self, name: str, inline: str | None, variable: str | None, path: str | None, environ: Mapping[str, str]
    ) -> Callable[[], str | None]:
        if path is not None:
            file_part = _FilePart(path, f"{name}_file")
            return lambda: self._read(file_part)
        if variable is not None:
            field_name, value = f"{name}_env", environ.get(variable, "")
            source = _source(field_name, variable)
        elif inline is not None:
            field_name, value, source = name, inline, self._source.inline_name(name)
        else:
            return lambda: None
        part = _PART_OF_FIELD[field_name]
        return lambda: checked_credential(value, part, source) if value.strip() else None

    def _read(self, part: _FilePart) -> str:
        source = _source(part.field_name, part.path)
        try:
            signature = part.signature()
            cached = self._cache.get(part.path)
            if cached is not None and cached[0] == signature:
                return cached[1]
            value = checked_credential(read_key_file(part.path), _PART_OF_FIELD[part.field_name], source)
        except (KeyFileError, OSError) as exc:
            raise CredentialsError(f"{part.field_name}: {_file_problem(exc, part.field_name, part.path)}") from None
        self._cache[part.path] = (signature, value)
        return value

    def get_credentials(self) -> Any:
        from alibabacloud_credentials.provider.refreshable import Credentials as LibraryCredentials

        key_id, secret, token = (self._parts[name]() for name in ("id", "secret", "token"))
        return LibraryCredentials(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token or None,
            provider_name=self._source.provider_name(bool(token)),
        )

    async def get_credentials_async(self) -> Any:
        # Reading a file may block (a slow disk, a FIFO's open racing a swap); never on the event loop.
        return await asyncio.to_thread(self.get_credentials)

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
            # The file checked before each request is the file read, whoever names it.
            oidc_token_file_path=_oidc_token_file(oidc, environ),
            role_session_name=oidc.session_name,
            duration_seconds=oidc.duration_seconds,
            sts_region_id=oidc.sts_region,
            sts_endpoint=oidc.sts_endpoint,
        )
    if account.ecs_ram_role is not None:
        return EcsRamRoleCredentialsProvider(role_name=account.ecs_ram_role.role_name)
    if account.cli_profile is not None:
        return CLIProfileCredentialsProvider(
            profile_name=account.cli_profile.profile, profile_file=_cli_profile_file(account.cli_profile, environ)
        )
    return _DefaultChain(DefaultCredentialsProvider())


class _DefaultChain:
    """The library's default chain, its failure told as the sources it tried and how to set one.

    The chain's own text lists each provider's exception in turn, some quoting an answer; what an
    operator needs is where it looked.
    """

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    async def get_credentials_async(self) -> Any:
        try:
            return await self._chain.get_credentials_async()
        except Exception as exc:  # the chain raises bare Exceptions of several kinds
            raise CredentialsError(chain_failure_message(exc)) from None


def credentials_for(
    account: Account,
    accounts: Mapping[str, Account],
    environ: Mapping[str, str] | None = None,
    *,
    label: str | None = None,
) -> CredentialsProvider:
    """The credentials of ``account``; built lazily, so nothing is fetched before the first request.

    Every source, the flat settings' included (:func:`settings_account`), is built here: a new
    source is a field of :class:`Account` and a branch of :func:`_library_provider`. Sources that
    need a service to exist (OIDC token file, ECS metadata) raise from their constructor when it
    does not; that becomes the account's poll error, not a crash. ``label`` opens each error
    (default: the account's name and source).
    """
    env = dict(os.environ if environ is None else environ)
    return LibraryCredentialsProvider(
        lambda: _library_provider(account, accounts, env),
        label=label or f"account {account.name} ({account.describe()})",
        secrets=lambda: _secrets_of(account, accounts, env),
        files=lambda: _library_files(account, accounts, env),
    )


def _oidc_token_file(oidc: OidcSource, environ: Mapping[str, str]) -> str | None:
    return oidc.oidc_token_file or environ.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE") or None


def _cli_profile_file(profile: CliProfileSource, environ: Mapping[str, str]) -> str:
    home = environ.get("HOME") or environ.get("HOMEPATH") or os.path.expanduser("~")
    return profile.file or os.path.join(home, ".aliyun", "config.json")


def _own_library_files(account: Account, environ: Mapping[str, str]) -> list[LibraryFile]:
    """The files the credentials library reads for ``account``'s own source (none for an access_key's)."""
    if account.oidc is not None:
        path = _oidc_token_file(account.oidc, environ)
        named_by = "" if account.oidc.oidc_token_file else " (ALIBABA_CLOUD_OIDC_TOKEN_FILE)"
        return [LibraryFile(f"the OIDC token file{named_by}", path, MAX_OIDC_TOKEN_BYTES)] if path else []
    if account.cli_profile is not None:
        path = _cli_profile_file(account.cli_profile, environ)
        return [LibraryFile("the CLI profile file", path, MAX_PROFILE_FILE_BYTES)]
    if account.default_chain is not None:
        return default_chain_files(environ)
    return []


def _library_files(account: Account, accounts: Mapping[str, Account], environ: Mapping[str, str]) -> list[LibraryFile]:
    """The files the library reads for ``account``: its source's and, for a role, its source account's."""
    found = []
    current: Account | None = account
    seen: set[str] = set()
    while current is not None and current.name not in seen:
        seen.add(current.name)
        found += _own_library_files(current, environ)
        current = accounts.get(current.assume_role.source_account) if current.assume_role else None
    return found


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
            if (token := key.inline_token()) is not None:
                found.append(token.get_secret_value())
            for variable in (key.secret_env, key.security_token_env):
                if variable and environ.get(variable):
                    found.append(environ[variable])
        current = accounts.get(current.assume_role.source_account) if current.assume_role else None
    return found
