"""Parsing the API document's own example into typed jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.api.errors import MalformedResponseError
from exporter.api.models import parse_job, snake_case
from tests.conftest import data_file


def document_example() -> dict[str, Any]:
    """The example response of the ListSynchronizationJobs document, as published."""
    return json.loads(data_file("list-synchronization-jobs-example.json").read_text(encoding="utf-8"))


def test_document_example_parses_every_statistic() -> None:
    raw = document_example()["SynchronizationJobs"][0]
    job = parse_job(raw, "SynchronizationJobs[0]", "ListSynchronizationJobs")
    assert job.job_id == "sync_0000347vjovtcf41li0fgsd98gn24q9njxxxxx"  # trailing newline stripped
    assert job.target_id == "idp_my664lwkhpicbyzirog3xxxxx"
    assert job.start_time == 1649830226.0 and job.end_time == 1649830226.0
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
    assert job.end_time is None and not job.is_final and job.trigger_type == "unknown"


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


def test_very_long_label_fields_are_refused() -> None:
    raw = {
        "SynchronizationJobId": "s",
        "TargetType": "application",
        "TargetId": "a" * 10_000,
        "Direction": "egress",
        "Status": "success",
        "StartTime": 1,
    }
    with pytest.raises(MalformedResponseError, match="TargetId is 10000 characters long"):
        parse_job(raw, "job", "ListSynchronizationJobs")
    raw = {**raw, "TargetId": "a", "Result": {"ErrorCode": "E" * 5000}}
    with pytest.raises(MalformedResponseError, match="ErrorCode is 5000 characters long"):
        parse_job(raw, "job", "ListSynchronizationJobs")
