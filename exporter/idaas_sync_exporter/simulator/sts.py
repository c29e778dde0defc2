"""A stand-in for STS AssumeRole (RPC style, HMAC-SHA1 signature version 1.0), served over TLS.

It checks what STS checks before handing out a role's credentials: the AccessKey exists, the
signature, the timestamp and nonce, that the role exists, that its trust policy names the
caller's account, the ExternalId the policy requires, and the session name and duration.

The credentials it issues are self-contained, as real STS tokens are: the security token
carries the role, its account, the session and the expiry, sealed with an HMAC keyed by the
secret of the AccessKey that signed the AssumeRole. Any simulator that read the same accounts
file can therefore accept them, and none has to share state with the STS process. The secret
issued with them is derived the same way, so it never needs to be stored or sent anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import SecretStr

from idaas_sync_exporter.simulator.actions import ActionError
from idaas_sync_exporter.simulator.cloud import STS_KEY_PREFIX, Cloud, Role
from idaas_sync_exporter.simulator.server import AccessKey, FreshRequests

log = logging.getLogger(__name__)

STS_VERSION = "2015-04-01"
_TOKEN_PREFIX = "SIMSTS1"  # noqa: S105 - marks the stand-in's tokens, and is no secret
_SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
_REQUIRED = (
    "Action",
    "Version",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
)


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def rpc_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    """The RPC (signature version 1.0) signature of ``params``, as Alibaba Cloud documents it."""
    canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()) if k != "Signature")
    string_to_sign = f"{method}&{_encode('/')}&{_encode(canonical)}"
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, text: str) -> bytes:
    return hmac.new(secret.encode(), f"{purpose}\n{text}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Session:
    """What an issued security token says."""

    key_id: str
    account: str
    role_arn: str
    session_name: str
    source_key_id: str
    expires: int  # epoch seconds


class Sessions:
    """Issues and recognises the STS stand-in's temporary credentials for the accounts of ``cloud``."""

    def __init__(self, cloud: Cloud, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.cloud = cloud
        self._wall_clock = wall_clock

    def issue(self, session: Session) -> tuple[str, SecretStr, SecretStr]:
        """(AccessKey id, secret, security token) of ``session``, whose source key must be the cloud's."""
        source = self.cloud.keys[session.source_key_id].access_key_secret.get_secret_value()
        payload = _b64(
            json.dumps(
                {
                    "k": session.key_id,
                    "a": session.account,
                    "r": session.role_arn,
                    "s": session.session_name,
                    "src": session.source_key_id,
                    "exp": session.expires,
                },
                separators=(",", ":"),
            ).encode()
        )
        token = f"{_TOKEN_PREFIX}.{payload}.{_b64(_mac(source, 'token', payload))}"
        return session.key_id, SecretStr(_b64(_mac(source, "secret", session.key_id))[:32]), SecretStr(token)

    def key(self, key_id: str, token: str | None, served: set[str]) -> AccessKey | None:
        """The issued key ``key_id`` with its token, limited to its account's instances among ``served``.

        None when ``key_id`` is not an STS key; ActionError, as the API answers, when the token
        is missing, forged, for another key or expired.
        """
        if not key_id.startswith(STS_KEY_PREFIX):
            return None
        if not token:
            raise ActionError(400, "InvalidSecurityToken.Malformed", "An STS AccessKey needs its SecurityToken.")
        session = self._session(token)
        if session is None:
            raise ActionError(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken is not valid.")
        if session.key_id != key_id:
            raise ActionError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken does not belong to the AccessKey.",
            )
        if session.expires <= self._wall_clock():
            raise ActionError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        key_id, secret, _ = self.issue(session)
        return AccessKey(
            key_id, secret, SecretStr(token), instances=self.cloud.account_instances(session.account, served)
        )

    def _session(self, token: str) -> Session | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
            return None
        try:
            fields = json.loads(_unb64(parts[1]))
            session = Session(
                key_id=str(fields["k"]),
                account=str(fields["a"]),
                role_arn=str(fields["r"]),
                session_name=str(fields["s"]),
                source_key_id=str(fields["src"]),
                expires=int(fields["exp"]),
            )
            seal = _unb64(parts[2])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        source = self.cloud.keys.get(session.source_key_id)
        role = self.cloud.roles.get(session.role_arn)
        if source is None or role is None or role.account != session.account:
            return None
        expected = _mac(source.access_key_secret.get_secret_value(), "token", parts[1])
        return session if hmac.compare_digest(expected, seal) else None


class StsApp:
    """The AssumeRole endpoint of the accounts file's roles."""

    def __init__(self, sessions: Sessions, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.cloud = sessions.cloud
        self._wall_clock = wall_clock
        self._fresh = FreshRequests(wall_clock)
        self.issued = 0

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4()).upper()
        params = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params.update({key: str(value) for key, value in (await request.post()).items()})
        try:
            answer = self.assume_role(request.method, params)
        except ActionError as exc:
            body = {"RequestId": request_id, "HostId": "sts.simulator.local", "Code": exc.code, "Message": exc.message}
            return web.json_response(body, status=exc.status)
        return web.json_response({"RequestId": request_id, **answer})

    def assume_role(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        """The answer to an AssumeRole request with ``params``; ActionError as STS refuses it."""
        source = self._caller(method, params)
        caller = self.cloud.key_accounts[source.access_key_id]
        role = self._role(params, caller)
        session_name = params["RoleSessionName"]
        duration = _duration(params.get("DurationSeconds", "3600"), role.max_session_duration)
        expires = int(self._wall_clock()) + duration
        session = Session(
            key_id=f"{STS_KEY_PREFIX}{secrets.token_hex(12)}",
            account=role.account,
            role_arn=role.role_arn,
            session_name=session_name,
            source_key_id=source.access_key_id,
            expires=expires,
        )
        key_id, secret, token = self.sessions.issue(session)
        self.issued += 1
        log.info(
            "sts issued credentials",
            extra={"account": role.account, "role_arn": role.role_arn, "session_name": session_name, "caller": caller},
        )
        return {
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{role.owner_uid}:assumed-role/{role.role_name}/{session_name}",
                "AssumedRoleId": f"{int(hashlib.sha256(role.role_arn.encode()).hexdigest()[:15], 16)}:{session_name}",
            },
            "Credentials": {
                "AccessKeyId": key_id,
                "AccessKeySecret": secret.get_secret_value(),
                "SecurityToken": token.get_secret_value(),
                "Expiration": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def _caller(self, method: str, params: dict[str, str]) -> AccessKey:
        """The AccessKey that signed the request, once the request and its signature check out."""
        for name in (*_REQUIRED, "RoleArn", "RoleSessionName"):
            if not params.get(name):
                raise ActionError(
                    400,
                    "MissingParameter",
                    f"The input parameter {name} that is mandatory for processing this request is not supplied.",
                )
        if params["Action"] != "AssumeRole":
            raise ActionError(404, "InvalidAction.NotFound", f"Specified api is not found: {params['Action']}.")
        if params["Version"] != STS_VERSION:
            raise ActionError(400, "InvalidVersion", f"Specified parameter Version is not valid: {params['Version']}.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise ActionError(
                400, "InvalidParameter", "Only SignatureMethod HMAC-SHA1, SignatureVersion 1.0 are served."
            )
        source = self.cloud.keys.get(params["AccessKeyId"])
        if source is None:
            raise ActionError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        expected = rpc_signature(params, source.access_key_secret.get_secret_value(), method)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise ActionError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        if source.security_token is not None and (
            params.get("SecurityToken") != source.security_token.get_secret_value()
        ):
            raise ActionError(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken is not valid.")
        self._fresh.check(params["Timestamp"], params["SignatureNonce"])
        return source

    def _role(self, params: dict[str, str], caller: str) -> Role:
        """The role asked for, once its trust policy lets ``caller``'s account assume it."""
        role = self.cloud.roles.get(params["RoleArn"])
        if role is None:
            raise ActionError(404, "EntityNotExist.Role", f"The role does not exist: {params['RoleArn']}.")
        if caller not in role.trusted_accounts:
            raise ActionError(
                403,
                "NoPermission",
                "You are not authorized to do this action: the role's trust policy does not name your account.",
            )
        if role.external_id is not None and not hmac.compare_digest(
            params.get("ExternalId", "").encode(), role.external_id.encode()
        ):
            raise ActionError(
                403,
                "NoPermission",
                "You are not authorized to do this action: the ExternalId does not match the role's trust policy.",
            )
        if not _SESSION_NAME.match(params["RoleSessionName"]):
            raise ActionError(
                400, "InvalidParameter.RoleSessionName", "RoleSessionName must be 2 to 64 of [A-Za-z0-9.@_-]."
            )
        return role


def _duration(raw: str, maximum: int) -> int:
    try:
        duration = int(raw)
    except ValueError:
        duration = -1
    if not 900 <= duration <= maximum:
        raise ActionError(
            400,
            "InvalidParameter.DurationSeconds",
            f"DurationSeconds must be between 900 and the role's maximum session duration, {maximum}.",
        )
    return duration


def server_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The STS stand-in's TLS context; OSError or ssl.SSLError when the files cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


class RunningSts:
    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def endpoint(self) -> str:
        """``host:port``, as an account's ``sts_endpoint`` names it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_sts(app: StsApp, tls: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> RunningSts:
    runner = web.AppRunner(app.build(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return RunningSts(runner, host, bound)
