"""The exposition: exact values from the API document's example, a golden file, and invariants."""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from prometheus_client.parser import text_string_to_metric_families

from idaas_sync_exporter.api.models import parse_job
from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
from idaas_sync_exporter.collect.targets import TargetInfo
from idaas_sync_exporter.metrics.exposition import ExpositionCache, Renderer
from idaas_sync_exporter.metrics.exposition import render as render_sync
from idaas_sync_exporter.metrics.selfmetrics import BuildInfo, SelfMetrics
from idaas_sync_exporter.metrics.snapshot import ApiRequestView, InstanceView, Snapshot, TargetView
from tests.strategies import HOSTILE_TEXT
from tests.unit.test_models import document_example

GOLDEN = Path(__file__).parent / "golden" / "seed_example.prom"
GOLDEN_OPENMETRICS = Path(__file__).parent / "golden" / "seed_example.openmetrics"
# The exporter's own metrics as prometheus-client renders them, with fixed build labels and
# without the process_* families (their values are the test process's).
FIXED_BUILD = BuildInfo("0.1.0", "0123456789abcdef0123456789abcdef01234567", "3.11.0")


def render(snapshot: Snapshot, *, openmetrics: bool = False) -> bytes:
    return render_sync(snapshot, openmetrics=openmetrics, self_metrics=SelfMetrics(FIXED_BUILD, process=False))


INSTANCE = "idaas_ue2jvisn35ea5lmthk267xxxxx"


def seed_snapshot(version: int = 1) -> Snapshot:
    job = parse_job(document_example()["SynchronizationJobs"][0], "job", "ListSynchronizationJobs")
    tally = TargetTally()
    tally.count(job)
    tally.observe_latest(job)
    key = TargetKey(job.target_type, job.target_id, job.direction)
    view = InstanceView(
        instance_id=INSTANCE,
        up=True,
        polled=True,
        last_success=1700000000.0,
        last_error=None,
        poll_duration=0.25,
        poll_failures=0,
        targets=MappingProxyType({key: TargetView.of(tally, {"running": 1}, 1649830000_000)}),
        target_info=MappingProxyType(
            {("identity_provider", job.target_id): TargetInfo('DingTalk "HQ"\n', "alibaba:dingtalk:pull")}
        ),
    )
    api = ApiRequestView(
        counts=MappingProxyType(
            {
                (INSTANCE, "ListSynchronizationJobs", "OK"): 3,
                (INSTANCE, "ListSynchronizationJobs", "Throttling.User"): 1,
            }
        ),
        durations=MappingProxyType({"ListSynchronizationJobs": ((1, 2, 1, 0, 0, 0, 0, 0, 0, 0), 0.4, 4)}),
    )
    return Snapshot(version, 1700000000.0, MappingProxyType({INSTANCE: view}), api)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


def labels(**extra: str) -> frozenset[tuple[str, str]]:
    base = {
        "instance_id": INSTANCE,
        "target_type": "identity_provider",
        "target_id": "idp_my664lwkhpicbyzirog3xxxxx",
        "direction": "ingress",
    }
    return frozenset({**base, **extra}.items())


def test_document_example_becomes_exact_metric_values() -> None:
    got = samples(render(seed_snapshot()).decode())
    assert got[("idaas_sync_jobs_total", labels(trigger_type="auto", status="success"))] == 1
    assert got[("idaas_sync_jobs_total", labels(trigger_type="manual", status="failed"))] == 0
    assert got[("idaas_sync_objects_total", labels(object_type="user", action="exported", result="failed"))] == 2
    assert got[("idaas_sync_objects_total", labels(object_type="user", action="exported", result="skipped"))] == 1
    assert got[("idaas_sync_objects_total", labels(object_type="group", action="exported", result="success"))] == 0
    assert got[("idaas_sync_objects_total", labels(object_type="group_member", action="binded", result="success"))] == 1
    assert got[("idaas_sync_job_errors_total", labels(error_code="MissingParameter.Username"))] == 1
    assert got[("idaas_sync_last_job_status", labels(status="success"))] == 1
    assert got[("idaas_sync_last_job_status", labels(status="failed"))] == 0
    assert (
        got[
            (
                "idaas_sync_last_job_objects",
                labels(object_type="organizational_unit", action="deleted", result="failed"),
            )
        ]
        == 1
    )
    assert got[("idaas_sync_last_job_start_timestamp_seconds", labels())] == 1649830226.0
    assert got[("idaas_sync_last_success_timestamp_seconds", labels())] == 1649830226.0
    assert got[("idaas_sync_job_duration_seconds_bucket", labels(le="1.0"))] == 1  # EndTime == StartTime
    assert got[("idaas_sync_jobs_in_progress", labels(status="running"))] == 1
    assert got[("idaas_sync_jobs_in_progress", labels(status="pending"))] == 0
    assert (
        got[
            (
                "idaas_exporter_api_requests_total",
                frozenset(
                    {"instance_id": INSTANCE, "action": "ListSynchronizationJobs", "code": "Throttling.User"}.items()
                ),
            )
        ]
        == 1
    )
    # no "total" result: it is the sum of the others
    assert not any(dict(k[1]).get("result") == "total" for k in got)


def test_golden_exposition() -> None:
    for openmetrics, golden in ((False, GOLDEN), (True, GOLDEN_OPENMETRICS)):
        text = render(seed_snapshot(), openmetrics=openmetrics).decode()
        if os.environ.get("UPDATE_GOLDEN") == "1":
            golden.write_text(text, encoding="utf-8")
        assert text == golden.read_text(encoding="utf-8"), "run with UPDATE_GOLDEN=1 and review the diff"


def failed_job_snapshot(job_id: str = "sync_job_failed_1") -> Snapshot:
    """The seed's target plus a failed job with an error code, counted after the seed's job."""
    seed = seed_snapshot()
    raw = dict(document_example()["SynchronizationJobs"][0])
    raw.update(
        SynchronizationJobId=job_id,
        Status="failed",
        TriggerType="manual",
        StartTime=1649830300000,
        EndTime=1649830360500,
        Result={"ErrorCode": "IdentityProvider.ConnectionFailed", "ErrorMessage": "refused"},
    )
    first = parse_job(document_example()["SynchronizationJobs"][0], "job", "ListSynchronizationJobs")
    failed = parse_job(raw, "job", "ListSynchronizationJobs")
    tally = TargetTally()
    for job in (first, failed):
        tally.count(job)
        tally.observe_latest(job)
    key = TargetKey(first.target_type, first.target_id, first.direction)
    view = dataclasses.replace(
        seed.instances[INSTANCE], targets=MappingProxyType({key: TargetView.of(tally, {}, None)})
    )
    return Snapshot(2, seed.created, MappingProxyType({INSTANCE: view}), seed.api)


def test_openmetrics_counters_carry_the_latest_jobs_id_and_end_time_as_exemplars() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    snapshot = failed_job_snapshot()
    text = render(snapshot).decode()
    assert " # {" not in text, "the text format has no exemplars"
    exemplars = {}
    for family in parse_om(render(snapshot, openmetrics=True).decode()):
        for sample in family.samples:
            if sample.exemplar is not None:
                exemplars[(sample.name, frozenset(sample.labels.items()))] = sample.exemplar
    failed = exemplars[("idaas_sync_jobs_total", labels(trigger_type="manual", status="failed"))]
    assert (
        failed.labels == {"job_id": "sync_job_failed_1"}
        and failed.value == 1
        and float(failed.timestamp) == 1649830360.5
    )
    success = exemplars[("idaas_sync_jobs_total", labels(trigger_type="auto", status="success"))]
    assert success.labels == {"job_id": "sync_0000347vjovtcf41li0fgsd98gn24q9njxxxxx"}
    error = exemplars[("idaas_sync_job_errors_total", labels(error_code="IdentityProvider.ConnectionFailed"))]
    assert error.labels == {"job_id": "sync_job_failed_1"}
    # Series no job moved have none; no other family has any.
    assert ("idaas_sync_jobs_total", labels(trigger_type="auto", status="failed")) not in exemplars
    assert {name for name, _ in exemplars} == {"idaas_sync_jobs_total", "idaas_sync_job_errors_total"}


def test_a_job_id_too_long_for_an_exemplar_is_left_out_of_it() -> None:
    long_id = "j" * 123  # with the name job_id, 129 characters: over OpenMetrics' 128
    text = render(failed_job_snapshot(long_id), openmetrics=True).decode()
    assert long_id not in text.split("idaas_sync_last_failed_job_info")[0]
    assert f'job_id="{long_id}"' in text  # the info series still names it


def test_the_latest_failure_is_one_series_per_target_naming_job_and_code() -> None:
    got = samples(render(failed_job_snapshot()).decode())
    info = {k: v for k, v in got.items() if k[0] == "idaas_sync_last_failed_job_info"}
    assert info == {
        (
            "idaas_sync_last_failed_job_info",
            labels(job_id="sync_job_failed_1", status="failed", error_code="IdentityProvider.ConnectionFailed"),
        ): 1
    }
    assert not any(k[0] == "idaas_sync_last_failed_job_info" for k in samples(render(seed_snapshot()).decode()))


def test_both_formats_agree_on_length_and_gzip_with_exemplars() -> None:
    rendered = Renderer().render(failed_job_snapshot())
    for openmetrics in (False, True):
        body = rendered.body(openmetrics=openmetrics)
        assert rendered.length(openmetrics=openmetrics) == len(body)
        assert gzip.decompress(rendered.gzipped(openmetrics=openmetrics)) == body


def test_label_values_are_escaped_and_no_sample_has_a_timestamp() -> None:
    text = render(seed_snapshot()).decode()
    assert 'target_name="DingTalk \\"HQ\\"\\n"' in text
    for family in text_string_to_metric_families(text):
        assert all(sample.timestamp is None for sample in family.samples)


def test_openmetrics_rendering_parses() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    text = render(seed_snapshot(), openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    names = {family.name for family in parse_om(text)}
    assert {"idaas_sync_jobs", "idaas_up", "idaas_sync_job_duration_seconds"} <= names


async def test_rendering_happens_once_per_snapshot_and_only_for_changed_targets() -> None:
    renderer = Renderer()
    cache = ExpositionCache(renderer)
    first = seed_snapshot(1)
    for _ in range(5):
        prepared = await cache.prepare(first)
    assert cache.renders == 1
    assert renderer.target_renders == 1
    assert cache.served() is prepared
    assert prepared.compressed_blocks == 1
    for openmetrics in (False, True):
        assert gzip.decompress(prepared.gzipped[openmetrics]) == prepared.rendered.body(openmetrics=openmetrics)
    # A new snapshot that reuses the target's view renders the snapshot, not the target again.
    view = first.instances[INSTANCE]
    second = Snapshot(2, 1700000060.0, first.instances, first.api)
    again = await cache.prepare(second)
    assert again.version == 2
    assert cache.renders == 2
    assert again.compressed_blocks == 0  # what tells the caller no memory is worth giving back
    assert renderer.target_renders == 1
    # An older snapshot arriving late never replaces a newer one.
    assert (await cache.prepare(first)).version == 2
    assert view.targets  # the same view objects were shared


def test_every_sample_carries_exactly_the_labels_its_family_declares() -> None:
    from idaas_sync_exporter.metrics.catalogue import ALL_FAMILIES

    declared = {family.name: family for family in ALL_FAMILIES}
    text = render(seed_snapshot()).decode()
    seen = set()
    for parsed in text_string_to_metric_families(text):
        family = declared[parsed.name]
        assert parsed.type == family.kind
        for sample in parsed.samples:
            assert set(sample.labels) - {"le"} == set(family.labels), sample
            seen.add(family.name)
    assert len(seen) >= 19  # the seed snapshot shows most families


def many_targets_snapshot(count: int, version: int = 1, views: dict[TargetKey, TargetView] | None = None) -> Snapshot:
    base = seed_snapshot(version)
    instance = base.instances[INSTANCE]
    if views is None:
        template = next(iter(instance.targets.values()))
        views = {TargetKey("application", f"app_{n:05d}", "egress"): template for n in range(count)}
    instances = {INSTANCE: dataclasses.replace(instance, targets=MappingProxyType(views))}
    return Snapshot(version, base.created, MappingProxyType(instances), base.api)


async def test_a_snapshot_that_changed_nothing_renders_and_compresses_no_target() -> None:
    renderer = Renderer()
    first = many_targets_snapshot(100)
    renderer.render(first)
    assert renderer.target_renders == 100
    assert renderer.block_compressions == 13  # ceil(100 / 8)
    # The same targets mapping in a new snapshot (an idle poll): only the instance's own lines.
    idle = Snapshot(2, first.created + 60, first.instances, first.api)
    renderer.render(idle)
    assert (renderer.target_renders, renderer.block_compressions) == (100, 13)


async def test_a_poll_that_changes_k_targets_renders_k_targets_and_at_most_k_blocks() -> None:
    renderer = Renderer()
    first = many_targets_snapshot(100)
    first_body = renderer.render(first).body(openmetrics=False)
    views = dict(first.instances[INSTANCE].targets)
    changed_keys = [TargetKey("application", f"app_{n:05d}", "egress") for n in (0, 1, 57)]
    tally = TargetTally()
    for key in changed_keys:
        views[key] = TargetView.of(tally, {}, None)
    second = many_targets_snapshot(100, version=2, views=views)
    rendered = renderer.render(second)
    assert renderer.target_renders == 100 + 3
    assert renderer.block_compressions == 13 + 2  # app 0 and 1 share a block
    # The result is exactly what rendering from scratch gives, in both encodings.
    fresh = Renderer().render(second)
    for openmetrics in (False, True):
        assert rendered.body(openmetrics=openmetrics) == fresh.body(openmetrics=openmetrics)
        assert gzip.decompress(rendered.gzipped(openmetrics=openmetrics)) == fresh.body(openmetrics=openmetrics)
        assert rendered.length(openmetrics=openmetrics) == len(fresh.body(openmetrics=openmetrics))
    assert rendered.body(openmetrics=False) != first_body


async def test_targets_that_disappear_leave_the_exposition_and_new_ones_join() -> None:
    renderer = Renderer()
    first = many_targets_snapshot(20)
    renderer.render(first)
    views = dict(first.instances[INSTANCE].targets)
    del views[TargetKey("application", "app_00003", "egress")]
    views[TargetKey("application", "app_new", "egress")] = next(iter(views.values()))
    second = many_targets_snapshot(20, version=2, views=views)
    text = renderer.render(second).body(openmetrics=False).decode()
    assert 'target_id="app_00003"' not in text
    assert 'target_id="app_new"' in text
    assert samples(text) == samples(Renderer().render(second).body(openmetrics=False).decode())
    assert gzip.decompress(renderer.render(second).gzipped(openmetrics=False)) == text.encode()


def test_the_gzip_body_is_one_member_that_every_reader_takes_whole() -> None:
    from httpx._decoders import GZipDecoder

    rendered = Renderer().render(many_targets_snapshot(30))
    for openmetrics in (False, True):
        body = rendered.gzipped(openmetrics=openmetrics)
        text = rendered.body(openmetrics=openmetrics)
        assert gzip.decompress(body) == text
        # A reader of one member only (httpx, zlib with gzip wbits) gets everything, CRC checked.
        single = zlib.decompressobj(31)
        assert single.decompress(body) == text
        assert single.eof and single.unused_data == b""
        decoder = GZipDecoder()
        assert decoder.decode(body) + decoder.flush() == text
        # The trailer's CRC, combined from the cached pieces', is the one zlib computes over the text.
        assert int.from_bytes(body[-8:-4], "little") == zlib.crc32(text)
        assert int.from_bytes(body[-4:], "little") == len(text)


def test_an_idle_gzip_body_reuses_every_target_familys_join() -> None:
    renderer, joined = Renderer(), {}  # type: ignore[var-annotated]
    first = many_targets_snapshot(40)
    renderer.render(first).gzipped(openmetrics=False, joined=joined)
    before = dict(joined)
    idle = Snapshot(2, first.created + 60, first.instances, first.api)
    rendered = renderer.render(idle)
    body = rendered.gzipped(openmetrics=False, joined=joined)
    assert gzip.decompress(body) == Renderer().render(idle).body(openmetrics=False)
    reused = {key for key, value in joined.items() if before[key] is value}
    assert {family.name for family, _ in reused} >= {"idaas_sync_jobs", "idaas_sync_objects"}
    # The instance's idaas_up line is rendered again each poll, so its family is chained again.
    assert len(reused) < len(joined)


def test_the_self_metrics_say_what_prometheus_clients_own_writers_say() -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    from idaas_sync_exporter.metrics.selfmetrics import write

    self_metrics = SelfMetrics(BuildInfo("0.1.0", 'rev"with\\odd\nchars', "3.11.0"))
    snapshot = seed_snapshot()
    ours = self_metrics.render(snapshot)
    self_metrics._snapshot_collector.snapshot = snapshot
    families = list(self_metrics.registry.collect())
    theirs_text = generate_latest(self_metrics.registry).decode()
    theirs_openmetrics = generate_openmetrics(self_metrics.registry).decode()

    def parsed(text: str, parse: Any) -> dict[str, tuple[str, str, list[tuple[str, tuple[Any, ...], float]]]]:
        return {
            f.name: (
                f.type,
                f.documentation,
                sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples),
            )
            for f in parse(text)
            if not f.name.startswith("process_")  # read twice, a moment apart
        }

    assert parsed(ours[False].decode(), text_string_to_metric_families) == parsed(
        theirs_text, text_string_to_metric_families
    )
    assert parsed(ours[True].decode() + "# EOF\n", parse_openmetrics) == parsed(theirs_openmetrics, parse_openmetrics)
    assert write(families, openmetrics=False).count(b"# TYPE") == len(families)
    assert {f.name for f in parse_openmetrics(ours[True].decode() + "# EOF\n")} >= {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "idaas_exporter_build_info",
        "idaas_exporter_api_requests",
    }


# --- hostile input, property-based ---------------------------------------------------------------


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
