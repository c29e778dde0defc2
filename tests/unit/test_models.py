"""Parsing the API document's own example into typed jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from idaas_sync_exporter.api.errors import MalformedResponseError
from idaas_sync_exporter.api.models import INVALID_ERROR_CODE, examine_job, parse_job, snake_case
from tests.conftest import data_file
from tests.strategies import JSON, job_like


def document_example() -> dict[str, Any]:
    """The example response of the ListSynchronizationJobs document, as published."""
    example: dict[str, Any] = json.loads(
        data_file("list-synchronization-jobs-example.json").read_text(encoding="utf-8")
    )
    return example


def test_document_example_parses_every_statistic() -> None:
    raw = document_example()["SynchronizationJobs"][0]
    job = parse_job(raw, "SynchronizationJobs[0]", "ListSynchronizationJobs")
    assert job.job_id == "sync_0000347vjovtcf41li0fgsd98gn24q9njxxxxx"  # trailing newline stripped
    assert job.target_id == "idp_my664lwkhpicbyzirog3xxxxx"
    assert job.start_ms == 1649830226000 and job.end_ms == 1649830226000
    assert job.status == "success" and job.trigger_type == "auto" and job.is_final
    assert job.error_code == "MissingParameter.Username"
    assert set(job.statistics) == {"user", "organizational_unit", "group", "group_member"}
    assert set(job.statistics["user"]) == {"created", "updated", "binded", "deleted", "same", "pushed", "exported"}
    assert "exported" not in job.statistics["group"]
    exported = job.statistics["user"]["exported"]
    assert (exported.total, exported.success, exported.failed, exported.skipped) == (5, 2, 2, 1)
    assert job.statistics["group_member"]["pushed"].failed == 1


def test_unknown_statistics_and_actions_are_kept() -> None:
    raw = {
        "SynchronizationJobId": "s",
        "TargetType": "application",
        "TargetId": "app_1",
        "Direction": "egress",
        "Status": "partial_success",
        "StartTime": 1000,
        "EndTime": 61000,
        "Result": {
            "OrganizationalUnitStatistics": {"Exported": {"Total": 2, "Success": 2, "Failed": 0, "Skipped": 0}},
            "RoleAssignmentStatistics": {"ReAssigned": {"Total": 1, "Success": 0, "Failed": 1}},
            "TraceId": "abc",
        },
    }
    job = parse_job(raw, "job", "ListSynchronizationJobs")
    assert job.statistics["organizational_unit"]["exported"].success == 2
    assert job.statistics["role_assignment"]["re_assigned"].failed == 1
    assert job.statistics["role_assignment"]["re_assigned"].skipped == 0
    assert job.result_extra == {"TraceId": "abc"}
    assert job.duration_seconds == 60.0


def test_running_job_has_no_end_time() -> None:
    raw = {
        "SynchronizationJobId": "s",
        "TargetType": "identity_provider",
        "TargetId": "idp",
        "Direction": "ingress",
        "Status": "running",
        "StartTime": 5000,
        "EndTime": 0,
    }
    job = parse_job(raw, "job", "ListSynchronizationJobs")
    assert job.end_ms is None and not job.is_final and job.trigger_type == "unknown"


@pytest.mark.parametrize("bad", [True, "12", 1.0, -1, 10**15])
def test_bad_start_time_is_refused(bad: object) -> None:
    raw = {
        "SynchronizationJobId": "s",
        "TargetType": "t",
        "TargetId": "i",
        "Direction": "d",
        "Status": "success",
        "StartTime": bad,
    }
    with pytest.raises(MalformedResponseError, match="StartTime"):
        parse_job(raw, "job", "ListSynchronizationJobs")


def test_snake_case() -> None:
    assert snake_case("OrganizationalUnit") == "organizational_unit"
    assert snake_case("GroupMember") == "group_member"
    assert snake_case("Binded") == "binded"
    assert snake_case("SCIMPushed") == "scim_pushed"


def test_very_long_or_odd_label_fields_quarantine_or_repair_the_job() -> None:
    raw: dict[str, Any] = {
        "SynchronizationJobId": "s",
        "TargetType": "application",
        "TargetId": "a" * 10_000,
        "Direction": "egress",
        "Status": "success",
        "StartTime": 1,
    }
    quarantined = examine_job(raw, "job")
    assert quarantined.job is None
    assert [(a.job_id, a.reason) for a in quarantined.anomalies] == [("s", "malformed")]
    assert "TargetId" in quarantined.anomalies[0].detail and "10000 characters" in quarantined.anomalies[0].detail
    with pytest.raises(MalformedResponseError, match="TargetId is not a plain identifier"):
        parse_job(raw, "job", "ListSynchronizationJobs")
    repaired = examine_job({**raw, "TargetId": "a", "Result": {"ErrorCode": "E" * 100_000}}, "job")
    assert repaired.job is not None and repaired.job.error_code == INVALID_ERROR_CODE
    assert [a.reason for a in repaired.anomalies] == ["bad_error_code"]
    assert len(repaired.anomalies[0].detail) <= 300


BASE_JOB: dict[str, Any] = {
    "SynchronizationJobId": "sync_1",
    "TargetType": "identity_provider",
    "TargetId": "idp_1",
    "Direction": "ingress",
    "Status": "success",
    "StartTime": 1_700_000_000_000,
    "EndTime": 1_700_000_060_000,
    "TriggerType": "auto",
}
GOOD_COUNTS = {"Total": 2, "Success": 2, "Failed": 0, "Skipped": 0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("SynchronizationJobId", None),
        ("TargetId", "idp\ud800"),
        ("TargetId", "x" * 600),
        ("Status", None),
        ("Status", 3),
        ("Direction", ["ingress"]),
        ("StartTime", "1700000000000"),
        ("StartTime", 1.5e12),
    ],
)
def test_a_job_without_usable_identity_is_quarantined(field: str, value: object) -> None:
    examined = examine_job({**BASE_JOB, field: value}, "job")
    assert examined.job is None and [a.reason for a in examined.anomalies] == ["malformed"]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"UserStatistics": {"Created": {**GOOD_COUNTS, "Failed": -1}}}, "bad_statistic"),
        ({"UserStatistics": {"Created": {**GOOD_COUNTS, "Failed": 1.5}}}, "bad_statistic"),
        ({"UserStatistics": {"Created": {**GOOD_COUNTS, "Failed": "1"}}}, "bad_statistic"),
        ({"UserStatistics": [1, 2]}, "bad_statistic"),
        ({"UserStatistics": {"Created\ud800": GOOD_COUNTS}}, "bad_statistic"),
        ({"ErrorCode": "E" * 100_000}, "bad_error_code"),
        ({"ErrorCode": "has spaces and \n"}, "bad_error_code"),
    ],
)
def test_one_bad_field_is_left_out_and_the_rest_of_the_job_is_kept(result: dict[str, Any], reason: str) -> None:
    raw = {**BASE_JOB, "Result": {"GroupStatistics": {"Created": GOOD_COUNTS}, **result}}
    examined = examine_job(raw, "job")
    assert examined.job is not None and examined.job.is_final
    assert examined.job.statistics["group"]["created"].success == 2
    assert [a.reason for a in examined.anomalies] == [reason]
    assert all(a.job_id == "sync_1" for a in examined.anomalies)


def test_a_bad_end_time_or_trigger_type_is_repaired() -> None:
    examined = examine_job({**BASE_JOB, "EndTime": "soon", "TriggerType": {"x": 1}}, "job")
    assert examined.job is not None
    assert examined.job.end_ms is None and examined.job.trigger_type == "unknown"
    assert sorted(a.reason for a in examined.anomalies) == ["bad_end_time", "bad_trigger_type"]


def test_a_counted_job_is_examined_without_reading_its_statistics_again() -> None:
    raw = dict(document_example()["SynchronizationJobs"][0])
    raw["Result"] = {**raw["Result"], "UserStatistics": {"Exported": {"Total": "many"}}}
    fresh = examine_job(raw, "job")
    assert [a.reason for a in fresh.anomalies] == ["bad_statistic"]
    known = examine_job(raw, "job", statistics=False)
    assert known.job is not None and known.anomalies == ()
    assert known.job.statistics == {}
    assert fresh.job is not None
    assert (known.job.job_id, known.job.status, known.job.start_ms) == (
        fresh.job.job_id,
        fresh.job.status,
        fresh.job.start_ms,
    )


# --- hostile input, property-based ---------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=job_like() | JSON)
def test_job_parser_returns_a_job_or_a_typed_error(raw: Any) -> None:
    try:
        job = parse_job(raw, "job", "ListSynchronizationJobs")
    except MalformedResponseError as exc:
        assert "ListSynchronizationJobs returned a malformed response" in str(exc)
        return
    assert job.start_ms > 0
    for per_action in job.statistics.values():
        for counts in per_action.values():
            assert all(isinstance(v, int) and 0 <= v <= 2**53 for v in counts)
