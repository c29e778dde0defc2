"""Hostile and malformed input: typed errors, never a crash, never an invalid exposition."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from idaas_sync_exporter.api.errors import MalformedResponseError
from idaas_sync_exporter.api.models import parse_job
from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
from idaas_sync_exporter.collect.targets import TargetInfo
from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.metrics.exposition import render
from idaas_sync_exporter.metrics.snapshot import ApiRequestView, InstanceView, Snapshot, TargetView

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
COUNTS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=5), st.none())
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
HOSTILE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=SURROGATES)
    | st.sampled_from(["\n", '"', "\\", "\x00", "\r"]),
    min_size=1,
    max_size=300,
)


def job_like() -> st.SearchStrategy[dict[str, Any]]:
    counts = st.fixed_dictionaries({}, optional={k: COUNTS for k in ("Total", "Success", "Failed", "Skipped")})
    stats = st.dictionaries(st.sampled_from(["Created", "Deleted", "Pushed", "Weird"]), counts | JSON, max_size=3)
    result = st.dictionaries(
        st.sampled_from(["UserStatistics", "GroupStatistics", "ErrorCode", "Other", "Statistics"]),
        stats | JSON,
        max_size=4,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "SynchronizationJobId": st.text(max_size=50) | JSON,
            "TargetType": st.sampled_from(["application", "identity_provider"]) | JSON,
            "TargetId": HOSTILE_TEXT | JSON,
            "Direction": st.sampled_from(["ingress", "egress"]),
            "Status": st.sampled_from(["success", "running", "failed", "bogus"]) | JSON,
            "StartTime": st.integers(min_value=-5, max_value=10**15) | JSON,
            "EndTime": st.integers(min_value=-5, max_value=10**15) | JSON,
            "TriggerType": st.sampled_from(["auto", "manual"]) | JSON,
            "Result": result | JSON,
        },
    )


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


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "poll_interval_seconds",
                "listen_address",
                "directions",
                "region_id",
                "lookback_seconds",
                "log_level",
                "instance_ids",
                "requests_per_second",
                "access_key_id",
            ]
        ),
        st.text(max_size=40),
        max_size=5,
    ),
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=8, max_size=20).map(lambda s: "sk-" + s),
)
def test_settings_return_settings_or_one_line_problems(values: dict[str, str], secret: str) -> None:
    try:
        load_settings(overrides={**values, "access_key_secret": secret})
    except SettingsError as exc:
        assert exc.problems
        assert all("\n" not in problem for problem in exc.problems)
        assert all(secret not in problem for problem in exc.problems)


def hostile_snapshot(target_id: str, name: str, code: str) -> Snapshot:
    tally = TargetTally()
    tally.jobs[("auto", "failed")] = 2**40
    tally.errors[code] = 1
    tally.objects[("user", name[:30] or "x", "failed")] = 7
    key = TargetKey("identity_provider", target_id, "ingress")
    view = InstanceView(
        instance_id="idaas_\u4e2d\u6587",
        up=True,
        polled=True,
        last_success=1.5,
        last_error=None,
        poll_duration=0.1,
        poll_failures=0,
        targets=MappingProxyType({key: TargetView.of(tally, {}, None)}),
        target_info=MappingProxyType({("identity_provider", target_id): TargetInfo(name, "x:y")}),
    )
    return Snapshot(
        1, 0.0, MappingProxyType({view.instance_id: view}), ApiRequestView(MappingProxyType({}), MappingProxyType({}))
    )


@settings(max_examples=150, deadline=None)
@given(target_id=HOSTILE_TEXT, name=HOSTILE_TEXT, code=HOSTILE_TEXT)
def test_label_values_are_escaped_so_the_exposition_parses_back(target_id: str, name: str, code: str) -> None:
    text = render(hostile_snapshot(target_id, name, code)).decode("utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    info = families["idaas_sync_target_info"].samples[0].labels
    assert info["target_id"] == clean(target_id)
    assert info["target_name"] == clean(name)
    errors = families["idaas_sync_job_errors"].samples[0]
    assert errors.labels["error_code"] == clean(code)


def clean(value: str) -> str:
    """What the exposition promises for a label value: control characters other than LF become U+FFFD."""
    return "".join("\ufffd" if (ord(c) < 32 and c != "\n") or ord(c) == 127 else c for c in value)
