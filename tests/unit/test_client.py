"""The client against the simulator (real HTTP, real signatures) and against scripted transports."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient, JobFilter
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import (
    THROTTLING_CODES,
    ApiError,
    MalformedResponseError,
    PaginationError,
    TransportError,
)
from idaas_sync_exporter.simulator.server import RunningSimulator, SimulatorApp
from idaas_sync_exporter.simulator.world import World
from tests.conftest import AK_ID, AK_SECRET, STS_ID, STS_SECRET, STS_TOKEN, instance_id_of

pytestmark = pytest.mark.asyncio


def _truth(world: World, instance_id: str) -> list[str]:
    """Job ids visible now, newest first: what a full listing must return."""
    jobs = world.visible_jobs(instance_id, world.now_ms())
    return [job.job_id for job in reversed(jobs)]


async def test_next_token_paging_returns_every_job_once(
    make_client: Callable[..., EiamClient], world: World, sim_app: SimulatorApp
) -> None:
    client = make_client()
    instance_id = instance_id_of(world)
    pages = [page async for page in client.list_synchronization_job_pages(instance_id)]
    ids = [job.job_id for page in pages for job in page.jobs]
    assert ids == _truth(world, instance_id)
    assert len(ids) > 300  # several pages
    assert all(len(page.jobs) == 100 for page in pages[:-1])
    assert pages[0].total_count == len(ids)
    assert pages[-1].next_token is None
    assert sim_app.requests.count("ListSynchronizationJobs") == len(pages)
    sent = sim_app.requests.params[0]
    assert sent["MaxResults"] == "100" and sent["InstanceId"] == instance_id


async def test_filters_reach_the_server_and_apply(
    make_client: Callable[..., EiamClient], world: World, sim_app: SimulatorApp
) -> None:
    client = make_client()
    instance_id = instance_id_of(world)
    state = world.instances[instance_id]
    idp = state.providers[0].identity_provider_id
    since_ms = world.now_ms() - 6 * 3600_000
    job_filter = JobFilter(
        start_ms=since_ms,
        target_type="identity_provider",
        direction="ingress",
        target_ids=[idp],
        filters={"status": ["success", "partial_success"]},
    )
    jobs = [job async for page in client.list_synchronization_job_pages(instance_id, job_filter) for job in page.jobs]
    assert jobs, "the scenario has successful jobs for its first identity provider"
    assert {job.target_id for job in jobs} == {idp}
    assert {job.status for job in jobs} <= {"success", "partial_success"}
    assert all(job.start_ms >= since_ms for job in jobs)
    sent = sim_app.requests.params[-1]
    assert sent["TargetIds.1"] == idp
    assert sent["Filters.1.Key"] == "status"
    assert sent["Filters.1.Values.2"] == "partial_success"
    assert sent["StartTime"] == str(since_ms)


async def test_listings_and_pull_configuration_round_trip(make_client: Callable[..., EiamClient], world: World) -> None:
    client = make_client()
    instance_id = next(iter(world.instances))
    providers = [p async for p in client.list_identity_providers(instance_id, page_size=2)]
    assert len(providers) == len(world.instances[instance_id].providers)
    assert providers[0].provider_kind == "alibaba:dingtalk:pull"
    apps = [a async for a in client.list_applications(instance_id)]
    assert [a.application_name for a in apps] == ["HR Portal", "Expense", "Wiki"]

    idp = providers[0].identity_provider_id
    await client.set_ud_pull_configuration(
        instance_id,
        idp,
        {
            "IncrementalCallbackStatus": "enabled",
            "PeriodicSyncStatus": "enabled",
            "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": [3, 5]},
            "PullProtectedRule": {"UserDeletedThreshold": 30},
        },
    )
    config = await client.get_ud_pull_configuration(instance_id, idp)
    assert config.periodic_sync_config is not None
    assert config.periodic_sync_config.periodic_sync_times == [3, 5]
    assert config.pull_protected_rule is not None
    assert config.pull_protected_rule.user_deleted_threshold == 30
    assert config.group_sync_status is None  # not sent, so not stored

    job = next(iter(world.visible_jobs(instance_id, world.now_ms())))
    fetched = (await client.get_synchronization_job(instance_id, job.job_id)).job
    assert fetched is not None and fetched.job_id == job.job_id and fetched.status == job.final_status


async def test_sts_credentials_are_signed_and_accepted(
    simulator: RunningSimulator, world: World, sim_app: SimulatorApp
) -> None:
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(STS_ID, SecretStr(STS_SECRET), SecretStr(STS_TOKEN)),
    )
    async with client:
        instance_id = next(iter(world.instances))
        providers = [p.identity_provider_id async for p in client.list_identity_providers(instance_id)]
        assert providers == [p.identity_provider_id for p in world.instances[instance_id].providers]


async def test_wrong_secret_fails_at_once_with_its_code(
    make_client: Callable[..., EiamClient], sim_app: SimulatorApp, sleeps: list[float]
) -> None:
    client = make_client(secret="wrong-secret")
    with pytest.raises(ApiError) as caught:
        await client.call("ListInstances", {})
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.http_status == 403
    assert caught.value.request_id
    assert sim_app.requests.count("ListInstances") == 0  # refused before dispatch
    assert sleeps == []  # not retried


async def test_parameter_error_is_not_retried(make_client: Callable[..., EiamClient], sleeps: list[float]) -> None:
    client = make_client()
    with pytest.raises(ApiError) as caught:
        await client.call("ListSynchronizationJobs", {"InstanceId": "idaas_doesnotexist"})
    assert caught.value.code == "EntityNotExists.Instance"
    with pytest.raises(ApiError) as caught:
        await client.call("ListSynchronizationJobs", {"MaxResults": 5})
    assert caught.value.code == "MissingParameter"
    assert sleeps == []


async def test_throttled_then_success_is_retried_with_fresh_signatures(
    make_client: Callable[..., EiamClient], sim_app: SimulatorApp, sleeps: list[float], world: World
) -> None:
    sim_app.faults.throttle_rate = 1.0
    sim_app.faults.retry_after_ms = 1500
    observed: list[str] = []
    client = make_client()
    original = client._attempt

    async def attempt(action: str, query: dict[str, str], instance_id: str) -> dict[str, Any]:
        if len(observed) == 2:
            sim_app.faults.throttle_rate = 0.0
        try:
            result = await original(action, query, instance_id)
        except ApiError as exc:
            observed.append(exc.code)
            raise
        observed.append("OK")
        return result

    client._attempt = attempt  # type: ignore[method-assign]
    answer = await client.call("ListInstances", {})
    assert [i["InstanceId"] for i in answer["Instances"]] == list(world.instances)
    assert observed == ["Throttling.User", "Throttling.User", "OK"]
    assert sleeps == [1.5, 1.5]  # x-acs-retry-after (milliseconds) honoured
    nonces = sim_app.requests.nonces
    assert len(nonces) == 3 and len(set(nonces)) == 3


def _scripted(responses: list[httpx.Response | Exception], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler)


def _client(transport: httpx.MockTransport, sleeps: list[float], **options: Any) -> EiamClient:
    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    return EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou"),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000, **options),
        transport=transport,
        sleep=record,
    )


def _ok(body: Any) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(body).encode())


async def test_transport_errors_and_5xx_are_retried_with_backoff() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [
        httpx.ConnectError("connection refused"),
        httpx.Response(503, json={"Code": "ServiceUnavailable", "Message": "busy", "RequestId": "r1"}),
        httpx.Response(502, content=b"<html>bad gateway</html>"),
        _ok({"RequestId": "r2", "TotalCount": 0, "Instances": []}),
    ]
    client = _client(_scripted(responses, seen), sleeps)
    assert (await client.call("ListInstances", {}))["Instances"] == []
    assert len(seen) == 4
    assert len(sleeps) == 3 and all(0 < s <= 20 for s in sleeps)
    dates = {r.headers["x-acs-signature-nonce"] for r in seen}
    assert len(dates) == 4
    assert seen[0].headers["host"] == "eiam.cn-hangzhou.aliyuncs.com"
    assert seen[0].url.path == "/" and seen[0].method == "POST" and seen[0].content == b""


async def test_retries_are_bounded() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    throttled = [
        httpx.Response(400, json={"Code": "Throttling", "Message": "slow down", "RequestId": f"r{i}"})
        for i in range(10)
    ]
    client = _client(_scripted(list(throttled), seen), sleeps, max_attempts=3)
    with pytest.raises(ApiError) as caught:
        await client.call("ListInstances", {})
    assert caught.value.code in THROTTLING_CODES
    assert len(seen) == 3


async def test_transport_error_after_last_attempt_is_typed() -> None:
    seen: list[httpx.Request] = []
    client = _client(_scripted([httpx.ReadTimeout("slow")] * 2, seen), [], max_attempts=2)
    with pytest.raises(TransportError) as caught:
        await client.call("ListInstances", {})
    assert caught.value.metric_code == "ReadTimeout"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json at all", "not a JSON object"),
        (b'{"RequestId": "x", "SynchronizationJobs": {"a": 1}}', "SynchronizationJobs must be a list"),
        (b'{"RequestId": "x", "TotalCount": 3}', "SynchronizationJobs is missing"),
    ],
)
async def test_malformed_responses_raise_a_clear_error(body: bytes, fragment: str) -> None:
    seen: list[httpx.Request] = []
    # Malformed bodies are retried once more (they are often truncation); both attempts bad.
    client = _client(_scripted([httpx.Response(200, content=body)] * 2, seen), [], max_attempts=2)
    with pytest.raises(MalformedResponseError) as caught:
        _ = [p async for p in client.list_synchronization_job_pages("idaas_x")]
    assert caught.value.action == "ListSynchronizationJobs"
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("body", "fragment", "usable"),
    [
        (
            b'{"SynchronizationJobs": [{"TargetType": "application"}]}',
            "SynchronizationJobId must be a non-empty string",
            False,
        ),
        (
            b'{"SynchronizationJobs": [{"SynchronizationJobId": "s1", "TargetType": "application", "TargetId": "a",'
            b' "Direction": "egress", "Status": "success", "StartTime": "yesterday"}]}',
            "StartTime must be epoch milliseconds",
            False,
        ),
        (
            b'{"SynchronizationJobs": [{"SynchronizationJobId": "s1", "TargetType": "application", "TargetId": "a",'
            b' "Direction": "egress", "Status": "success", "StartTime": 1, "Result": {"UserStatistics":'
            b' {"Created": {"Total": -4, "Success": 0, "Failed": 0, "Skipped": 0}}}}]}',
            "UserStatistics.Created Total is out of range",
            True,
        ),
        (
            b'{"SynchronizationJobs": [{"SynchronizationJobId": "s1", "TargetType": "application", "TargetId": "a",'
            b' "Direction": "egress", "Status": "success", "StartTime": 1, "Result": {"GroupStatistics":'
            b' {"Pushed": {"Total": 1.5}}}}]}',
            "GroupStatistics.Pushed Total must be an integer",
            True,
        ),
    ],
)
async def test_one_odd_job_is_reported_not_a_failed_page(body: bytes, fragment: str, usable: bool) -> None:
    seen: list[httpx.Request] = []
    client = _client(_scripted([httpx.Response(200, content=body)], seen), [], max_attempts=1)
    pages = [p async for p in client.list_synchronization_job_pages("idaas_x")]
    assert len(pages) == 1 and len(seen) == 1  # no retry: the page itself was fine
    assert len(pages[0].jobs) == (1 if usable else 0)
    assert len(pages[0].anomalies) == 1 and fragment in pages[0].anomalies[0].detail


async def test_repeated_next_token_is_detected_not_looped() -> None:
    seen: list[httpx.Request] = []
    page = {"RequestId": "r", "SynchronizationJobs": [], "NextToken": "NTsame"}
    client = _client(_scripted([_ok(page), _ok(page), _ok(page)], seen), [])
    with pytest.raises(PaginationError):
        _ = [p async for p in client.list_synchronization_job_pages("idaas_x")]
    assert len(seen) == 2


async def test_secrets_never_appear_in_reprs_errors_or_logs(
    make_client: Callable[..., EiamClient], simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    sts = StaticCredentialsProvider(STS_ID, SecretStr(STS_SECRET), SecretStr(STS_TOKEN))
    texts += [repr(sts), str(await sts.get()), repr(await sts.get())]
    wrong = make_client(secret=AK_SECRET + "x")
    texts.append(repr(wrong))
    with pytest.raises(ApiError) as caught:
        await wrong.call("ListInstances", {})
    texts += [str(caught.value), repr(caught.value)]
    # A retried failure logs at warning level: it must not carry secrets either.
    sts_client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", "http://127.0.0.1:1"),
        credentials=sts,
        options=ClientOptions(max_attempts=2, backoff_initial_seconds=0.01, backoff_max_seconds=0.01),
    )
    with pytest.raises(TransportError) as transport_error:
        await sts_client.call("ListInstances", {})
    texts += [str(transport_error.value), repr(sts_client)]
    await sts_client.aclose()
    texts.append(caplog.text)
    texts += [json.dumps(r.__dict__, default=str) for r in caplog.records]
    combined = "\n".join(texts)
    assert "retrying API call" in caplog.text
    for secret in (AK_SECRET, STS_SECRET, STS_TOKEN):
        assert secret not in combined


async def test_unbounded_error_codes_never_become_unbounded_labels() -> None:
    from idaas_sync_exporter.api.errors import OTHER_CODE, UNREADABLE_CODE
    from idaas_sync_exporter.metrics.api_requests import ApiStats

    huge = httpx.Response(400, json={"Code": "E" * 100_000, "Message": "m", "RequestId": "r" * 10_000})
    client = _client(_scripted([huge], []), [], max_attempts=1)
    with pytest.raises(ApiError) as caught:
        await client.call("ListInstances", {})
    assert caught.value.metric_code == UNREADABLE_CODE
    assert len(str(caught.value)) < 1000
    stats = ApiStats()
    for index in range(500):  # random codes forever add no series past the limit
        stats.observe("idaas_1", "ListSynchronizationJobs", f"Random.Code{index}", 0.1)
    codes = {code for (_, _, code) in stats.counts}
    assert len(codes) == 51 and OTHER_CODE in codes
    assert sum(stats.counts.values()) == 500  # nothing dropped: the rest is counted as other


async def test_job_error_codes_per_target_are_bounded() -> None:
    from idaas_sync_exporter.api.errors import MAX_DISTINCT_CODES, OTHER_CODE
    from idaas_sync_exporter.api.models import parse_job
    from idaas_sync_exporter.collect.counting import TargetTally

    tally = TargetTally()
    for index in range(200):
        raw = {
            "SynchronizationJobId": f"sync_{index}",
            "TargetType": "application",
            "TargetId": "app_1",
            "Direction": "egress",
            "Status": "failed",
            "StartTime": 1_700_000_000_000 + index,
            "Result": {"ErrorCode": f"Code.{index}"},
        }
        tally.count(parse_job(raw, "job", "ListSynchronizationJobs"))
    assert len(tally.errors) == MAX_DISTINCT_CODES + 1
    assert tally.errors[OTHER_CODE] == 200 - MAX_DISTINCT_CODES
