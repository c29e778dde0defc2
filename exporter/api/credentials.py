"""Where the client's AccessKey comes from: explicit settings or the SDK's default chain.

Secrets are held as :class:`pydantic.SecretStr` from the moment they are read, so
a stray ``repr`` or log line shows ``**********`` instead of the value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from exporter.api.errors import EiamError

if TYPE_CHECKING:
    from alibabacloud_credentials.client import Client as ChainClient

# What each provider of the default chain reads, in the words an operator searches for.
_CHAIN_SOURCES = {
    "EnvironmentVariableCredentialsProvider": "ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET",
    "OIDCRoleArnCredentialsProvider": "OIDC/RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_*)",
    "CLIProfileCredentialsProvider": "~/.aliyun/config.json",
    "ProfileCredentialsProvider": "~/.alibabacloud/credentials.ini",
    "EcsRamRoleCredentialsProvider": "ECS RAM role",
    "CredentialsUriCredentialsProvider": "ALIBABA_CLOUD_CREDENTIALS_URI",
}
_HOW_TO_SET = (
    "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
    "(or IDAAS_EXPORTER_ACCESS_KEY_ID/_SECRET), or use RRSA or an ECS RAM role"
)


class CredentialsError(EiamError):
    """No usable AccessKey could be obtained; the message names where we looked and how to set one.

    A poll failure like any other: the poll is counted as failed and ``idaas_up`` drops to 0.
    """

    def __init__(self, message: str) -> None:
        self.action = "credentials"
        super().__init__(message)

    @property
    def metric_code(self) -> str:
        return "CredentialsError"


def chain_failure_message(error: Exception) -> str:
    """One line naming the chain's sources that were tried; never the providers' raw text."""
    tried = [
        _CHAIN_SOURCES.get(name, name.removesuffix("CredentialsProvider"))
        for name in dict.fromkeys(re.findall(r"(\w+CredentialsProvider)", str(error)))
    ]
    where = ", ".join(tried) if tried else "the default credential chain"
    return f"no Alibaba Cloud credentials found (tried {where}); {_HOW_TO_SET}"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    provider_name: str = "static_ak"

    def __repr__(self) -> str:
        token = ", security_token=**********" if self.security_token else ""
        return (
            f"Credentials(access_key_id={self.access_key_id!r}, "
            f"access_key_secret=**********{token}, provider_name={self.provider_name!r})"
        )


class CredentialsProvider(Protocol):
    async def get(self) -> Credentials:
        """Return credentials valid for the next request (refreshing as needed)."""
        ...


class StaticCredentialsProvider:
    """AccessKey id/secret (and optional STS token) given explicitly in settings."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: SecretStr,
        security_token: SecretStr | None = None,
    ) -> None:
        if not access_key_id or not access_key_secret.get_secret_value():
            raise CredentialsError(f"AccessKey id and secret must both be non-empty; {_HOW_TO_SET}")
        has_token = security_token is not None and bool(security_token.get_secret_value())
        self._credentials = Credentials(
            access_key_id,
            access_key_secret,
            security_token if has_token else None,
            "static_sts" if has_token else "static_ak",
        )

    async def get(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentialsProvider({self._credentials!r})"


class DefaultChainCredentialsProvider:
    """The alibabacloud-credentials default chain: env, OIDC/RRSA, CLI profile, ini file, ECS role.

    The chain caches and refreshes STS credentials itself; we ask it before every
    request so a rotated token is picked up without a restart.
    """

    def __init__(self, client: ChainClient | None = None) -> None:
        self._client = client

    def _chain(self) -> ChainClient:
        # Built lazily: constructing the chain starts a background refresh thread
        # and reads the environment, which tests and `--help` should not pay for.
        if self._client is None:
            from alibabacloud_credentials.client import Client as ChainClient

            self._client = ChainClient()
            silence_library_log()
        return self._client

    async def get(self) -> Credentials:
        try:
            model = await self._chain().get_credential_async()
        except Exception as exc:  # the chain raises bare Exceptions of several kinds
            raise CredentialsError(chain_failure_message(exc)) from None
        if not model.access_key_id or not model.access_key_secret:
            raise CredentialsError(f"the default credential chain returned an empty AccessKey; {_HOW_TO_SET}")
        token = model.security_token or None
        return Credentials(
            model.access_key_id,
            SecretStr(model.access_key_secret),
            SecretStr(token) if token else None,
            model.provider_name or "default",
        )

    def __repr__(self) -> str:
        return "DefaultChainCredentialsProvider()"


# An error text of a credentials library is shown in logs and on the landing page; bound it.
_MAX_ERROR_CHARS = 300


def silence_library_log() -> None:
    """Keep alibabacloud-credentials' own log off stderr.

    Its provider modules attach a plain StreamHandler to the ``credentials`` logger when they are
    imported and log each failed refresh with a traceback, several times per failure, which breaks
    the one-line logfmt/JSON log. The failure still reaches the log once, from the poll that it
    failed, as a one-line error naming the account.
    """
    library_log = logging.getLogger("credentials")
    for handler in list(library_log.handlers):
        library_log.removeHandler(handler)
    library_log.propagate = False
    # Modules imported later add handlers again; a level above CRITICAL drops records before any handler.
    library_log.setLevel(logging.CRITICAL + 1)


class LibraryCredentialsProvider:
    """Any alibabacloud-credentials provider (AssumeRole, OIDC, ECS RAM role, CLI profile, ...).

    ``factory`` builds the provider on first use and again after it failed to build, so a
    source that is not there yet (an OIDC token file still being mounted) is retried on the
    next poll. ``secrets`` lists values an error text must never show.
    """

    def __init__(self, factory: Callable[[], Any], *, label: str, secrets: Callable[[], list[str]] = list) -> None:
        self._factory = factory
        self._provider: Any = None
        self._label = label
        self._secrets = secrets

    async def get(self) -> Credentials:
        try:
            if self._provider is None:
                self._provider = self._factory()
                silence_library_log()
            model = await self._provider.get_credentials_async()
        except Exception as exc:  # the library raises ValueError, CredentialException and bare Exceptions
            raise CredentialsError(f"{self._label}: {self._scrub(exc)}") from None
        key_id, secret = model.get_access_key_id(), model.get_access_key_secret()
        if not key_id or not secret:
            raise CredentialsError(f"{self._label}: the credential source returned an empty AccessKey")
        token = model.get_security_token() or None
        return Credentials(
            key_id, SecretStr(secret), SecretStr(token) if token else None, model.get_provider_name() or "library"
        )

    def _scrub(self, exc: Exception) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "**********")
        return text[:_MAX_ERROR_CHARS]

    def __repr__(self) -> str:
        return f"LibraryCredentialsProvider({self._label!r})"
