"""The simulator's HTTP front: the EIAM wire protocol, signature checks and fault switches.

Requests are verified the way the real gateway does it: the query is form-decoded
and re-canonicalized (the SDK sends ``+`` for spaces but signs ``%20``), the
signature is recomputed over the declared ``SignedHeaders``, the body hash must
match ``x-acs-content-sha256`` and a nonce may be used only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import ClientConnectionResetError, web
from pydantic import SecretStr

from idaas_sync_exporter.api.flatten import unflatten
from idaas_sync_exporter.api.signing import parse_authorization, sign
from idaas_sync_exporter.simulator.actions import ActionError, Actions
from idaas_sync_exporter.simulator.world import World

log = logging.getLogger(__name__)

API_VERSION = "2021-12-01"
HOST_ID = "eiam.simulator.local"
REQUIRED_SIGNED = (
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)
MAX_CLOCK_SKEW_SECONDS = 15 * 60


class FreshRequests:
    """Refuses a request whose time is off by more than the allowed skew, or whose nonce was used already.

    One check for the API's signed requests (``x-acs-date``) and the STS stand-in's (``Timestamp``):
    both answer with the same codes.
    """

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._nonces: OrderedDict[str, float] = OrderedDict()

    def check(self, stamp: str, nonce: str) -> None:
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise ActionError(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        now = self._wall_clock()
        if abs(now - sent) > MAX_CLOCK_SKEW_SECONDS:
            raise ActionError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        while self._nonces and next(iter(self._nonces.values())) < now - MAX_CLOCK_SKEW_SECONDS:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            raise ActionError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[nonce] = now


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    # The instances this key's account owns (None: every instance); another account's
    # instance is answered as the API answers it, as one that does not exist.
    instances: frozenset[str] | None = None


@dataclass(slots=True)
class Faults:
    """Switches for tests and demos; rates are probabilities per request."""

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    latency_seconds: float = 0.0
    # When set, throttling answers carry x-acs-retry-after with this many milliseconds.
    retry_after_ms: int | None = None
    drop_rate: float = 0.0  # close the connection without an answer
    malformed_rate: float = 0.0  # 200 with a body that is not JSON
    truncated_rate: float = 0.0  # 200 with the real answer cut short
    repeat_token_rate: float = 0.0  # answer a NextToken request with the same NextToken
    duplicate_rate: float = 0.0  # a page starts with the previous page's last job again
    regress_rate: float = 0.0  # a final job is shown as running again
    trickle_byte_seconds: float = 0.0  # send each byte of an answer this long after the previous one
    oversized_bytes: float = 0.0  # answer 200 with a JSON body padded to this many bytes
    # Answer 200 with a gzip body that decodes to this many bytes (the answer, padded), compressed
    # as it is written, so the simulator never holds more than a megabyte of it.
    gzip_bomb_bytes: float = 0.0
    # Send answers with this Content-Encoding; each "gzip" in it is applied ("gzip, gzip" twice),
    # anything else (br, an unknown name) is only claimed, the body left as it is.
    content_encoding: str = ""
    # Appended to the Message of every error answer (throttling included): hostile text from the API.
    error_message_suffix: str = ""
    # Every request signed with one of these AccessKey ids is throttled (its account is over quota).
    throttled_keys: frozenset[str] = frozenset()

    def off(self) -> None:
        for switch in fields(self):
            setattr(self, switch.name, switch.default)


@dataclass(slots=True)
class RequestLog:
    """What the simulator saw, for tests that count calls."""

    actions: list[str] = field(default_factory=list)
    params: list[dict[str, str]] = field(default_factory=list)
    nonces: list[str] = field(default_factory=list)
    # The AccessKey id each request was signed with, and when (wall clock) it arrived.
    keys: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for a in self.actions if a == action)

    def by_key(self, access_key_id: str, since: float = 0.0) -> int:
        """Requests signed with ``access_key_id`` that arrived at or after ``since``."""
        return sum(1 for key, at in zip(self.keys, self.times, strict=True) if key == access_key_id and at >= since)


class SimulatorApp:
    def __init__(
        self,
        world: World,
        keys: list[AccessKey],
        *,
        faults: Faults | None = None,
        seed: int = 0,
        wall_clock: Callable[[], float] = time.time,
        session_keys: Callable[[str, str | None], AccessKey | None] | None = None,
    ) -> None:
        """``session_keys`` recognises temporary (STS) keys from their id and security token:
        the key, None for an id it does not issue, or ActionError for a bad token."""
        self.world = world
        self.actions = Actions(world)
        self.keys = {key.access_key_id: key for key in keys}
        self._session_keys = session_keys
        self.faults = faults or Faults()
        self.requests = RequestLog()
        self._rng = random.Random(f"{seed}/faults")
        self._wall_clock = wall_clock
        self._fresh = FreshRequests(wall_clock)

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_response_prepare.append(self._date_header)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        # The API's clock is the world's present as the API reports it: with a demo's compressed
        # clock, the wall clock, however fast the world runs.
        response.headers["Date"] = formatdate(self.world.api_now(), usegmt=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.UUID(int=self._rng.getrandbits(128))).upper()
        try:
            body = await request.read()
            query = dict(parse_qsl(request.query_string, keep_blank_values=True))
            action, key = self._verify(request, query, body)
            self.requests.actions.append(action)
            self.requests.params.append(query)
            self.requests.keys.append(key.access_key_id)
            self.requests.times.append(self._wall_clock())
            await self._inject_latency()
            self._inject_faults(key)
            self._check_scope(key, query.get("InstanceId"))
            if self._roll(self.faults.drop_rate):
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)
            params = unflatten(query)
            if action == "ListSynchronizationJobs" and params.get("NextToken"):
                if self._roll(self.faults.duplicate_rate):
                    params["DuplicateBoundary"] = "1"
                if self._roll(self.faults.repeat_token_rate):
                    answer = await asyncio.to_thread(self.actions.handle, action, dict(params), visible=key.instances)
                    answer["NextToken"] = params["NextToken"]
                    text = _dumps({"RequestId": request_id, **answer})
                    return web.Response(body=_wire_bytes(text), content_type="application/json")
            # Another account's instances are not listed, as they do not exist for this key.
            answer = await asyncio.to_thread(self.actions.handle, action, params, visible=key.instances)
        except ActionError as exc:
            return self._error(request_id, exc)
        if action == "ListSynchronizationJobs" and self._roll(self.faults.regress_rate):
            for job in answer.get("SynchronizationJobs", []):
                if job.get("EndTime"):
                    job["Status"] = "running"
                    job["Result"] = {}
                    del job["EndTime"]
                    break
        return await self._answer(request, _dumps({"RequestId": request_id, **answer}))

    async def _answer(self, request: web.Request, text: str) -> web.StreamResponse:
        """A successful answer, as the fault switches have it sent."""
        if self.faults.trickle_byte_seconds > 0 or self.faults.oversized_bytes > 0:
            return await self._stream_hostile(request, text)
        if self.faults.gzip_bomb_bytes > 0 or self.faults.content_encoding:
            return await self._stream_encoded(request, text)
        if self._roll(self.faults.malformed_rate):
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if self._roll(self.faults.truncated_rate):
            return web.Response(body=_wire_bytes(text[: len(text) // 2]), content_type="application/json")
        return web.Response(body=_wire_bytes(text), content_type="application/json")

    async def _stream_encoded(self, request: web.Request, text: str) -> web.StreamResponse:
        """The answer in ``faults.content_encoding`` (gzip by default), padded to ``gzip_bomb_bytes``."""
        claimed = self.faults.content_encoding or "gzip"
        layers = sum(1 for coding in claimed.split(",") if coding.strip().lower() == "gzip")
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": claimed})
        pieces = _bomb_pieces(_wire_bytes(text), int(self.faults.gzip_bomb_bytes))
        for _ in range(layers):
            pieces = _gzip_stream(pieces)
        with contextlib.suppress(ConnectionError, ClientConnectionResetError):
            await response.prepare(request)
            for piece in pieces:
                await response.write(piece)
            await response.write_eof()
        return response

    async def _stream_hostile(self, request: web.Request, text: str) -> web.StreamResponse:
        """A slow or huge answer, written piece by piece so the simulator itself stays small."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        # The client giving up on such an answer is what it should do ("Connection lost" included).
        with contextlib.suppress(ConnectionError, ClientConnectionResetError):
            await self._write_hostile(request, response, text)
        return response

    async def _write_hostile(self, request: web.Request, response: web.StreamResponse, text: str) -> None:
        await response.prepare(request)
        data = _wire_bytes(text)
        if self.faults.oversized_bytes > 0:
            padding = max(0, int(self.faults.oversized_bytes) - len(data))
            await response.write(data[:-1] + b',"Padding":"')
            chunk = b"x" * (1 << 20)
            while padding > 0:
                await response.write(chunk[: min(padding, len(chunk))])
                padding -= len(chunk)
            data = b'"}'
        for index in range(len(data)):
            if self.faults.trickle_byte_seconds > 0:
                await asyncio.sleep(self.faults.trickle_byte_seconds)
                await response.write(data[index : index + 1])
            else:
                await response.write(data[index:])
                break
        await response.write_eof()

    def _roll(self, rate: float) -> bool:
        return bool(rate) and self._rng.random() < rate

    # -- signature ------------------------------------------------------------

    def _verify(self, request: web.Request, query: dict[str, str], body: bytes) -> tuple[str, AccessKey]:
        if request.method != "POST" or request.path != "/":
            raise ActionError(404, "InvalidAction.NotFound", "Only POST / is served (RPC style).")
        headers = {name.lower(): value for name, value in request.headers.items()}
        authorization = headers.get("authorization", "")
        parsed = parse_authorization(authorization)
        if parsed is None:
            raise ActionError(
                400, "IncompleteSignature", "The Authorization header is missing or not ACS3-HMAC-SHA256."
            )
        missing = [name for name in REQUIRED_SIGNED if name not in parsed.signed_headers]
        if "x-acs-security-token" in headers and "x-acs-security-token" not in parsed.signed_headers:
            missing.append("x-acs-security-token")
        if missing:
            raise ActionError(400, "IncompleteSignature", f"These headers must be signed: {', '.join(missing)}.")
        absent = [name for name in parsed.signed_headers if name not in headers]
        if absent:
            raise ActionError(400, "IncompleteSignature", f"Signed headers are not present: {', '.join(absent)}.")
        body_hash = hashlib.sha256(body).hexdigest()
        if headers["x-acs-content-sha256"] != body_hash:
            raise ActionError(400, "IncompleteSignature", "x-acs-content-sha256 does not match the request body.")
        key = self.keys.get(parsed.access_key_id)
        if key is None and self._session_keys is not None:
            key = self._session_keys(parsed.access_key_id, headers.get("x-acs-security-token"))
        if key is None:
            raise ActionError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        signed = {name: headers[name] for name in parsed.signed_headers}
        expected = sign(
            method=request.method,
            path=request.path,
            query=query,
            headers=signed,
            body_sha256=body_hash,
            access_key_secret=key.access_key_secret.get_secret_value(),
        )
        if expected.signature != parsed.signature:
            raise ActionError(
                403,
                "SignatureDoesNotMatch",
                "The request signature does not conform to Aliyun standards. server string to sign is:"
                + expected.string_to_sign.replace("\n", " "),
            )
        if key.security_token is not None and (
            headers.get("x-acs-security-token") != key.security_token.get_secret_value()
        ):
            raise ActionError(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken is not valid.")
        self._fresh.check(headers["x-acs-date"], headers["x-acs-signature-nonce"])
        if headers["x-acs-version"] != API_VERSION:
            raise ActionError(
                400, "InvalidVersion", f"Specified parameter Version is not valid: {headers['x-acs-version']}."
            )
        action = headers["x-acs-action"]
        if not self.actions.known(action):
            raise ActionError(
                404,
                "InvalidAction.NotFound",
                f"Specified api is not found, please check your url and method: {action}.",
            )
        self.requests.nonces.append(headers["x-acs-signature-nonce"])
        return action, key

    # -- faults and errors ------------------------------------------------------

    async def _inject_latency(self) -> None:
        if self.faults.latency_seconds > 0:
            await asyncio.sleep(self.faults.latency_seconds)

    @staticmethod
    def _check_scope(key: AccessKey, instance_id: str | None) -> None:
        if key.instances is not None and instance_id is not None and instance_id not in key.instances:
            raise ActionError(404, "EntityNotExists.Instance", f"The instance {instance_id} does not exist.")

    def _inject_faults(self, key: AccessKey) -> None:
        if key.access_key_id in self.faults.throttled_keys:
            raise ActionError(400, "Throttling.User", "Request was denied due to user flow control.")
        if self.faults.throttle_rate and self._rng.random() < self.faults.throttle_rate:
            raise ActionError(400, "Throttling.User", "Request was denied due to user flow control.")
        if self.faults.server_error_rate and self._rng.random() < self.faults.server_error_rate:
            code, status = self._rng.choice((("ServiceUnavailable", 503), ("InternalError", 500)))
            raise ActionError(status, code, "The request has failed due to a temporary failure of the server.")

    def _error(self, request_id: str, exc: ActionError) -> web.Response:
        body = {
            "RequestId": request_id,
            "HostId": HOST_ID,
            "Code": exc.code,
            "Message": exc.message + self.faults.error_message_suffix,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={exc.code}&product=Eiam&requestId={request_id}",
        }
        headers = {}
        if exc.code.startswith("Throttling") and self.faults.retry_after_ms:
            headers["x-acs-retry-after"] = str(self.faults.retry_after_ms)
        return web.Response(
            body=_wire_bytes(_dumps(body)), status=exc.status, headers=headers, content_type="application/json"
        )


_ESCAPED_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # A lone surrogate (a hostile-input test) can only travel as a \uXXXX escape, as in the wild;
    # U+DC80..U+DCFF are left for _wire_bytes to send as raw bytes. Surrogates occur only inside
    # JSON strings, where an escape means the same character.
    return _ESCAPED_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _wire_bytes(text: str) -> bytes:
    """``text`` as sent: UTF-8, with U+DC80..U+DCFF written as the raw bytes 0x80..0xFF they stand for.

    That is how Python keeps bytes that are not UTF-8 (``surrogateescape``), so a world holding
    U+DCFF in a job's Description sends the invalid byte 0xFF, as a broken gateway would.
    """
    return text.encode("utf-8", "surrogateescape")


_BOMB_BLOCK = 1 << 20
_GZIP_WRITE = 64 * 1024


def _bomb_pieces(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` (a JSON object), padded inside to ``size`` bytes when it is shorter, a megabyte at a time."""
    padding = size - len(data)
    if padding <= 0:
        yield data
        return
    yield data[:-1] + b',"Padding":"'
    block = b"x" * _BOMB_BLOCK
    while padding > 0:
        yield block[: min(padding, _BOMB_BLOCK)]
        padding -= _BOMB_BLOCK
    yield b'"}'


def _gzip_stream(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` as one gzip member, compressed as they come.

    The output goes out in pieces of 64 KiB, a full read buffer each, as a bomb would be sent:
    the whole of such a piece of padding decodes to some 64 MB at once.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    pending = bytearray()
    for piece in pieces:
        pending += compressor.compress(piece)
        if len(pending) >= _GZIP_WRITE:
            yield bytes(pending)
            pending.clear()
    yield bytes(pending) + compressor.flush()


class RunningSimulator:
    """A simulator listening on a TCP port in the current event loop."""

    def __init__(self, app: SimulatorApp, runner: web.AppRunner, site: web.TCPSite, host: str, port: int) -> None:
        self.app = app
        self._runner = runner
        self._site = site
        self.host = host
        self.port = port

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_simulator(app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    runner = web.AppRunner(app.build(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return RunningSimulator(app, runner, site, host, bound)


class SimulatorThread:
    """The simulator on its own event loop in a background thread.

    Used by synchronous callers (the official SDK's blocking client in tests) and
    anywhere the caller's loop must not be shared.
    """

    def __init__(self, app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idaas-simulator", daemon=True)
        self._running: RunningSimulator | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._running = self._loop.run_until_complete(start_simulator(self.app, self._host, self._port))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._running.stop())
        self._loop.close()

    def start(self) -> SimulatorThread:
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        if self._running is None:
            raise RuntimeError("simulator not started")
        return self._running.port

    @property
    def endpoint(self) -> str:
        if self._running is None:
            raise RuntimeError("simulator not started")
        return self._running.endpoint

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
