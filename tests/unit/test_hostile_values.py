"""Hostile values in API answers: numbers past any sample, cursors past any URL, floods, label values without end
and text that would forge a line wherever an error is shown."""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from idaas_sync_exporter.api.client import MAX_NEXT_TOKEN_CHARS, ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import ApiError, EiamError, MalformedResponseError, shown_text
from idaas_sync_exporter.api.models import (
    ACTIONS,
    MAX_NEW_ACTIONS,
    MAX_NEW_OBJECT_TYPES,
    MAX_NEW_TRIGGER_TYPES,
    OBJECT_TYPES,
    OTHER_LABEL,
    TRIGGER_TYPES,
    UdPullConfiguration,
    examine_job,
    parse_model,
)
from idaas_sync_exporter.api.schedule import max_interval_seconds, quartz_to_croniter
from idaas_sync_exporter.collect import targets
from idaas_sync_exporter.collect.counting import TargetTally
from idaas_sync_exporter.collect.targets import TargetCatalogue
from idaas_sync_exporter.pullconfig.command import describe_api_error
from tests.conftest import AK_ID, AK_SECRET

HUGE = int("9" * 400)
# What a terminal, /readyz or a line-based reader must never meet raw.
FORGING = "denied\nidaas_fake: ready\x1b[2J\x1b[31mRED\x07\r\u2028\u202e\x85"


def _client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> EiamClient:
    async def no_sleep(seconds: float) -> None:
        return None

    return EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou"),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000, **{"max_attempts": 1, **options}),
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
    )


def _by_action(
    answers: dict[str, Callable[[httpx.Request], httpx.Response]],
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return answers[request.headers["x-acs-action"]](request)

    return handler


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=raw, headers=headers)


def _unsafe_characters(text: str) -> list[str]:
    return sorted({hex(ord(c)) for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")})


# -- numbers that become samples or schedule arithmetic ---------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"PullProtectedRule": {"UserDeletedThreshold": HUGE}},
        {"PullProtectedRule": {"OrganizationalUnitDeletedThreshold": -1}},
        {"PullProtectedRule": {"GroupDeletedThreshold": 2**60}},
        {"PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": [1, HUGE]}},
        {"PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": 24}},
        {"PeriodicSyncConfig": {"PeriodicSyncType": "cron", "PeriodicSyncCron": "\x1b[31m" + "C" * 2_000_000}},
    ],
)
def test_a_configuration_number_out_of_range_is_refused_at_parse(rule: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_model(UdPullConfiguration, rule, "UdPullConfiguration", "GetIdentityProviderUdPullConfiguration")
    assert len(str(caught.value)) < 600
    assert not _unsafe_characters(str(caught.value))


def test_an_hour_past_a_day_is_a_bad_schedule_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="hours 0-23"):
        max_interval_seconds({"PeriodicSyncType": "time", "PeriodicSyncTimes": [1, HUGE]})


async def test_one_providers_bad_configuration_never_abandons_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    providers = [{"IdentityProviderId": f"idp_{n}", "UdPullStatus": "enabled"} for n in (1, 2, 3)]
    answers = {
        "ListIdentityProviders": lambda _: _json({"IdentityProviders": providers, "TotalCount": 3}),
        "ListApplications": lambda _: _json({"Applications": [], "TotalCount": 0}),
        "GetIdentityProviderUdPullConfiguration": lambda request: _json(
            {
                "UdPullConfiguration": {
                    "PullProtectedRule": {
                        "UserDeletedThreshold": HUGE if "idp_1" in str(request.url) else 30,
                        "GroupDeletedThreshold": 5,
                    },
                    "PeriodicSyncStatus": "enabled",
                    "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": [3]},
                }
            }
        ),
    }
    real_view = targets.pull_config_view

    def failing_view(config: UdPullConfiguration, *, now: float) -> targets.PullConfigView:
        # An analysis failure other than ValueError (croniter raises several kinds) on one provider.
        if config.pull_protected_rule is not None and config.pull_protected_rule.group_deleted_threshold == 5:
            failing_view.calls += 1  # type: ignore[attr-defined]
            if failing_view.calls == 1:  # type: ignore[attr-defined]
                raise OverflowError("int too large to convert to float")
        return real_view(config, now=now)

    failing_view.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(targets, "pull_config_view", failing_view)
    async with _client(_by_action(answers)) as client:
        catalogue = TargetCatalogue("idaas_x", client)
        assert await catalogue.refresh()
    assert sorted(catalogue.pull_configs) == ["idp_3"]  # idp_1 refused at parse, idp_2 failed analysis
    assert catalogue.pull_configs["idp_3"].thresholds["user"] == 30
    assert catalogue.pull_config_failures == {"MalformedResponse": 1, "InvalidSchedule": 1}


async def test_a_total_count_past_any_sample_is_malformed() -> None:
    answers = {
        "ListSynchronizationJobs": lambda _: _json(b'{"SynchronizationJobs": [], "TotalCount": ' + b"9" * 400 + b"}")
    }
    async with _client(_by_action(answers)) as client:
        with pytest.raises(MalformedResponseError, match="TotalCount must be an integer"):
            [page async for page in client.list_synchronization_job_pages("idaas_x")]


# -- headers and cursors ------------------------------------------------------------------------


async def test_a_retry_after_of_400_digits_is_bounded_not_an_overflow() -> None:
    answer = _json({"Code": "Throttling", "Message": "slow"}, 400, {"x-acs-retry-after": "9" * 400})
    async with _client(lambda _: answer) as client:
        with pytest.raises(ApiError) as caught:
            await client.call("ListInstances", {})
    delay = caught.value.retry_after_seconds
    assert delay is None or delay <= 3600


async def test_a_large_retry_after_is_capped() -> None:
    answer = _json({"Code": "Throttling", "Message": "slow"}, 400, {"x-acs-retry-after": "9999999999"})
    async with _client(lambda _: answer) as client:
        with pytest.raises(ApiError) as caught:
            await client.call("ListInstances", {})
    assert caught.value.retry_after_seconds == 3600


@pytest.mark.parametrize(
    "token", ["T" * 70_000, "T" * (MAX_NEXT_TOKEN_CHARS + 1), "tok\x1b[2J", "tok\u00e9", "a b"], ids=str.__len__
)
async def test_a_next_token_that_cannot_be_a_cursor_is_malformed(token: str) -> None:
    answers = {
        "ListSynchronizationJobs": lambda _: _json({"SynchronizationJobs": [], "NextToken": token, "TotalCount": 0})
    }
    async with _client(_by_action(answers)) as client:
        with pytest.raises(MalformedResponseError, match="NextToken must be") as caught:
            [page async for page in client.list_synchronization_job_pages("idaas_x")]
    assert len(str(caught.value)) < 300


# -- floods -----------------------------------------------------------------------------------


async def test_a_page_with_more_jobs_than_asked_for_is_refused_unexamined() -> None:
    body = b'{"SynchronizationJobs":[' + b",".join([b"[]"] * 200_000) + b'],"TotalCount":0}'
    answers = {"ListSynchronizationJobs": lambda _: _json(body)}
    started = time.process_time()
    async with _client(_by_action(answers)) as client:
        with pytest.raises(MalformedResponseError, match="200000 jobs, more than the 50 asked for"):
            [page async for page in client.list_synchronization_job_pages("idaas_x", max_results=50)]
    assert time.process_time() - started < 1.0


async def test_a_listing_page_with_more_entries_than_asked_for_is_refused() -> None:
    providers = [{"IdentityProviderId": f"idp_{n}"} for n in range(150)]
    answers = {"ListIdentityProviders": lambda _: _json({"IdentityProviders": providers, "TotalCount": 150})}
    async with _client(_by_action(answers)) as client:
        with pytest.raises(MalformedResponseError, match="150 entries, more than the 100 asked for"):
            [idp async for idp in client.list_identity_providers("idaas_x")]


# -- label values without end -----------------------------------------------------------------


def _job(index: int, trigger: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "SynchronizationJobId": f"sync_{index}",
        "TargetType": "identity_provider",
        "TargetId": "idp_1",
        "Direction": "ingress",
        "Status": "success",
        "TriggerType": trigger,
        "StartTime": 1_700_000_000_000 + index,
        "EndTime": 1_700_000_001_000 + index,
        "Result": result,
    }


def test_one_job_with_thousands_of_object_types_is_folded_and_reported() -> None:
    result = {f"T{i}Statistics": {f"A{k}": {"Total": 2, "Success": 2} for k in range(20)} for i in range(500)}
    result["UserStatistics"] = {"Created": {"Total": 1, "Success": 1}}
    examined = examine_job(_job(1, "auto", result), "job")
    assert examined.job is not None
    statistics = examined.job.statistics
    assert len(statistics) <= len(OBJECT_TYPES) + MAX_NEW_OBJECT_TYPES + 1
    assert "user" in statistics and OTHER_LABEL in statistics
    assert all(len(actions) <= len(ACTIONS) + MAX_NEW_ACTIONS + 1 for actions in statistics.values())
    assert sum(counts.success for actions in statistics.values() for counts in actions.values()) == 500 * 20 * 2 + 1
    assert [anomaly.reason for anomaly in examined.anomalies] == ["bad_statistic"]


def test_label_values_per_target_are_bounded_and_every_count_is_kept() -> None:
    tally = TargetTally()
    for index in range(300):
        result = {
            f"New{index}Statistics": {f"Act{index}": {"Total": 3, "Success": 2, "Failed": 1}},
            "UserStatistics": {"Created": {"Total": 1, "Success": 1}, f"Made{index}": {"Total": 1, "Skipped": 1}},
        }
        examined = examine_job(_job(index, f"trigger{index}", result), "job")
        assert examined.job is not None
        tally.observe_latest(examined.job)
        tally.count(examined.job)
    object_types = {object_type for object_type, _, _ in tally.objects}
    actions = {action for _, action, _ in tally.objects}
    triggers = {trigger for trigger, _ in tally.jobs}
    assert len(object_types - set(OBJECT_TYPES)) == MAX_NEW_OBJECT_TYPES + 1 and OTHER_LABEL in object_types
    assert len(actions - set(ACTIONS)) == MAX_NEW_ACTIONS + 1 and OTHER_LABEL in actions
    assert len(triggers - set(TRIGGER_TYPES)) == MAX_NEW_TRIGGER_TYPES + 1 and OTHER_LABEL in triggers
    # Exactly once: every job and every object is counted, under its own label or as other.
    assert sum(tally.jobs.values()) == 300
    assert sum(tally.objects.values()) == 300 * (2 + 1 + 1 + 1)
    assert tally.objects[("user", "created", "success")] == 300
    # The documented vocabularies are never folded, however late they come.
    late = examine_job(_job(999, "manual", {"GroupMemberStatistics": {"Exported": {"Total": 1, "Success": 1}}}), "job")
    assert late.job is not None
    tally.count(late.job)
    assert tally.objects[("group_member", "exported", "success")] == 1
    assert tally.jobs[("manual", "success")] == 1
    assert tally.last_job is not None and set(tally.last_job.objects) <= set(tally.objects)
    # The state file keeps documents as JSON: ``other`` goes through and comes back the same.
    restored = TargetTally.from_json(json.loads(json.dumps(tally.to_json())))
    assert restored.objects == tally.objects and restored.jobs == tally.jobs
    again = examine_job(
        _job(1000, "trigger_new", {"BrandNewStatistics": {"Zapped": {"Total": 1, "Success": 1}}}), "job"
    )
    assert again.job is not None
    restored.count(again.job)
    assert (
        restored.objects[(OTHER_LABEL, OTHER_LABEL, "success")] > tally.objects[(OTHER_LABEL, OTHER_LABEL, "success")]
    )


# -- text that would forge a line -------------------------------------------------------------


def test_errors_cut_and_escape_api_text_where_they_are_built() -> None:
    api_error = ApiError(
        action="ListInstances",
        code="Forbidden.RAM",
        message=FORGING + "m" * 1_000_000,
        request_id="r\x1b]0;pwned\x07" + "R" * 3_000_000,
        http_status=403,
    )
    malformed = MalformedResponseError(action="ListInstances", problem=FORGING * 1000, request_id="R" * 3_000_000)
    for error in (api_error, malformed):
        text = str(error)
        assert len(text) < 1500
        assert not _unsafe_characters(text), _unsafe_characters(text)
        assert "\\n" in text or "\\u001b" in text  # escaped, not dropped: the reader sees what was sent
    # Cut to 80 and 200 characters before escaping; an escape is at most six characters.
    assert api_error.request_id.endswith("\u2026") and len(api_error.request_id) <= 6 * 80 + 1
    assert api_error.message.endswith("\u2026") and len(api_error.message) <= 6 * 200 + 1
    assert not _unsafe_characters(api_error.request_id + api_error.message)
    assert len(malformed.request_id) == 81
    described = describe_api_error(api_error)
    assert len(described) < 600 and not _unsafe_characters(described)


async def test_an_api_error_with_control_characters_is_one_line_through_the_client() -> None:
    body = {"Code": "Forbidden", "Message": FORGING, "RequestId": "Q" * 1_000_000 + "\x1b[2J"}
    async with _client(lambda _: _json(body, 403)) as client:
        with pytest.raises(ApiError) as caught:
            await client.call("GetIdentityProviderUdPullConfiguration", {})
    for text in (str(caught.value), describe_api_error(caught.value)):
        assert len(text) < 600 and not _unsafe_characters(text) and "\n" not in text


async def test_a_huge_request_id_in_a_malformed_answer_is_cut() -> None:
    body = {"RequestId": "R" * 3_000_000, "TotalCount": -1, "IdentityProviders": 5}
    async with _client(lambda _: _json(body)) as client:
        with pytest.raises(EiamError) as caught:
            [idp async for idp in client.list_identity_providers("idaas_x")]
    assert len(str(caught.value)) < 400


def test_a_cron_expression_is_quoted_cut_and_escaped() -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the message is what is checked
        quartz_to_croniter("\x1b[31m" + "C" * 2_000_000)
    assert len(str(caught.value)) < 300 and not _unsafe_characters(str(caught.value))
    with pytest.raises(ValueError) as caught:  # noqa: PT011
        quartz_to_croniter("0 0\n0 * * \x1b[2J ?")
    assert not _unsafe_characters(str(caught.value))


def test_anomaly_details_quote_keys_escaped() -> None:
    examined = examine_job(_job(1, "auto", {"\x1b[2J\nEvil\u2028Statistics": {"A": 1}}), "job")
    assert examined.anomalies
    for anomaly in examined.anomalies:
        assert not _unsafe_characters(anomaly.detail)


def test_shown_text_marks_a_cut_and_keeps_printable_text() -> None:
    assert shown_text("plain text, ünïcode") == "plain text, ünïcode"
    assert shown_text("x" * 10, 4) == "xxxx\u2026"
    assert shown_text("a\nb\x1bc\u202ed\ud800") == "a\\nb\\u001bc\\u202ed\ufffd"


# -- schedules that would hold the event loop -------------------------------------------------


@pytest.mark.parametrize(
    ("quartz", "gap_seconds"),
    [
        ("* * * * * ?", 1),
        ("* * 0 * * ?", 23 * 3600 + 1),  # every second of one hour: 00:59:59 to 00:00:00 the next day
        ("0,30 * * ? * 2-6", 2 * 86400 + 30),  # Friday 23:59:30 to Monday 00:00:00
        ("*/20 1,59 3,22 L * ?", 31 * 86400 - (22 * 3600 + 59 * 60 + 40 - (3 * 3600 + 60))),  # last days of months
    ],
)
def test_a_dense_cron_schedule_is_analysed_without_walking_its_runs(quartz: str, gap_seconds: int) -> None:
    started = time.process_time()
    gap = max_interval_seconds({"PeriodicSyncType": "cron", "PeriodicSyncCron": quartz}, now=1_790_000_000)
    assert time.process_time() - started < 0.1  # walking a per-second schedule's runs took 0.3 s
    assert gap == gap_seconds
