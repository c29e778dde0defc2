"""Where the client's AccessKey comes from: explicit settings or the SDK's default chain.

Secrets are held as :class:`pydantic.SecretStr` from the moment they are read, so
a stray ``repr`` or log line shows ``**********`` instead of the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

if TYPE_CHECKING:
    from alibabacloud_credentials.client import Client as ChainClient


class CredentialsError(Exception):
    """No usable AccessKey could be obtained; the message names where we looked."""


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
            raise CredentialsError("AccessKey id and secret must both be non-empty")
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
        return self._client

    async def get(self) -> Credentials:
        try:
            model = await self._chain().get_credential_async()
        except Exception as exc:  # the chain raises bare Exceptions of several kinds
            raise CredentialsError(
                "no Alibaba Cloud credentials found by the default chain "
                "(ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, OIDC/RRSA, ~/.aliyun/config.json, "
                "~/.alibabacloud/credentials.ini, ECS RAM role); set one of them or "
                f"IDAAS_EXPORTER_ACCESS_KEY_ID/SECRET: {type(exc).__name__}"
            ) from None
        if not model.access_key_id or not model.access_key_secret:
            raise CredentialsError("the default credential chain returned an empty AccessKey")
        token = model.security_token or None
        return Credentials(
            model.access_key_id,
            SecretStr(model.access_key_secret),
            SecretStr(token) if token else None,
            model.provider_name or "default",
        )

    def __repr__(self) -> str:
        return "DefaultChainCredentialsProvider()"
