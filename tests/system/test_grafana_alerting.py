"""Grafana-managed alerting: the same alerts as the Prometheus rules, checked rule by rule and on the promtool cases."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from idaas_sync_exporter.rules.config import RulesConfig
from idaas_sync_exporter.rules.definitions import DASHBOARD_UID, alerts
from idaas_sync_exporter.rules.grafana import ANY_SAMPLE, EXEC_ERROR_STATE, NO_DATA_STATE, grafana_template
from tests.e2e import require_binary

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "grafana" / "provisioning" / "alerting"
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "idaas-sync-alerts.yml"
PROMTOOL_CASES = ROOT / "deploy" / "prometheus" / "tests" / "idaas-sync-alerts.test.yml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def grafana_rules() -> dict[str, dict[str, Any]]:
    groups = load(ALERTING / "idaas-sync-rules.yaml")["groups"]
    return {rule["title"]: rule for group in groups for rule in group["rules"]}


def prometheus_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load(PROMETHEUS_RULES)["groups"] for rule in group["rules"]}


def test_every_prometheus_alert_is_exactly_one_grafana_rule_and_the_reverse() -> None:
    grafana, prometheus = grafana_rules(), prometheus_rules()
    assert set(grafana) == set(prometheus)
    declared = {alert.name: alert for alert in alerts(RulesConfig())}
    uids = [rule["uid"] for rule in grafana.values()]
    assert len(set(uids)) == len(uids) and all(len(uid) <= 40 for uid in uids)
    for name, rule in grafana.items():
        theirs = prometheus[name]
        query = next(d for d in rule["data"] if d["refId"] == "A")["model"]
        assert query["expr"] == theirs["expr"], name
        assert rule["for"] == theirs.get("for", "0s"), name
        assert rule["labels"] == theirs["labels"], name
        annotations = rule["annotations"]
        assert annotations["runbook_url"] == theirs["annotations"]["runbook_url"]
        assert annotations["summary"] == grafana_template(theirs["annotations"]["summary"])
        expected = declared[name].grafana_description or grafana_template(theirs["annotations"]["description"])
        assert annotations["description"] == expected
        for text in (annotations["summary"], annotations["description"]):
            assert "| query" not in text and "$value " not in text and "$value}" not in text, name
        assert (rule["noDataState"], rule["execErrState"]) == (NO_DATA_STATE, EXEC_ERROR_STATE)


def test_each_rule_is_well_formed_and_links_to_its_panel() -> None:
    datasource = load(ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    board = json.loads((ROOT / "grafana" / "dashboards" / "idaas-sync.json").read_text())
    panels = {str(panel["id"]): panel for panel in board["panels"]}
    assert any(a.get("builtIn") == 1 and a["type"] == "dashboard" for a in board["annotations"]["list"])
    provisioned = load(ALERTING / "idaas-sync-rules.yaml")
    assert provisioned["apiVersion"] == 1
    for group in provisioned["groups"]:
        assert group["folder"] and group["interval"] and group["orgId"] == 1
        for rule in group["rules"]:
            refs = [d["refId"] for d in rule["data"]]
            assert rule["condition"] == refs[-1] and len(set(refs)) == len(refs)
            query, reduce, condition = rule["data"]
            assert query["datasourceUid"] == datasource["uid"] and query["model"]["instant"] is True
            assert (reduce["model"]["type"], reduce["model"]["expression"]) == ("reduce", query["refId"])
            assert condition["model"]["type"] == "math" and condition["model"]["expression"] == ANY_SAMPLE
            assert rule["annotations"]["__dashboardUid__"] == DASHBOARD_UID == board["uid"]
            panel = panels[rule["annotations"]["__panelId__"]]
            assert panel["type"] != "row", rule["title"]


def condition_holds(expression: str, value: float) -> bool:
    """Grafana's math condition on one series' reduced value (the functions and operators it uses here)."""
    functions = {
        "is_number": lambda x: not (math.isnan(x) or math.isinf(x)),
        "is_nan": math.isnan,
        "is_inf": math.isinf,
    }
    python = re.sub(r"\$[A-Z]\b", "value", expression).replace("||", " or ").replace("&&", " and ")
    assert re.fullmatch(r"[a-z_() .<>=!0-9-]+", python), f"unsupported condition {expression}"
    return bool(eval(python, {"__builtins__": {}}, {**functions, "value": value}))  # noqa: S307 - checked above


def test_each_condition_fires_for_every_returned_series_whatever_its_value() -> None:
    # A Prometheus alert fires for each series its expression returns, whatever the value
    # (idaas_up == 0 returns 0); the Grafana condition must hold for every such value too.
    for rule in grafana_rules().values():
        condition = next(d for d in rule["data"] if d["refId"] == rule["condition"])["model"]
        for value in (0.0, -3.0, 1.0, 1e12, math.nan, math.inf, -math.inf):
            assert condition_holds(condition["expression"], value), (rule["title"], value)
    assert not condition_holds("$B > 0", 0.0)  # the check can fail
    assert NO_DATA_STATE == "OK"  # no series returned: nothing fires, as in Prometheus


def test_the_grafana_rules_give_the_promtool_cases_the_same_answers(tmp_path: Path) -> None:
    # The Grafana rules as Prometheus would evaluate them: their query A, their `for` and labels
    # (annotations compared above; the promtool cases expect the Prometheus templates).
    prometheus = prometheus_rules()
    groups: dict[str, list[dict[str, Any]]] = {}
    for group in load(ALERTING / "idaas-sync-rules.yaml")["groups"]:
        for rule in group["rules"]:
            query = next(d for d in rule["data"] if d["refId"] == rule["data"][0]["refId"])["model"]["expr"]
            groups.setdefault(group["name"], []).append(
                {
                    "alert": rule["title"],
                    "expr": query,
                    "for": rule["for"],
                    "labels": rule["labels"],
                    "annotations": prometheus[rule["title"]]["annotations"],
                }
            )
    (tmp_path / "idaas-sync-alerts.yml").write_text(
        yaml.safe_dump({"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]})
    )
    cases = load(PROMTOOL_CASES)
    cases["rule_files"] = [str(tmp_path / "idaas-sync-alerts.yml")]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(cases, sort_keys=False))
    result = subprocess.run(
        [require_binary("promtool"), "test", "rules", str(tmp_path / "cases.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_notification_example_routes_critical_separately_with_a_mute_timing() -> None:
    notifications = load(ALERTING / "idaas-sync-notifications.yaml")
    points = {point["name"]: point for point in notifications["contactPoints"]}
    for point in points.values():
        for receiver in point["receivers"]:
            assert receiver["type"] == "webhook"
            assert receiver["settings"]["url"].startswith("$")  # from the environment, never inline
    (policy,) = notifications["policies"]
    assert policy["receiver"] in points
    mute_names = {mute["name"] for mute in notifications["muteTimes"]}
    critical = [route for route in policy["routes"] if ["severity", "=", "critical"] in route["object_matchers"]]
    assert len(critical) == 1 and critical[0]["receiver"] in points
    for route in policy["routes"]:
        assert route["receiver"] in points
        assert set(route.get("mute_time_intervals", [])) <= mute_names
    assert any(route.get("mute_time_intervals") for route in policy["routes"])


def test_each_rule_has_the_shape_of_grafana_foundation_sdks_typed_model() -> None:
    # The package writes the rules without the SDK (a runtime dependency it does not need); the
    # SDK's alerting builders rebuild each rule from its parts, and must serialise to the same.
    from grafana_foundation_sdk.builders import alerting, expr, prometheus
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.alerting import RelativeTimeRange

    for rule in grafana_rules().values():
        query, reduce, condition = rule["data"]
        window = query["relativeTimeRange"]
        built = (
            alerting.Rule(rule["title"])
            .uid(rule["uid"])
            .condition(rule["condition"])
            .no_data_state(rule["noDataState"])
            .exec_err_state(rule["execErrState"])
            .for_val(rule["for"])
            .labels(rule["labels"])
            .annotations(rule["annotations"])
            .is_paused(rule["isPaused"])
            .with_query(
                alerting.Query(query["refId"])
                .datasource_uid(query["datasourceUid"])
                .relative_time_range(RelativeTimeRange(window["from"], window["to"]))
                .model(prometheus.Dataquery().expr(query["model"]["expr"]).instant().ref_id(query["refId"]))
            )
            .with_query(
                alerting.Query(reduce["refId"])
                .datasource_uid(reduce["datasourceUid"])
                .model(
                    expr.TypeReduce()
                    .ref_id(reduce["refId"])
                    .expression(reduce["model"]["expression"])
                    .reducer(reduce["model"]["reducer"])
                )
            )
            .with_query(
                alerting.Query(condition["refId"])
                .datasource_uid(condition["datasourceUid"])
                .model(expr.TypeMath().ref_id(condition["refId"]).expression(condition["model"]["expression"]))
            )
        )
        typed = json.loads(JSONEncoder().encode(built.build()))
        # Set per group in a provisioning file; the HTTP API takes them on each rule.
        for api_only in ("folderUID", "orgID", "ruleGroup"):
            typed.pop(api_only)
        assert typed == rule, rule["title"]
