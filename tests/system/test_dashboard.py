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

from tests.e2e import demo_exporter, free_port, prometheus, query

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "idaas-sync-alerts.yml"
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$instance": ".*",
    "$target_type": ".*",
    "$target": ".*",
    "$direction": ".*",
}


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
        "run python grafana/generate.py"
    )


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] == "idaas-sync-exporter"
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "instance", "target_type", "target", "direction"]
    titles = {p["title"] for p in board["panels"] if p["type"] != "row"}
    assert len(titles) >= 11


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
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


@pytest.mark.slow
def test_every_expression_runs_and_every_panel_has_data(tmp_path: Path) -> None:
    exporter_port, prometheus_port = free_port(), free_port()
    shutil.copy(RULES, tmp_path / "rules.yml")
    with demo_exporter(exporter_port) as target:
        config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp_path / "rules.yml"}"]
scrape_configs:
  - job_name: idaas
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
            for _name, expr in rule_queries():
                query(base, expr)  # raises unless Prometheus parses and evaluates it
            rules = json.loads(__import__("urllib.request").request.urlopen(f"{base}/api/v1/rules").read())
            health = {r["name"]: r["health"] for g in rules["data"]["groups"] for r in g["rules"]}
            assert set(health.values()) == {"ok"}, health
