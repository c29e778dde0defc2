"""The same alerts as Grafana-managed rules: a Grafana alerting provisioning file.

Each Prometheus alert becomes one Grafana rule with the same PromQL (query ``A``), ``for``,
labels and annotations. A Prometheus alerting rule fires for every series its expression
returns, whatever the value; the Grafana condition says exactly that: ``B`` reduces each series
to its last value and ``C`` is true for any number (``is_number($B) || is_nan($B) || is_inf($B)``,
as Grafana's own Prometheus-rule conversion does). So the Grafana rule fires on the same data.

States, the same for every alert and for the same reason: no data means the expression returned
no series, which for Prometheus is "not firing", so ``noDataState: OK`` (the expressions that must
fire on absence, such as ``absent(idaas_exporter_build_info{...})``, return a series then);
a failed query is not a resolved alert, so ``execErrState: Error`` (Grafana raises its
DatasourceError alert instead of silently resolving).
"""

from __future__ import annotations

import re
from typing import Any

from idaas_sync_exporter.rules.config import RulesConfig
from idaas_sync_exporter.rules.definitions import DASHBOARD_UID, PANEL_IDS, Alert, alerts

QUERY, REDUCED, CONDITION = "A", "B", "C"
ANY_SAMPLE = f"is_number(${REDUCED}) || is_nan(${REDUCED}) || is_inf(${REDUCED})"
NO_DATA_STATE = "OK"
EXEC_ERROR_STATE = "Error"
# How far back the Prometheus query looks for a range query; the alert queries are instant.
QUERY_WINDOW_SECONDS = 600
# A template lookup Grafana cannot run: {{ with printf `...` ... | query }}found{{ else }}fallback{{ end }}.
_LOOKUP = re.compile(r"\{\{ with printf `[^`]*`[^}]*\| query \}\}.*?\{\{ (?:else \}\}(.*?)\{\{ )?end \}\}")


def grafana_template(text: str) -> str:
    """A Prometheus annotation in Grafana's terms: values by query, no lookups."""
    text = _LOOKUP.sub(lambda match: match.group(1) or "", text)
    return text.replace("$value", f"$values.{REDUCED}.Value")


def uid(alert_name: str) -> str:
    """A stable uid from the alert name: IDaaSSyncJobFailed -> idaas-sync-job-failed."""
    words = re.findall(r"[A-Z][a-z]+|[A-Z]+(?![a-z])", alert_name.removeprefix("IDaaS"))
    return "-".join(["idaas", *(word.lower() for word in words)])[:40]


def rule(alert: Alert, config: RulesConfig) -> dict[str, Any]:
    annotations = {
        "summary": grafana_template(alert.summary),
        "description": alert.grafana_description or grafana_template(alert.description),
        "runbook_url": config.runbook_url(alert.name),
        "__dashboardUid__": DASHBOARD_UID,
        "__panelId__": str(PANEL_IDS[alert.panel]),
    }
    data = [
        {
            "refId": QUERY,
            "relativeTimeRange": {"from": QUERY_WINDOW_SECONDS, "to": 0},
            "datasourceUid": config.grafana_datasource_uid,
            "model": {"refId": QUERY, "expr": alert.expr, "instant": True, "range": False},
        },
        {
            "refId": REDUCED,
            "datasourceUid": "__expr__",
            "model": {"refId": REDUCED, "type": "reduce", "expression": QUERY, "reducer": "last"},
        },
        {
            "refId": CONDITION,
            "datasourceUid": "__expr__",
            "model": {"refId": CONDITION, "type": "math", "expression": ANY_SAMPLE},
        },
    ]
    return {
        "uid": uid(alert.name),
        "title": alert.name,
        "condition": CONDITION,
        "data": data,
        "for": alert.for_ or "0s",
        "noDataState": NO_DATA_STATE,
        "execErrState": EXEC_ERROR_STATE,
        "labels": {"severity": alert.severity},
        "annotations": annotations,
        "isPaused": False,
    }


def provisioning(config: RulesConfig) -> dict[str, Any]:
    """The alert rule groups as Grafana's file provisioning (``apiVersion: 1``) reads them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts(config):
        groups.setdefault(alert.group, []).append(rule(alert, config))
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": name,
                "folder": config.grafana_folder,
                "interval": config.grafana_interval,
                "rules": rules,
            }
            for name, rules in groups.items()
        ],
    }
