"""Typed failures of an API call. None of them ever carries a secret."""

from __future__ import annotations

import re

from idaas_sync_exporter.text import escape_invisible

# Codes the API uses for flow control and transient server trouble; these, 5xx
# answers and transport errors are the only failures worth a retry.
THROTTLING_CODES = frozenset({"Throttling", "Throttling.User", "Throttling.Api"})
RETRYABLE_CODES = THROTTLING_CODES | {"ServiceUnavailable", "InternalError"}
# API error codes become the ``code`` label; one that does not look like a code is not used as one.
_CODE_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
UNREADABLE_CODE = "UnreadableErrorCode"
# Distinct error codes per label set (API requests of an action, job errors of a target)
# before further new ones are counted as OTHER_CODE: hostile answers cannot add series forever.
MAX_DISTINCT_CODES = 50
OTHER_CODE = "other"


# Text from the API shown in an error: errors reach /readyz, the landing page and a terminal's
# stderr, none of which escapes, so a message can neither forge a line, run an ESC sequence,
# nor reorder what is shown (bidi overrides). Escaped as JSON-style \uXXXX, like the log does.
MAX_SHOWN_CHARS = 200
MAX_REQUEST_ID_CHARS = 80
CUT_SUFFIX = "\u2026"  # "…": the value was longer


def shown_text(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``value`` as an error may show it: cut to ``limit`` characters (marked with \u2026), and every
    control, line or paragraph separator and format character written as its escape."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    text = escape_invisible(text[:limit])
    return text + CUT_SUFFIX if cut else text


def readable_code(code: str) -> str:
    """``code`` when it has the shape of an API error code, else :data:`UNREADABLE_CODE`."""
    return code if _CODE_SHAPE.fullmatch(code) else UNREADABLE_CODE


def bounded_code(code: str, known: dict[str, int] | set[str], limit: int = MAX_DISTINCT_CODES) -> str:
    """``code``, or :data:`OTHER_CODE` when ``known`` already holds ``limit`` other codes."""
    if code in known or len(known) < limit:
        return code
    return OTHER_CODE


class EiamError(Exception):
    """Base class of the errors of reading the API: the client's, the credentials', and a poll's deadline."""

    action: str

    @property
    def metric_code(self) -> str:
        """Bounded value for the ``code`` label of the request counter."""
        raise NotImplementedError

    @property
    def retryable(self) -> bool:
        return False


class ApiError(EiamError):
    """An error answer from the API, with the fields the API put in its body."""

    def __init__(
        self,
        *,
        action: str,
        code: str,
        message: str,
        request_id: str,
        http_status: int,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.action = action
        self.code = readable_code(code)
        # Kept only as shown: no writer downstream can then print the API's text raw or whole.
        self.message = shown_text(message)
        self.request_id = shown_text(request_id, MAX_REQUEST_ID_CHARS)
        self.http_status = http_status
        self.retry_after_seconds = retry_after_seconds
        shown = self.code if self.code == code else f"{self.code} {shown_text(code, 40)!r}"
        super().__init__(
            f"{action} failed: {shown} (HTTP {http_status}): {self.message} [RequestId {self.request_id or '-'}]"
        )

    @property
    def metric_code(self) -> str:
        return self.code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or self.http_status >= 500


class TransportError(EiamError):
    """The request did not get an HTTP answer (connect, timeout, reset)."""

    def __init__(self, *, action: str, error_class: str, detail: str) -> None:
        self.action = action
        self.error_class = error_class
        super().__init__(f"{action} failed: {error_class}: {detail}")

    @property
    def metric_code(self) -> str:
        return self.error_class

    @property
    def retryable(self) -> bool:
        return True


class MalformedResponseError(EiamError):
    """A 2xx answer whose body is not what the API documents; never turned into numbers."""

    def __init__(self, *, action: str, problem: str, request_id: str = "") -> None:
        self.action = action
        self.problem = shown_text(problem, 2 * MAX_SHOWN_CHARS)
        self.request_id = shown_text(request_id, MAX_REQUEST_ID_CHARS)
        super().__init__(f"{action} returned a malformed response: {self.problem} [RequestId {self.request_id or '-'}]")

    @property
    def metric_code(self) -> str:
        return "MalformedResponse"

    @property
    def retryable(self) -> bool:
        # A truncated body is usually a transport hiccup; one more try is cheap.
        return True


class PaginationError(EiamError):
    """The API's paging went wrong (a NextToken repeated); retrying the page would loop."""

    def __init__(self, *, action: str, problem: str) -> None:
        self.action = action
        super().__init__(f"{action} paging stopped: {problem}")

    @property
    def metric_code(self) -> str:
        return "PaginationError"


class ResponseTooLargeError(EiamError):
    """An answer larger than any the API sends; reading it would exhaust memory."""

    def __init__(self, *, action: str, size: int, limit: int, decoded: bool = False) -> None:
        self.action = action
        # A compressed answer says "decodes to": the few bytes sent are not what the cap counts.
        grows = "decodes to more than" if decoded else "exceeds"
        super().__init__(f"{action} failed: the answer {grows} {limit} bytes (at least {size}); not read further")

    @property
    def metric_code(self) -> str:
        return "ResponseTooLarge"


class UnsupportedEncodingError(EiamError):
    """An answer in a Content-Encoding we do not decode (stacked, brotli, unknown); refused unread."""

    def __init__(self, *, action: str, codings: str) -> None:
        self.action = action
        super().__init__(
            f"{action} failed: the answer's Content-Encoding {codings} is not read; "
            "only identity, gzip or deflate (one of them) is"
        )

    @property
    def metric_code(self) -> str:
        return "UnsupportedEncoding"
