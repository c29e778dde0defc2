"""The dashboard is generated from code, and every PromQL expression in it and in the rules runs
against a real Prometheus that scraped the demo exporter."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from idaas_sync_exporter.rules.config import RulesConfig
from tests.e2e import demo_exporter, free_port, prometheus, query
from tests.promql_lint import problems

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = [ROOT / "deploy" / "prometheus" / name for name in ("idaas-sync-alerts.yml", "idaas-sync-recording.yml")]
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$job": "idaas-sync-exporter",
    "$instance_id": ".+",
    "$target_type": ".+",
    "$target": ".+",
    "$direction": ".+",
}
# The dashboard's queries keep the rules' conventions, with the job variable as the job matcher.
DASHBOARD_CONVENTIONS = RulesConfig(job_selector='job=~"$job"')


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", ROOT / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "grafana" / "dashboards" / "idaas-sync.json").read_text())
    return data


def test_committed_dashboard_is_what_the_code_generates() -> None:
    assert generator().render() == (ROOT / "grafana" / "dashboards" / "idaas-sync.json").read_text(), (
        "run .venv/bin/python grafana/generate.py"
    )


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] == "idaas-sync-exporter"
    assert board["editable"] is False
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance_id", "target_type", "target", "direction"]
    assert variables["instance_id"]["label"] == "IDaaS instance ID"
    for name in ("instance_id", "target_type", "target", "direction"):
        assert variables[name]["allValue"] == ".+", name
    assert 'instance_id=~"$instance_id"' in variables["direction"]["query"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["title"] for p in panels}) >= 11
    for panel in panels:
        assert panel.get("description"), f"{panel['title']}: no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"


def test_every_dashboard_query_keeps_the_conventions() -> None:
    for title, expr in panel_queries() + variable_queries():
        if title == "variable job":
            continue  # the query that lists the jobs to choose from
        # Grafana's interval variables stand where PromQL wants a duration.
        parsable = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
        assert problems(parsable, DASHBOARD_CONVENTIONS) == [], title
        # Grafana picks the window from the scrape interval and zoom; fixed windows live in recording rules.
        assert not re.search(r"\[\d+[smhdwy]\]", expr), f"{title}: fixed range window in {expr}"


def substitute(expr: str) -> str:
    for key in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(key, SUBSTITUTIONS[key])
    return expr


def panel_queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def variable_queries() -> list[tuple[str, str]]:
    result = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        text = variable["query"]
        match = re.fullmatch(r"label_values\((.*), *(\w+)\)", text) or re.fullmatch(r"query_result\((.*)\)", text)
        assert match, f"unsupported variable query {text}"
        result.append((f"variable {variable['name']}", match.group(1)))
    return result


def rule_queries() -> list[tuple[str, str]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


def grafana_queries() -> list[tuple[str, str]]:
    path = ROOT / "grafana" / "provisioning" / "alerting" / "idaas-sync-rules.yaml"
    groups = yaml.safe_load(path.read_text())["groups"]
    return [
        (rule["title"], data["model"]["expr"])
        for group in groups
        for rule in group["rules"]
        for data in rule["data"]
        if data["datasourceUid"] != "__expr__"
    ]


@pytest.mark.slow
def test_every_expression_runs_and_every_panel_has_data(tmp_path: Path) -> None:
    exporter_port, prometheus_port = free_port(), free_port()
    for path in RULE_FILES:
        shutil.copy(path, tmp_path / path.name)
    with demo_exporter(exporter_port) as target:
        config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp_path}/idaas-sync-*.yml"]
scrape_configs:
  - job_name: idaas-sync-exporter
    static_configs: [{{targets: ["{target}"]}}]
"""
        with prometheus(tmp_path, config, prometheus_port) as base:
            panels = panel_queries() + variable_queries()
            missing: list[str] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                missing = [f"{title}: {expr}" for title, expr in panels if not query(base, substitute(expr))]
                if not missing:
                    break
                time.sleep(2)
            assert not missing, "panels without data:\n" + "\n".join(missing)
            for _name, expr in rule_queries() + grafana_queries():
                query(base, expr)  # raises unless Prometheus parses and evaluates it
            rules = json.loads(__import__("urllib.request").request.urlopen(f"{base}/api/v1/rules").read())
            health = {r["name"]: r["health"] for g in rules["data"]["groups"] for r in g["rules"]}
            assert set(health.values()) == {"ok"}, health
