"""Turning the bytes of an API answer into JSON: content codings under a size cap, then text repair.

Everything the API says passes through here once, so that no later writer (the exposition, the
HTML pages, the JSON log) ever meets text it cannot encode: a compressed answer is decoded only
as far as the cap allows, and a body with invalid UTF-8 or lone surrogate escapes is parsed with
those characters replaced by U+FFFD, each repaired string marked so the job it belongs to can be
reported.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

# The codings we ask for and decode; a server sending anything else is refused, not guessed at.
ACCEPT_ENCODING = "gzip"
SUPPORTED_CODINGS = ("identity", "gzip", "deflate")
# Decoded bytes produced per decompression step: the cap is passed by at most this much.
DECODE_STEP = 64 * 1024

_SURROGATE = re.compile("[\ud800-\udfff]")


class RepairedText(str):
    """A string from an answer that had invalid bytes or a lone surrogate, replaced by U+FFFD."""

    __slots__ = ()


class UnsupportedCodingError(Exception):
    """The Content-Encoding is not one we decode; ``codings`` says what it was, bounded."""

    def __init__(self, codings: str) -> None:
        super().__init__(codings)
        self.codings = codings


class CorruptCodingError(Exception):
    """The compressed body could not be decompressed."""


def body_decoder(content_encoding: str) -> BodyDecoder:
    """The decoder for one answer's ``Content-Encoding``; raises :class:`UnsupportedCodingError`.

    One coding at most: stacked codings (``gzip, gzip``) multiply what a few bytes can
    expand to and no API answer needs them.
    """
    codings = [part.strip().lower() for part in content_encoding.split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if not codings:
        return BodyDecoder(None)
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
        return BodyDecoder("gzip")
    if len(codings) == 1 and codings[0] == "deflate":
        return BodyDecoder("deflate")
    # repr() escapes whatever control characters the header held; the cut keeps the line short.
    shown = repr(content_encoding[:40]) + ("..." if len(content_encoding) > 40 else "")
    raise UnsupportedCodingError(shown)


class BodyDecoder:
    """Decodes a body piece by piece, never producing more than ``DECODE_STEP`` bytes per step."""

    def __init__(self, coding: str | None) -> None:
        self._coding = coding
        self._inflater = _inflater(coding)
        self._started = False

    @property
    def compressed(self) -> bool:
        return self._coding is not None

    def decode(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data``; a caller that stops iterating stops the decoding."""
        if self._inflater is None:
            yield data
            return
        while data:
            try:
                piece = self._inflater.decompress(data, DECODE_STEP)
            except zlib.error:
                if self._coding == "deflate" and not self._started:
                    # Some servers send "deflate" as raw deflate, without the zlib wrapper.
                    self._coding = "raw-deflate"
                    self._inflater = _inflater(self._coding)
                    continue
                raise CorruptCodingError("the compressed answer is corrupt") from None
            self._started = True
            if piece:
                yield piece
            data = self._inflater.unconsumed_tail
            if self._inflater.eof:
                rest = self._inflater.unused_data
                if self._coding != "gzip" or not rest:
                    return
                # A gzip body may hold several members one after another; each is decoded in turn.
                self._inflater = _inflater("gzip")
                data = rest

    def finish(self) -> bytes:
        """What the decompressor still holds once all input was given (at most a window)."""
        if self._inflater is None:
            return b""
        try:
            return bytes(self._inflater.flush())
        except zlib.error:
            raise CorruptCodingError("the compressed answer is corrupt") from None


def _inflater(coding: str | None) -> Any:
    if coding is None:
        return None
    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[coding]
    return zlib.decompressobj(wbits)


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON; None when it is no JSON at all.

    orjson reads every well-formed answer. Only when it refuses one (invalid UTF-8, a lone
    surrogate escape) is the body read again leniently, and every string in it, keys included,
    made valid text: one bad byte costs at most the field it is in, never the whole answer.
    """
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # surrogateescape turns each invalid byte into a lone surrogate, so one pass replaces both kinds.
    text = raw.decode("utf-8", "surrogateescape")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return _repair(parsed)


def _repair_text(value: str) -> str:
    if not _SURROGATE.search(value):
        return value
    return RepairedText(_SURROGATE.sub("\ufffd", value))


def _repair(parsed: Any) -> Any:
    """``parsed`` with every string valid UTF-8; iterative, so a deep answer cannot exhaust the stack."""
    if isinstance(parsed, str):
        return _repair_text(parsed)
    if not isinstance(parsed, dict | list):
        return parsed
    pending: list[Any] = [parsed]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = _repair_text(item)
                elif isinstance(item, dict | list):
                    pending.append(item)
        else:
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    item = _repair_text(item)
                elif isinstance(item, dict | list):
                    pending.append(item)
                repaired_key = _repair_text(key)
                if repaired_key is not key:
                    del node[key]
                node[repaired_key] = item
    return parsed
