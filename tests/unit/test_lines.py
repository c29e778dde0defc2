"""The sample-line vocabulary on its own: OpenMetrics lines only where they differ from the text format's."""

from __future__ import annotations

from idaas_sync_exporter.collect.counting import TargetKey, TargetTally
from idaas_sync_exporter.metrics import catalogue
from idaas_sync_exporter.metrics.lines import health_lines, target_lines
from idaas_sync_exporter.metrics.snapshot import TargetView
from tests.unit.test_exposition import INSTANCE, failed_job_snapshot, seed_snapshot

KEY = TargetKey("application", "app_1", "egress")


def test_a_target_without_exemplars_has_one_text_for_both_formats() -> None:
    lines = target_lines(INSTANCE, KEY, TargetView.of(TargetTally(), {}, None))
    assert lines.openmetrics == {}
    assert catalogue.JOBS in lines.text
    assert b" # {" not in b"".join(lines.text.values())


def test_only_the_counters_with_exemplars_have_openmetrics_lines_of_their_own() -> None:
    snapshot = failed_job_snapshot()
    [(key, view)] = snapshot.instances[INSTANCE].targets.items()
    lines = target_lines(INSTANCE, key, view)
    assert set(lines.openmetrics) == {catalogue.JOBS, catalogue.JOB_ERRORS}
    for family, own in lines.openmetrics.items():
        plain = lines.text[family].splitlines()
        with_exemplars = own.splitlines()
        # Line for line the same samples; some carry the exemplar after the value.
        assert len(plain) == len(with_exemplars)
        assert all(om.startswith(text) for text, om in zip(plain, with_exemplars, strict=True))
        assert any(b' # {job_id="' in line for line in with_exemplars)
    assert b" # {" not in b"".join(lines.text.values())


def test_the_instance_line_is_idaas_up_alone() -> None:
    lines = health_lines(seed_snapshot().instances[INSTANCE])
    assert lines.text == {catalogue.UP: f'idaas_up{{instance_id="{INSTANCE}"}} 1\n'.encode()}
    assert lines.openmetrics == {}
