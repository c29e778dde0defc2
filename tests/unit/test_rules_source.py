"""The rules are generated from one source: outputs up to date, conventions kept, config checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from idaas_sync_exporter.cli import main
from idaas_sync_exporter.rules.config import RulesConfig, RulesConfigError, load
from idaas_sync_exporter.rules.definitions import alerts, recordings
from idaas_sync_exporter.rules.render import render
from tests.promql_lint import problems

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {
    "alerts": ROOT / "deploy" / "prometheus" / "idaas-sync-alerts.yml",
    "recording": ROOT / "deploy" / "prometheus" / "idaas-sync-recording.yml",
    "prometheusrule": ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml",
    "grafana": ROOT / "grafana" / "provisioning" / "alerting" / "idaas-sync-rules.yaml",
}
CUSTOM = RulesConfig(
    job_selector='job="idaas", namespace=~"identity|iam"',
    aggregation_labels=("cluster", "job", "team"),
    replica_labels=("pod",),
    runbook_url_pattern="https://wiki.example.com/runbooks/{alert}",
    stale_seconds=7200,
)


@pytest.mark.parametrize(("kind", "path"), GENERATED.items())
def test_the_shipped_files_are_the_generated_ones(kind: str, path: Path) -> None:
    assert path.read_text(encoding="utf-8") == render(RulesConfig(), kind), (
        f"out of date: run idaas-sync-exporter rules --kind {kind} > {path.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("config", [RulesConfig(), CUSTOM], ids=["defaults", "custom"])
def test_every_expression_keeps_the_job_matcher_and_the_routing_labels(config: RulesConfig) -> None:
    for alert in alerts(config):
        assert problems(alert.expr, config) == [], alert.name
    for recording in recordings(config):
        assert problems(recording.expr, config) == [], recording.record


def test_the_lint_finds_what_breaks_the_conventions() -> None:
    config = RulesConfig()
    found = problems(
        'sum by (instance_id) (rate(x{job="idaas-sync-exporter"}[5m])) > on (instance_id) y'
        ' or max without (job) (z{job="idaas-sync-exporter"}) or absent(w)',
        config,
    )
    assert len(found) == 5, found  # sum by, on (), y, max without (job), w


def test_annotation_lookups_carry_the_job_matcher_too() -> None:
    for config in (RulesConfig(), CUSTOM):
        for alert in alerts(config):
            for text in (alert.summary, alert.description):
                for lookup in re.findall(r"printf `([^`]*)`", text):
                    assert config.job_selector in lookup, (alert.name, lookup)


def test_a_config_changes_selectors_labels_thresholds_and_runbooks() -> None:
    text = render(CUSTOM, "alerts")
    assert 'idaas_sync_jobs_total{job="idaas", namespace=~"identity|iam", status="failed"}' in text
    assert "sum by (cluster, job, team, instance_id" in text
    assert "max without (pod)" in text and "instance, pod" not in text
    assert "+ 7200" in text and "+ 10800" not in text
    assert "runbook_url: https://wiki.example.com/runbooks/idaassyncstale" in text


def test_default_runbooks_are_absolute_links_to_sections_that_exist() -> None:
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in (ROOT / "docs" / "alerts.md").read_text().splitlines()
        if line.startswith("## ")
    }
    groups = yaml.safe_load(GENERATED["alerts"].read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and url.endswith("#" + rule["alert"].lower())
        assert rule["alert"].lower() in headings


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("stale_seconds: 0\n", "stale_seconds: Input should be greater than 0"),
        ("job_selector: job=idaas\n", "job_selector: must be PromQL label matchers"),
        ("aggregation_labels: [cluster, 'bad-label']\n", "aggregation_labels: 'bad-label' is not a label name"),
        ("runbook_url_pattern: docs/alerts.md#{alert}\n", "runbook_url_pattern: must be an absolute http(s) URL"),
        ("failed_window: 15 minutes\n", "failed_window: must be a Prometheus duration"),
        ("stale_second: 60\n", "stale_second: unknown key (allowed here: job_selector, "),
        ("- a list\n", "must be a mapping of settings"),
        ("key: [unclosed\n", "cannot read it"),
    ],
)
def test_a_bad_rules_config_is_one_line_naming_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(content)
    with pytest.raises(RulesConfigError) as error:
        load(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_rules_command_prints_each_kind_and_refuses_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rules.yml"
    config.write_text("mass_deletion_objects: 500\n")
    assert main(["rules", "--kind", "alerts", "--config", str(config)]) == 0
    assert ">= 500" in capsys.readouterr().out
    config.write_text("mass_deletion_objects: many\n")
    assert main(["rules", "--config", str(config)]) == 2
    assert "mass_deletion_objects" in capsys.readouterr().err
