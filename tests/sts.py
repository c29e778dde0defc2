"""A stand-in for STS AssumeRole over TLS on loopback, checking the RPC (v1, HMAC-SHA1) signature itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.e2e import free_port


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def rpc_signature(query: dict[str, str], secret: str, method: str = "GET") -> str:
    """The RPC signature as Alibaba Cloud documents it, written here rather than taken from the SDK."""
    canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items()) if k != "Signature")
    string_to_sign = f"{method}&{_encode('/')}&{_encode(canonical)}"
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class FakeSts:
    """Accepts AssumeRole signed with ``keys`` (id -> secret) and hands out ``issued``."""

    keys: dict[str, str]
    issued: dict[str, str]
    requests: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(query)
        secret = self.keys.get(query.get("AccessKeyId", ""))
        if secret is None or query.get("Signature") != rpc_signature(query, secret, request.method):
            return web.json_response({"Code": "SignatureDoesNotMatch", "Message": "bad signature"}, status=400)
        if query.get("Action") != "AssumeRole":
            return web.json_response({"Code": "InvalidAction"}, status=400)
        body: dict[str, Any] = {
            "RequestId": "sts-1",
            "AssumedRoleUser": {"Arn": query["RoleArn"] + "/" + query["RoleSessionName"], "AssumedRoleId": "1:x"},
            "Credentials": {**self.issued, "Expiration": "2099-01-01T00:00:00Z"},
        }
        return web.json_response(body)


@asynccontextmanager
async def fake_sts(sts: FakeSts, pki: Path) -> AsyncIterator[str]:
    """Serves ``sts`` over TLS with ``pki``'s server certificate; yields ``127.0.0.1:port``."""
    app = web.Application()
    app.router.add_route("*", "/", sts.handle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()
