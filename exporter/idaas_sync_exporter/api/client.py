"""Async client for the IDaaS (EIAM 2021-12-01) RPC API over httpx.

Requests are sent the way the official SDK sends them: ``POST /`` with the
flattened parameters in the query string, an empty body, and an
ACS3-HMAC-SHA256 ``Authorization`` header. Every attempt is signed afresh (new
date and nonce). Only throttling, transient server errors, transport errors and
garbled bodies are retried; everything else surfaces at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import re
import secrets
import socket
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from idaas_sync_exporter import __version__
from idaas_sync_exporter.api.answer import (
    ACCEPT_ENCODING,
    CorruptCodingError,
    UnsupportedCodingError,
    body_decoder,
    parse_json,
)
from idaas_sync_exporter.api.credentials import CredentialsProvider
from idaas_sync_exporter.api.endpoint import Endpoint
from idaas_sync_exporter.api.errors import (
    MAX_REQUEST_ID_CHARS,
    ApiError,
    EiamError,
    MalformedResponseError,
    PaginationError,
    ResponseTooLargeError,
    TransportError,
    UnsupportedEncodingError,
    shown_text,
)
from idaas_sync_exporter.api.flatten import flatten
from idaas_sync_exporter.api.models import (
    MAX_PLAUSIBLE_COUNT,
    Anomaly,
    Application,
    Examined,
    IdentityProvider,
    SynchronizationJob,
    UdPullConfiguration,
    examine_job,
    parse_model,
)
from idaas_sync_exporter.api.ratelimit import TokenBucket
from idaas_sync_exporter.api.signing import EMPTY_BODY_SHA256, sign

log = logging.getLogger(__name__)

API_VERSION = "2021-12-01"
MAX_PAGE_SIZE = 100
# A page of 100 jobs is well under 1 MiB; anything far larger is not an answer to keep in memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
PARSE_SLICE = 10
# A NextToken is an opaque cursor of some dozens of characters; it goes back into the next URL, so
# a longer or non-ASCII one is refused as malformed rather than sent (httpx refuses URLs over 64 KB).
MAX_NEXT_TOKEN_CHARS = 1024
_NEXT_TOKEN_SHAPE = re.compile(rf"[!-~]{{1,{MAX_NEXT_TOKEN_CHARS}}}")
# The longest x-acs-retry-after (milliseconds) taken as it is: the backoff cap applies after it anyway.
MAX_RETRY_AFTER_MILLIS = 3_600_000
# Requests that carry no InstanceId (ListInstances) are counted under this instance.
_NO_INSTANCE = ""


class RequestObserver(Protocol):
    def __call__(self, instance_id: str, action: str, code: str, duration_seconds: float) -> None:
        """Called once per HTTP attempt; ``code`` is ``OK``, an API Code or a transport error class."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0
    # Total time for one HTTP attempt, from sending to the last byte of the answer.
    attempt_timeout_seconds: float = 30.0
    max_attempts: int = 5
    # Total time one call may spend retrying before its last error is raised.
    max_retry_seconds: float = 60.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 20.0
    # The pace of a client given no bucket of its own (tools and tests); the exporter passes each
    # account's shared bucket instead. Conservative: well under the per-account API quota, which is
    # shared with every other tool using the same AccessKey.
    requests_per_second: float = 5.0
    burst: int = 10


def _no_observer(instance_id: str, action: str, code: str, duration_seconds: float) -> None:
    return None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ListSynchronizationJobs, as the API returned it."""

    jobs: tuple[SynchronizationJob, ...]
    total_count: int | None
    next_token: str | None
    request_id: str
    # Problems with single jobs: quarantined ones are not in ``jobs``, repaired ones are.
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(slots=True)
class JobFilter:
    """Filters of ListSynchronizationJobs; times are the API's epoch milliseconds, sent as they are."""

    start_ms: int | None = None
    end_ms: int | None = None
    status: str | None = None
    direction: str | None = None
    target_type: str | None = None
    target_ids: Sequence[str] = ()
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "StartTime": self.start_ms,
            "EndTime": self.end_ms,
            "Status": self.status,
            "Direction": self.direction,
            "TargetType": self.target_type,
            "TargetIds": list(self.target_ids) or None,
            "Filters": [{"Key": key, "Values": list(values)} for key, values in self.filters.items()] or None,
        }
        return {key: value for key, value in params.items() if value is not None}


class EiamClient:
    """One client per endpoint and account; safe to share between concurrent polls of several instances.

    Requests wait for ``rate_limit``: the API's flow control counts per account, so the
    clients of one account (one per region) are given the same bucket, and clients of
    different accounts different ones.
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        credentials: CredentialsProvider,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver = _no_observer,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._credentials = credentials
        self._options = options or ClientOptions()
        self._observer = observer
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rate_limit = rate_limit or TokenBucket(
            self._options.requests_per_second,
            self._options.burst,
            clock=clock,
            sleep=sleep or asyncio.sleep,
        )
        # API clock minus ours, from the Date header of the latest answer (None until one came).
        self._api_clock_offset: float | None = None
        opts = self._options
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url,
            transport=transport,
            timeout=httpx.Timeout(opts.read_timeout_seconds, connect=opts.connect_timeout_seconds),
            # Proxies from the environment are honoured as the SDK does.
            trust_env=True,
            # Only the codings _send decodes: httpx would otherwise offer whatever it can decode itself.
            headers={
                "accept": "application/json",
                "accept-encoding": ACCEPT_ENCODING,
                "user-agent": f"idaas-sync-exporter/{__version__}",
            },
        )

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def rate_limit(self) -> TokenBucket:
        return self._rate_limit

    def api_now_ms(self) -> int | None:
        """The API's current time as its latest answer's ``Date`` header told it, or None if none did."""
        if self._api_clock_offset is None:
            return None
        return round((self._wall_clock() + self._api_clock_offset) * 1000)

    def _note_api_clock(self, response: httpx.Response) -> None:
        date = response.headers.get("date")
        if not date:
            return
        try:
            api_time = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return  # an unreadable Date says nothing about the API's clock
        self._api_clock_offset = api_time - self._wall_clock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EiamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"EiamClient(endpoint={self._endpoint.base_url!r}, credentials={self._credentials!r})"

    # -- the generic call ---------------------------------------------------

    async def call(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``action`` with retries; returns the JSON body of the successful answer."""
        opts = self._options
        retrying_kwargs: dict[str, Any] = {}
        if self._sleep is not None:
            retrying_kwargs["sleep"] = self._sleep
        retrying = AsyncRetrying(
            stop=stop_after_attempt(opts.max_attempts) | stop_after_delay(opts.max_retry_seconds),
            wait=_RetryWait(opts.backoff_initial_seconds, opts.backoff_max_seconds),
            retry=retry_if_exception(lambda exc: isinstance(exc, EiamError) and exc.retryable),
            before_sleep=_log_retry,
            reraise=True,
            **retrying_kwargs,
        )
        flat = flatten(params)
        instance_id = str(params.get("InstanceId") or _NO_INSTANCE)
        result: dict[str, Any] = {}
        async for attempt in retrying:
            with attempt:
                result = await self._attempt(action, flat, instance_id)
        return result

    async def _attempt(self, action: str, query: dict[str, str], instance_id: str) -> dict[str, Any]:
        await self._rate_limit.acquire()
        creds = await self._credentials.get()
        headers = {
            "host": self._endpoint.host,
            "x-acs-action": action,
            "x-acs-version": API_VERSION,
            "x-acs-date": datetime.fromtimestamp(self._wall_clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x-acs-signature-nonce": secrets.token_hex(16),
            "x-acs-content-sha256": EMPTY_BODY_SHA256,
        }
        if creds.security_token is not None:
            headers["x-acs-accesskey-id"] = creds.access_key_id
            headers["x-acs-security-token"] = creds.security_token.get_secret_value()
        parts = sign(
            method="POST",
            path="/",
            query=query,
            headers=headers,
            body_sha256=EMPTY_BODY_SHA256,
            access_key_secret=creds.access_key_secret.get_secret_value(),
        )
        headers["Authorization"] = parts.authorization(creds.access_key_id)
        started = self._clock()
        try:
            # A total deadline: the read timeout alone restarts with every byte, so an answer
            # trickling a byte a second would otherwise hold the poll indefinitely.
            async with asyncio.timeout(self._options.attempt_timeout_seconds):
                response, raw = await self._send(action, query, headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            error_class = type(exc).__name__ if isinstance(exc, httpx.HTTPError) else "AttemptDeadline"
            detail = (
                _safe_detail(exc, headers)
                if isinstance(exc, httpx.HTTPError)
                else (f"no complete answer within {self._options.attempt_timeout_seconds:g} s")
            )
            error: EiamError = TransportError(action=action, error_class=error_class, detail=detail)
            self._observer(instance_id, action, error.metric_code, self._clock() - started)
            raise error from None
        except (ResponseTooLargeError, UnsupportedEncodingError, MalformedResponseError) as exc:
            self._observer(instance_id, action, exc.metric_code, self._clock() - started)
            raise
        self._note_api_clock(response)
        try:
            body = _decode_answer(action, response, raw)
        except EiamError as exc:
            self._observer(instance_id, action, exc.metric_code, self._clock() - started)
            raise
        self._observer(instance_id, action, "OK", self._clock() - started)
        return body

    async def _send(self, action: str, query: dict[str, str], headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
        """The answer and its body, read up to MAX_RESPONSE_BYTES of decoded bytes.

        The body is read raw and decoded here, step by step, so that the cap counts what the
        answer expands to: a few kilobytes of gzip can decode to gigabytes.
        """
        async with self._http.stream("POST", "/", params=query, headers=headers) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise ResponseTooLargeError(action=action, size=int(declared), limit=MAX_RESPONSE_BYTES)
            # A transport that hands over an answer already read (httpx.MockTransport does) has
            # decoded it too; only its size is left to check.
            already_read = response.is_stream_consumed
            try:
                decoder = body_decoder("" if already_read else response.headers.get("content-encoding", ""))
            except UnsupportedCodingError as exc:
                raise UnsupportedEncodingError(action=action, codings=exc.codings) from None
            compressed = decoder.compressed
            chunks: list[bytes] = []
            size = 0
            try:
                async for raw in _already_read(response.content) if already_read else response.aiter_raw():
                    for piece in decoder.decode(raw):
                        size += len(piece)
                        if size > MAX_RESPONSE_BYTES:
                            raise ResponseTooLargeError(
                                action=action, size=size, limit=MAX_RESPONSE_BYTES, decoded=compressed
                            )
                        chunks.append(piece)
                chunks.append(decoder.finish())
            except CorruptCodingError as exc:
                raise MalformedResponseError(action=action, problem=str(exc)) from None
        return response, b"".join(chunks)

    # -- ListSynchronizationJobs --------------------------------------------

    async def list_synchronization_job_pages(
        self,
        instance_id: str,
        job_filter: JobFilter | None = None,
        *,
        max_results: int = MAX_PAGE_SIZE,
        counted: Container[str] = (),
    ) -> AsyncGenerator[JobPage, None]:
        """Pages newest first, following NextToken until the API stops sending one.

        Jobs whose ids are in ``counted`` come without statistics: the caller counted them
        before, and an idle poll re-reads a whole overlap of them.
        """
        if not 1 <= max_results <= MAX_PAGE_SIZE:
            raise ValueError(f"max_results must be 1..{MAX_PAGE_SIZE}, got {max_results}")
        action = "ListSynchronizationJobs"
        base = {"InstanceId": instance_id, **(job_filter or JobFilter()).to_params(), "MaxResults": max_results}
        seen_tokens: set[str] = set()
        token: str | None = None
        while True:
            params = dict(base)
            if token is not None:
                params["NextToken"] = token
            page = await self._job_page(action, await self.call(action, params), counted, max_results)
            yield page
            if not page.next_token:
                return
            if page.next_token in seen_tokens or page.next_token == token:
                raise PaginationError(
                    action=action,
                    problem="the API returned a NextToken it had already returned; stopping to avoid a loop",
                )
            seen_tokens.add(page.next_token)
            token = page.next_token

    async def _job_page(
        self, action: str, body: dict[str, Any], counted: Container[str] = (), max_results: int = MAX_PAGE_SIZE
    ) -> JobPage:
        request_id = request_id_of(body)
        total = body.get("TotalCount")
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= MAX_PLAUSIBLE_COUNT
        ):
            raise MalformedResponseError(
                action=action,
                problem=f"TotalCount must be an integer 0-{MAX_PLAUSIBLE_COUNT}, got {shown_text(repr(total), 60)}",
                request_id=request_id,
            )
        raw_jobs = body.get("SynchronizationJobs")
        if raw_jobs is None:
            if total:
                raise MalformedResponseError(
                    action=action,
                    problem="SynchronizationJobs is missing although TotalCount > 0",
                    request_id=request_id,
                )
            raw_jobs = []
        if not isinstance(raw_jobs, list):
            raise MalformedResponseError(
                action=action, problem="SynchronizationJobs must be a list", request_id=request_id
            )
        if len(raw_jobs) > max_results:
            # Checked before any job is examined: millions of tiny bad entries would otherwise
            # cost seconds of CPU and a warning each.
            raise MalformedResponseError(
                action=action,
                problem=f"the page holds {len(raw_jobs)} jobs, more than the {max_results} asked for",
                request_id=request_id,
            )
        parsed: list[SynchronizationJob] = []
        anomalies: list[Anomaly] = []
        for index, raw in enumerate(raw_jobs):
            # One odd job never stops the others: it is quarantined or repaired, and reported.
            job_id = raw.get("SynchronizationJobId") if isinstance(raw, Mapping) else None
            known = isinstance(job_id, str) and job_id in counted
            examined = examine_job(raw, f"SynchronizationJobs[{index}]", statistics=not known)
            anomalies.extend(examined.anomalies)
            if examined.job is not None:
                parsed.append(examined.job)
            if index % PARSE_SLICE == PARSE_SLICE - 1:
                # Give scrapes a turn: parsing a full page holds the loop for milliseconds.
                await asyncio.sleep(0)
        jobs = tuple(parsed)
        token = body.get("NextToken")
        if token is not None and not isinstance(token, str):
            raise MalformedResponseError(action=action, problem="NextToken must be a string", request_id=request_id)
        if token and not _NEXT_TOKEN_SHAPE.fullmatch(token):
            raise MalformedResponseError(
                action=action,
                problem=f"NextToken must be 1-{MAX_NEXT_TOKEN_CHARS} printable ASCII characters, "
                f"got {len(token)} characters",
                request_id=request_id,
            )
        return JobPage(jobs, total, token or None, request_id, tuple(anomalies))

    async def get_synchronization_job(self, instance_id: str, job_id: str) -> Examined:
        """One job, quarantined or repaired like the jobs of a listing."""
        action = "GetSynchronizationJob"
        body = await self.call(action, {"InstanceId": instance_id, "SynchronizationJobId": job_id})
        return examine_job(body.get("SynchronizationJob"), "SynchronizationJob")

    # -- PageNumber-paged listings ------------------------------------------

    async def _numbered(
        self, action: str, params: Mapping[str, Any], list_key: str, page_size: int
    ) -> AsyncIterator[Any]:
        number = 1
        seen = 0
        while True:
            body = await self.call(action, {**params, "PageNumber": number, "PageSize": page_size})
            items = body.get(list_key)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise MalformedResponseError(
                    action=action, problem=f"{list_key} must be a list", request_id=request_id_of(body)
                )
            if len(items) > page_size:
                raise MalformedResponseError(
                    action=action,
                    problem=f"the page holds {len(items)} entries, more than the {page_size} asked for",
                    request_id=request_id_of(body),
                )
            for index, item in enumerate(items):
                yield (f"{list_key}[{seen + index}]", item)
            seen += len(items)
            total = body.get("TotalCount")
            if not items or len(items) < page_size or (isinstance(total, int) and seen >= total):
                return
            number += 1

    async def list_identity_providers(
        self, instance_id: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[IdentityProvider]:
        action = "ListIdentityProviders"
        async for where, raw in self._numbered(action, {"InstanceId": instance_id}, "IdentityProviders", page_size):
            yield parse_model(IdentityProvider, raw, where, action)

    async def list_applications(
        self, instance_id: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[Application]:
        action = "ListApplications"
        async for where, raw in self._numbered(action, {"InstanceId": instance_id}, "Applications", page_size):
            yield parse_model(Application, raw, where, action)

    # -- inbound-sync configuration -----------------------------------------

    async def get_ud_pull_configuration(self, instance_id: str, identity_provider_id: str) -> UdPullConfiguration:
        action = "GetIdentityProviderUdPullConfiguration"
        body = await self.call(action, {"InstanceId": instance_id, "IdentityProviderId": identity_provider_id})
        return parse_model(UdPullConfiguration, body.get("UdPullConfiguration"), "UdPullConfiguration", action)

    async def set_ud_pull_configuration(
        self, instance_id: str, identity_provider_id: str, configuration: Mapping[str, Any]
    ) -> str:
        """Send ``configuration`` (wire names, nested) and return the RequestId."""
        action = "SetIdentityProviderUdPullConfiguration"
        params = {**configuration, "InstanceId": instance_id, "IdentityProviderId": identity_provider_id}
        body = await self.call(action, params)
        return request_id_of(body)


class _RetryWait:
    """Exponential backoff with "equal jitter", unless the API said how long to wait.

    Half of each delay is fixed and half random, so concurrent pollers spread out
    without ever retrying immediately.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._random = random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ApiError) and exc.retry_after_seconds is not None:
            return min(exc.retry_after_seconds, self._maximum)
        ceiling: float = min(self._maximum, self._initial * 2.0 ** (retry_state.attempt_number - 1))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    next_action = retry_state.next_action
    log.warning(
        "retrying API call",
        extra={
            "attempt": retry_state.attempt_number,
            "error": str(exc),
            "sleep_seconds": round(next_action.sleep, 3) if next_action else None,
        },
    )


# What an httpx error means, in fixed words. Its own text is never shown: a protocol error
# quotes the offending header value (an STS token with a line break in it) or bytes of the answer.
_TRANSPORT_PHRASES = {
    "ConnectTimeout": "no connection within the connect timeout",
    "ReadTimeout": "no answer data within the read timeout",
    "WriteTimeout": "the request could not be sent within the timeout",
    "PoolTimeout": "no free connection within the timeout",
    "ConnectError": "the connection could not be made",
    "ReadError": "the connection failed while reading the answer",
    "WriteError": "the connection failed while sending the request",
    "CloseError": "the connection failed while closing",
    "RemoteProtocolError": "the server's answer broke the HTTP protocol",
    "LocalProtocolError": "the request could not be sent as valid HTTP",
    "ProxyError": "the proxy refused the request",
    "UnsupportedProtocol": "the endpoint's URL scheme is not http or https",
    "DecodingError": "the answer's content encoding could not be decoded",
    "TooManyRedirects": "too many redirects",
}
# RFC 9110 field-value: visible ASCII, with spaces and tabs inside but at neither end.
_LEGAL_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")


def _safe_detail(exc: httpx.HTTPError, headers: Mapping[str, str]) -> str:
    """The error in fixed words, naming a header or an OS error code where one explains it; never a value."""
    phrase = next(
        (_TRANSPORT_PHRASES[cls.__name__] for cls in type(exc).__mro__ if cls.__name__ in _TRANSPORT_PHRASES),
        "the request failed",
    )
    if isinstance(exc, httpx.LocalProtocolError):
        refused = [name for name, value in headers.items() if not _LEGAL_HEADER_VALUE.fullmatch(value)]
        return f"the {refused[0]} header value is not a legal HTTP header value" if refused else phrase
    return phrase + _os_error_detail(exc)


def _os_error_detail(exc: BaseException) -> str:
    """The OS or TLS error behind ``exc`` as `` (ECONNREFUSED: Connection refused)``: codes and fixed texts only."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f" (TLS: {cause.reason or 'certificate verify failed'}: {cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f" (TLS: {cause.reason or type(cause).__name__})"
        if isinstance(cause, socket.gaierror):
            return f" (name resolution: {cause.strerror})"
        if isinstance(cause, OSError) and cause.errno is not None:
            return f" ({errno.errorcode.get(cause.errno, str(cause.errno))}: {os.strerror(cause.errno)})"
        cause = cause.__cause__ or cause.__context__
    return ""


async def _already_read(content: bytes) -> AsyncIterator[bytes]:
    yield content


def _decode_answer(action: str, response: httpx.Response, raw: bytes) -> dict[str, Any]:
    status = response.status_code
    # Every string in ``body`` is valid UTF-8 from here on (see idaas_sync_exporter.api.answer).
    body: Any = parse_json(raw)
    if 200 <= status < 300:
        if not isinstance(body, dict):
            snippet = raw[:80].decode("utf-8", "replace")
            raise MalformedResponseError(
                action=action, problem=f"body is not a JSON object (HTTP {status}, starts {snippet!r})"
            )
        return body
    if not isinstance(body, dict):
        body = {}
    code = body.get("Code") or body.get("code")
    message = body.get("Message") or body.get("message") or response.reason_phrase
    request_id = request_id_of(body)
    retry_after = _retry_after_seconds(response.headers.get("x-acs-retry-after"))
    raise ApiError(
        action=action,
        code=str(code) if code else f"HTTP{status}",
        message=str(message)[:500],
        request_id=request_id,
        http_status=status,
        retry_after_seconds=retry_after,
    )


def _retry_after_seconds(value: str | None) -> float | None:
    # The SDK reads x-acs-retry-after as milliseconds.
    if not value:
        return None
    # Digits only, few of them: int() of 400 digits is fine but dividing it overflows a float.
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    millis = min(int(value), MAX_RETRY_AFTER_MILLIS)
    return millis / 1000.0 if millis > 0 else None


def request_id_of(body: Mapping[str, Any]) -> str:
    """The answer's RequestId as it may be shown: cut and escaped (see idaas_sync_exporter.api.errors.shown_text)."""
    value = body.get("RequestId") or body.get("requestId") or ""
    return shown_text(value, MAX_REQUEST_ID_CHARS)
