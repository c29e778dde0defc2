"""Hostile answers where they enter: compressed bombs, odd codings, invalid text, label values of any length."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from idaas_sync_exporter.api.answer import DECODE_STEP, RepairedText, body_decoder, parse_json
from idaas_sync_exporter.api.client import MAX_RESPONSE_BYTES, ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import ResponseTooLargeError, UnsupportedEncodingError
from idaas_sync_exporter.api.models import CUT_MARKER, MAX_LABEL_LENGTH
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import SimulatorApp
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web.server import ENDPOINTS_KEY
from tests.conftest import AK_ID, AK_SECRET, inject_failed_job, instance_id_of

GIB = 1024**3
# What a bomb may add to the peak memory of the whole test process, as the plain 200 MB case in test_deadlines.
MAX_GROWTH_MIB = 64


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def all_jobs(client: EiamClient, instance_id: str) -> list[str]:
    return [job.job_id async for page in client.list_synchronization_job_pages(instance_id) for job in page.jobs]


# -- item 2: content codings -----------------------------------------------------------------


async def test_a_gzip_bomb_is_cut_at_the_cap_on_decoded_bytes(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World
) -> None:
    sim_app.faults.gzip_bomb_bytes = 1.1 * GIB
    client = make(attempt_timeout_seconds=60)
    before = peak_rss_mib()
    with pytest.raises(ResponseTooLargeError, match=f"decodes to more than {MAX_RESPONSE_BYTES} bytes") as caught:
        await all_jobs(client, instance_id_of(world))
    grown = peak_rss_mib() - before
    decoded = int(re.search(r"at least (\d+)", str(caught.value)).group(1))  # type: ignore[union-attr]
    print(
        f"gzip bomb of {sim_app.faults.gzip_bomb_bytes / GIB:.1f} GiB: {decoded} bytes decoded, "
        f"peak RSS +{grown:.1f} MiB"
    )
    assert decoded <= MAX_RESPONSE_BYTES + DECODE_STEP, "decoded more than one step past the cap"
    assert grown < MAX_GROWTH_MIB, f"peak memory grew by {grown:.0f} MiB"


async def test_stacked_gzip_is_refused_unread(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World
) -> None:
    sim_app.faults.gzip_bomb_bytes = 1.1 * GIB
    sim_app.faults.content_encoding = "gzip, gzip"
    client = make(attempt_timeout_seconds=60)
    before = peak_rss_mib()
    with pytest.raises(UnsupportedEncodingError) as caught:
        await all_jobs(client, instance_id_of(world))
    grown = peak_rss_mib() - before
    print(f"stacked gzip bomb: peak RSS grew by {grown:.1f} MiB")
    assert grown < MAX_GROWTH_MIB, f"peak memory grew by {grown:.0f} MiB"
    assert caught.value.metric_code == "UnsupportedEncoding"
    assert "'gzip, gzip'" in str(caught.value) and "identity, gzip or deflate" in str(caught.value)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "x-unknown", "gzip, br", "deflate, gzip"])
async def test_unknown_or_stacked_codings_are_refused_in_one_line(
    coding: str, make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World
) -> None:
    sim_app.faults.content_encoding = coding
    with pytest.raises(UnsupportedEncodingError) as caught:
        await all_jobs(make(), instance_id_of(world))
    message = str(caught.value)
    assert "\n" not in message and repr(coding) in message
    assert caught.value.metric_code == "UnsupportedEncoding"


async def test_a_huge_content_encoding_is_not_echoed() -> None:
    hostile = "x" * 10_000 + "\r\n\x1b[31m"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": hostile}, stream=_Stream(b"{}"))

    client = _mock_client(answer)
    with pytest.raises(UnsupportedEncodingError) as caught:
        await client.call("ListInstances", {})
    message = str(caught.value)
    assert len(message) < 250 and "\r" not in message and "\x1b" not in message


async def test_a_gzip_answer_reads_as_the_plain_one(
    make: Callable[..., EiamClient], sim_app: SimulatorApp, world: World
) -> None:
    instance = instance_id_of(world)
    plain = await all_jobs(make(), instance)
    sim_app.faults.content_encoding = "gzip"
    assert await all_jobs(make(), instance) == plain and plain


async def test_only_gzip_is_asked_for_and_deflate_is_read_with_or_without_its_wrapper() -> None:
    body = json.dumps({"RequestId": "r1", "Instances": [{"InstanceId": "idaas_1"}]}).encode()
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    answers = [
        (zlib.compress(body), "deflate"),
        (raw_deflate.compress(body) + raw_deflate.flush(), "deflate"),
        (zlib.compress(body, wbits=31) + zlib.compress(b"", wbits=31), "gzip"),  # two gzip members
    ]
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["accept-encoding"])
        data, coding = answers[len(sent) - 1]
        return httpx.Response(200, headers={"content-encoding": coding}, stream=_Stream(data))

    client = _mock_client(answer)
    for _ in answers:
        assert (await client.call("ListInstances", {}))["Instances"] == [{"InstanceId": "idaas_1"}]
    assert sent == ["gzip"] * len(answers)


async def test_a_corrupt_gzip_answer_is_malformed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=_Stream(b"\x1f\x8b not gzip"))

    with pytest.raises(Exception, match="compressed answer is corrupt") as caught:
        await _mock_client(answer).call("ListInstances", {})
    assert getattr(caught.value, "metric_code", None) == "MalformedResponse"


def test_the_decoder_never_produces_more_than_one_step_at_a_time() -> None:
    bomb = zlib.compress(b"x" * (64 << 20), wbits=31)
    decoder = body_decoder("gzip")
    pieces = decoder.decode(bomb)
    assert len(next(pieces)) <= 64 * 1024  # the first step, without the other 63 MiB behind it
    assert sum(len(piece) for piece in pieces) + 64 * 1024 >= 64 << 20


class _Stream(httpx.AsyncByteStream):
    """An answer body httpx has not read yet, as from the network."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data


def _mock_client(answer: Callable[[httpx.Request], httpx.Response]) -> EiamClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        return answer(request)

    return EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", None),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(max_attempts=1),
        transport=_Unread(handler),
    )


class _Unread(httpx.AsyncBaseTransport):
    """Like httpx.MockTransport, without reading the answer first: the client reads it raw."""

    def __init__(self, handler: Callable[[httpx.Request], Any]) -> None:
        self._handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await self._handler(request)
        return response


# -- items 6 and 8: text that is not valid UTF-8 -----------------------------------------------


def test_repair_makes_every_string_valid_and_marks_it() -> None:
    raw = b'{"a\\ud800":["ok",{"deep\xff":"x\\udc00y"}],"n":1,"fine":"\xef\xbf\xbd"}'
    body = parse_json(raw)
    assert body == {"a\ufffd": ["ok", {"deep\ufffd": "x\ufffdy"}], "n": 1, "fine": "\ufffd"}
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
    inner = body["a\ufffd"][1]
    assert isinstance(inner["deep\ufffd"], RepairedText)
    assert not isinstance(body["fine"], RepairedText)  # a real U+FFFD is text, not a repair
    assert parse_json(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a proper pair stays one character
    assert parse_json(b"[" * 100_000) is None  # too deep to parse is no JSON, not a crash


async def served(http: TestClient[web.Request, web.Application]) -> dict[str, str]:
    """Every page and API answer, each checked to be a 2xx/503 answer of valid UTF-8."""
    server = http.server
    assert isinstance(server, TestServer)
    await server.app[ENDPOINTS_KEY].settled()
    pages: dict[str, str] = {}
    for path in ("/", "/jobs", "/api/v1/jobs", "/metrics", "/readyz"):
        response = await http.get(path)
        assert response.status in (200, 503), (path, response.status)
        pages[path] = (await response.read()).decode("utf-8")  # strict: no lone surrogate, no invalid byte
    om = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    pages["openmetrics"] = (await om.read()).decode("utf-8")
    # A strict parser (jq) refuses escaped lone surrogates; json.loads would accept them.
    assert "\\ud8" not in pages["/api/v1/jobs"].lower() and "\\udc" not in pages["/api/v1/jobs"].lower()
    json.loads(pages["/api/v1/jobs"])
    return pages


def rename_provider(world: World, name: str) -> str:
    state = world.instances[instance_id_of(world)]
    state.providers[0] = dataclasses.replace(state.providers[0], name=name)
    return state.providers[0].identity_provider_id


async def test_a_lone_surrogate_in_a_provider_name_is_repaired_and_every_page_serves(
    exporter: Exporter, http: TestClient[web.Request, web.Application], world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    target_id = rename_provider(world, "East\ud800Office")
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    inject_failed_job(world, instance, target_id, job_id="sync_job_after_surrogate")
    clock.advance(60)
    await exporter.poll(instance)
    assert exporter.targets[instance].names[("identity_provider", target_id)].name == "East\ufffdOffice"
    pages = await served(http)
    assert "East\ufffdOffice" in pages["/"] and "East\ufffdOffice" in pages["/metrics"]
    assert "sync_job_after_surrogate" in pages["/api/v1/jobs"] and "sync_job_after_surrogate" in pages["/jobs"]


async def test_a_lone_surrogate_in_an_api_error_message_is_repaired_and_every_page_serves(
    exporter: Exporter, http: TestClient[web.Request, web.Application], sim_app: SimulatorApp, world: World
) -> None:
    instance = instance_id_of(world)
    sim_app.faults.server_error_rate = 1.0
    sim_app.faults.error_message_suffix = " \udfff\ud800"  # a pair the wrong way round: two lone surrogates
    assert await exporter.poll(instance) is None  # never polled successfully
    last_error = exporter.snapshot.instances[instance].last_error
    assert last_error is not None and "\ufffd\ufffd" in last_error
    pages = await served(http)
    assert "\ufffd" in pages["/readyz"] or "\ufffd" in pages["/"]


async def test_a_raw_0xff_byte_in_one_description_costs_that_field_only(
    exporter: Exporter, http: TestClient[web.Request, web.Application], world: World, clock: ManualClock
) -> None:
    instance = instance_id_of(world)
    await exporter.poll(instance)
    state = world.instances[instance]
    target_id = state.providers[0].identity_provider_id
    bad = inject_failed_job(world, instance, target_id, job_id="sync_job_bad_byte", running_ms=1000)
    bad.description = "nightly \udcff import"  # sent as the raw byte 0xFF (see simulator _wire_bytes)
    bad.error_message = "refused \ud800 by the directory"  # and a lone surrogate escape in the same answer
    good = [
        inject_failed_job(world, instance, target_id, job_id=f"sync_job_good_{index}", running_ms=1000)
        for index in range(3)
    ]
    clock.advance(60)
    assert await exporter.poll(instance) is not None, "the whole answer must stay readable"
    view = exporter.snapshot.instances[instance]
    assert view.up and view.anomalies["bad_text"] == 1  # once per job and reason
    counted = {job["job_id"] for job in json.loads((await served(http))["/api/v1/jobs"])["jobs"]}
    assert {plan.job_id for plan in [bad, *good]} <= counted
    client = exporter.pollers[instance].client
    page = await anext(aiter(client.list_synchronization_job_pages(instance, max_results=10)))  # the newest jobs
    (job,) = [job for job in page.jobs if job.job_id == bad.job_id]
    assert job.description == "nightly \ufffd import" and type(job.description) is str
    assert job.error_message == "refused \ufffd by the directory"
    assert [anomaly.reason for anomaly in page.anomalies if anomaly.job_id == bad.job_id] == ["bad_text", "bad_text"]


# -- item 9: label values from the API are bounded -------------------------------------------


async def test_a_100_kb_target_name_is_cut_with_a_marker_and_counted(
    exporter: Exporter, http: TestClient[web.Request, web.Application], world: World
) -> None:
    instance = instance_id_of(world)
    target_id = rename_provider(world, "N" * 100_000)
    state = world.instances[instance]
    state.providers[1] = dataclasses.replace(state.providers[1], provider_type="urn:alibaba:idaas:idp:" + "t" * 5000)
    state.providers[2] = dataclasses.replace(state.providers[2], identity_provider_id="idp_" + "i" * 300)
    await exporter.refresh_targets(instance)
    await exporter.poll(instance)
    catalogue = exporter.targets[instance]
    cut = "N" * (MAX_LABEL_LENGTH - len(CUT_MARKER)) + CUT_MARKER
    assert catalogue.names[("identity_provider", target_id)].name == cut
    assert len(catalogue.names[("identity_provider", state.providers[1].identity_provider_id)].provider_type) == 256
    assert ("identity_provider", state.providers[2].identity_provider_id) not in catalogue.names
    assert catalogue.label_anomalies == {"long_label": 2, "bad_target_id": 1}
    pages = await served(http)
    assert f'target_id="{target_id}",target_name="{cut}"' in pages["/metrics"]
    assert f'idaas_exporter_targets_anomalous{{instance_id="{instance}",reason="long_label"}} 2' in pages["/metrics"]
    assert f'idaas_exporter_targets_anomalous{{instance_id="{instance}",reason="bad_target_id"}} 1' in pages["/metrics"]
    for text in (pages["/metrics"], pages["openmetrics"]):
        longest = max(len(value) for line in text.splitlines() for value in _label_values(line))
        assert longest <= MAX_LABEL_LENGTH


def _label_values(line: str) -> list[str]:
    if line.startswith("#") or "{" not in line:
        return []
    labels = line[line.index("{") + 1 : line.index("}")]
    return [part.split('="', 1)[1].rstrip('"') for part in labels.split('",') if '="' in part]
