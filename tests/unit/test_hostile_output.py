"""Hostile text on its way out: every log line stays one line, every page shows what it holds."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.logs import JsonFormatter, LogfmtFormatter
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web.landing import shown
from idaas_sync_exporter.web.server import build_app
from tests.conftest import AK_ID, AK_SECRET, inject_failed_job, instance_id_of

# Any character, lone surrogates included, and the ones that did harm often enough to be drawn.
HARMFUL = ["\r", "\n", "\x1b", "\x07", "\x00", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\ud800", "\udfff"]
ANY_TEXT = st.text(
    alphabet=st.characters(exclude_categories=()) | st.sampled_from([*HARMFUL, '"', "\\", "=", " "]), max_size=40
)
# Never raw in a line: a terminal runs them, a reader splits on them, or UTF-8 cannot carry them.
NEVER_RAW = {"Cc", "Cf", "Cs", "Zl", "Zp"}
LOGFMT_PAIR = re.compile(r'([^ =]+)=("(?:[^"\\]|\\.)*"|[^ ]*)(?: |$)')


def record(msg: str, extra: dict[str, Any], error: str | None = None, name: str = "exporter.test") -> logging.LogRecord:
    exc_info = (ValueError, ValueError(error), None) if error is not None else None
    return logging.getLogger(name).makeRecord(name, logging.ERROR, __file__, 1, msg, (), exc_info, extra=extra)


def parse_logfmt(line: str) -> dict[str, str]:
    pairs = LOGFMT_PAIR.findall(line)
    assert " ".join(f"{key}={value}" for key, value in pairs) == line, "the line is exactly its pairs"
    # Quoted values use JSON's string escapes, so JSON reads them back.
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


def readable(text: str) -> str:
    """What a log line promises to read back: the text, with each lone surrogate as U+FFFD (UTF-8 has none)."""
    return "".join("\ufffd" if unicodedata.category(c) == "Cs" else c for c in text)


def assert_one_clean_line(line: str) -> None:
    assert len(line.splitlines()) == 1 and "\n" not in line
    raw = [c for c in line if unicodedata.category(c) in NEVER_RAW]
    assert not raw, f"raw {raw!r} in {line!r}"
    line.encode("utf-8")  # strict: no lone surrogate


@settings(max_examples=300, deadline=None)
@given(msg=ANY_TEXT, value=ANY_TEXT, error=ANY_TEXT, name=ANY_TEXT)
def test_any_text_in_any_field_is_one_logfmt_line_that_parses_back(msg: str, value: str, error: str, name: str) -> None:
    line = LogfmtFormatter().format(record(msg, {"target_name": value}, error, name or "x"))
    assert_one_clean_line(line)
    fields = parse_logfmt(line)
    assert fields["msg"] == readable(msg)
    assert fields["target_name"] == readable(value)
    assert fields["error"] == readable(f"ValueError: {error}")
    assert fields["logger"] == readable(name or "x")


@settings(max_examples=300, deadline=None)
@given(msg=ANY_TEXT, value=ANY_TEXT, error=ANY_TEXT, name=ANY_TEXT)
def test_any_text_in_any_field_is_one_json_line_that_parses_back(msg: str, value: str, error: str, name: str) -> None:
    line = JsonFormatter().format(record(msg, {"target_name": value}, error, name or "x"))
    assert_one_clean_line(line)
    # NaN or Infinity would not be JSON; an escaped lone surrogate would read back as one (jq refuses it).
    fields = json.loads(line, parse_constant=pytest.fail)
    assert (fields["msg"], fields["target_name"], fields["error"], fields["logger"]) == (
        readable(msg),
        readable(value),
        readable(f"ValueError: {error}"),
        readable(name or "x"),
    )


def test_a_carriage_return_cannot_forge_a_second_event() -> None:
    forged = "ok\r\x1b[2Kts=2026-01-01T00:00:00Z level=error msg=forged target_id=forged"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("exporter.test.forged")
    logger.addHandler(handler)
    try:
        logger.warning("job finished", extra={"target_name": forged})
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert "\r" not in line and "\x1b" not in line
    fields = parse_logfmt(line)
    assert fields["target_name"] == forged and fields["level"] == "warning" and "target_id" not in fields


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()], ids=["logfmt", "json"])
def test_the_formatters_cannot_fail(formatter: logging.Formatter) -> None:
    odd = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    for rec in (
        record("m", {"value": Unprintable(), "ratio": float("nan"), "nested": {"a": float("inf")}}),
        record("m", {"tuple_keys": {(1, 2): "x"}}),
        odd,
    ):
        line = formatter.format(rec)
        assert_one_clean_line(line)
    if isinstance(formatter, JsonFormatter):
        assert json.loads(formatter.format(record("m", {"ratio": float("nan")})), parse_constant=pytest.fail)


def unescaped(page_text: str) -> str:
    """The text ``shown`` was given: each escape span back to its character, then the HTML unescaped."""
    spans = re.sub(
        r'<span class="esc" title="[^"<>]*">\\[uU]([0-9a-f]+)</span>', lambda m: chr(int(m.group(1), 16)), page_text
    )
    return html.unescape(spans)


@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT)
def test_the_pages_show_every_invisible_character_as_its_escape(text: str) -> None:
    page_text = shown(text)
    assert not [c for c in page_text if unicodedata.category(c) in NEVER_RAW | {"Cn"} or c == "\u3164"]
    assert not set("<>\"'") & set(re.sub(r'<span class="esc" title="[^"<>]*">', "", page_text).replace("</span>", ""))
    assert unescaped(page_text) == text
    page_text.encode("utf-8")


@pytest.fixture
async def exporter(simulator: RunningSimulator, world: World, clock: ManualClock) -> AsyncIterator[Exporter]:
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000, max_attempts=1),
    )
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    yield Exporter(store=store, pollers={instance: poller}, api_stats=ApiStats(), clock=clock)
    await client.aclose()


@pytest.fixture
async def http(exporter: Exporter) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(build_app(exporter, poll_interval=60)))
    await client.start_server()
    yield client
    await client.close()


SPOOFED = "abc\u202efdp.exe"  # shows as "abcexe.pdf" when the override is drawn, not shown


async def test_a_bidi_override_in_a_name_is_shown_on_both_pages(
    http: TestClient[web.Request, web.Application], exporter: Exporter, world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    state = world.instances[instance]
    provider = state.providers[0]
    state.providers[0] = dataclasses.replace(provider, name=SPOOFED + "\u2066\u200b\x1b[2J")
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    inject_failed_job(world, instance, provider.identity_provider_id)
    clock.advance(60)
    await exporter.poll(instance)
    for path in ("/", "/jobs"):
        answer = await http.get(path)
        assert answer.status == 200
        page = await answer.text()
        assert not [c for c in page if unicodedata.category(c) in NEVER_RAW - {"Cc"} or c == "\x1b"], path
        assert (
            'abc<span class="esc" title="U+202E RIGHT-TO-LEFT OVERRIDE">\\u202e</span>fdp.exe'
            '<span class="esc" title="U+2066 LEFT-TO-RIGHT ISOLATE">\\u2066</span>'
            '<span class="esc" title="U+200B ZERO WIDTH SPACE">\\u200b</span>'
            '<span class="esc" title="U+001B">\\u001b</span>[2J'
        ) in page, path
