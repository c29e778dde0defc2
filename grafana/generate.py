"""Builds the IDaaS sync dashboard with grafana-foundation-sdk and writes grafana/dashboards/idaas-sync.json.

.venv/bin/python grafana/generate.py          # regenerate the committed JSON
.venv/bin/python grafana/generate.py --check  # exit 1 when the committed JSON is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from idaas_sync_exporter.rules.definitions import DASHBOARD_UID, PANEL_IDS

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "idaas-sync.json"
UID = DASHBOARD_UID
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# The dashboard follows the rules' conventions (tests/promql_lint.py checks both): every selector
# is narrowed to the chosen job, every aggregation keeps the routing labels, and replicas of the
# exporter are merged before anything is summed, so two replicas never double a line.
KEEP = "cluster, namespace, job"
REPLICAS = "instance, pod"
JOB = 'job=~"$job"'
INSTANCE = f'{JOB},instance_id=~"$instance_id"'
SEL = f'{INSTANCE},target_type=~"$target_type",target_id=~"$target",direction=~"$direction"'
NAMES = (
    f"on ({KEEP}, instance_id, target_type, target_id) group_left (target_name) "
    f"max without ({REPLICAS}) (idaas_sync_target_info{{{JOB}}})"
)


def merged(expr: str) -> str:
    """One series per replica set: replicas of the exporter report the same values."""
    return f"max without ({REPLICAS}) ({expr})"


def query(
    expr: str, legend: str = "", *, instant: bool = False, ref: str = "A", exemplars: bool = False
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if exemplars:
        # The exporter's OpenMetrics exposition puts the latest job's id on the job and error counters:
        # a dot on the graph, and its job_id, where the failures are.
        q = q.exemplar(True)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(PromQueryFormat.TABLE)
    return q


def series(title: str, *queries: prometheus.Dataquery, unit: str, description: str, span: int = 12) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(span).height(8).description(description)
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def multi(variable: dashboard.QueryVariable) -> dashboard.QueryVariable:
    return (
        variable.datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
    )


def variables() -> list[Any]:
    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # One job at a time: a job is one deployment of the exporter (its replicas share it).
        dashboard.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query("label_values(idaas_exporter_build_info, job)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED),
        multi(
            dashboard.QueryVariable("instance_id")
            .label("IDaaS instance ID")
            .query(f"label_values(idaas_up{{{JOB}}}, instance_id)")
        ),
        multi(
            dashboard.QueryVariable("target_type")
            .label("Target type")
            .query(f"label_values(idaas_sync_target_info{{{INSTANCE}}}, target_type)")
        ),
        # Shown by name, selected by id: query_result lists labels alphabetically (target_id before target_name).
        multi(
            dashboard.QueryVariable("target")
            .label("Target")
            .query(f'query_result(idaas_sync_target_info{{{INSTANCE},target_type=~"$target_type"}})')
            .regex('/target_id="(?<value>[^"]+)".*target_name="(?<text>[^"]*)"/')
        ),
        multi(
            dashboard.QueryVariable("direction")
            .label("Direction")
            .query(f"label_values(idaas_sync_jobs_total{{{INSTANCE}}}, direction)")
        ),
    ]


def target_panels(board: dashboard.Dashboard) -> dashboard.Dashboard:
    board = board.with_row(dashboard.Row("Targets"))
    board = board.with_panel(
        table.Panel()
        .title("Latest job per target")
        .datasource(DATASOURCE)
        .unit("none")
        .span(24)
        .height(8)
        .description("Status of each target's latest finished job, with its name.")
        .with_target(
            query(
                f"max by ({KEEP}, target_name, target_type, target_id, direction, status) "
                f"(({merged(f'idaas_sync_last_job_status{{{SEL}}}')} == 1) * {NAMES})",
                instant=True,
            )
        )
    )
    board = board.with_panel(
        table.Panel()
        .title("Latest failed job per target")
        .datasource(DATASOURCE)
        .unit("none")
        .span(24)
        .height(8)
        .description(
            "Each target's latest failed or partially successful job, by id and error code "
            "(idaas_sync_last_failed_job_info); the exporter's /jobs page has the recent jobs with console links."
        )
        .with_target(
            query(
                f"max by ({KEEP}, instance_id, target_name, target_type, target_id, direction, job_id, status, "
                f"error_code) ({merged(f'idaas_sync_last_failed_job_info{{{SEL}}}')} * {NAMES})",
                instant=True,
            )
        )
    )
    board = board.with_panel(
        series(
            "Time since last success",
            query(
                f"(time() - {merged(f'idaas_sync_last_success_timestamp_seconds{{{SEL}}}')}) * {NAMES}",
                "{{target_name}}",
            ),
            unit="s",
            description="Seconds since each target's latest successful job; IDaaSSyncStale fires after 3 h by default.",
        )
    )
    return board.with_panel(
        series(
            "Jobs by status",
            query(
                f"sum by ({KEEP}, status) ({merged(f'increase(idaas_sync_jobs_total{{{SEL}}}[$__rate_interval])')})",
                "{{status}}",
                exemplars=True,
            ),
            unit="short",
            description="Finished jobs per interval, by final status.",
        )
    )


DELETED = f'idaas_sync_last_job_objects{{{SEL},action="deleted"}}'


def object_panels(board: dashboard.Dashboard) -> dashboard.Dashboard:
    board = board.with_row(dashboard.Row("Objects"))
    board = board.with_panel(
        series(
            "Object outcomes per hour by type and action",
            query(
                f"sum by ({KEEP}, object_type, action, result) (idaas:sync_objects:increase1h{{{SEL}}})",
                "{{object_type}} {{action}} {{result}}",
            ),
            unit="short",
            span=24,
            description="Objects created, updated, deleted or pushed in the last hour, by result "
            "(recording rule idaas:sync_objects:increase1h).",
        )
    )
    board = board.with_panel(
        series(
            "Deletions in the latest job",
            query(
                f"sum by ({KEEP}, target_name, object_type) ({merged(DELETED)} * {NAMES})",
                "{{target_name}} {{object_type}}",
            ),
            unit="short",
            description="Objects each target's latest job deleted; IDaaSSyncMassDeletion fires at 50 by default.",
        )
    )
    board = board.with_panel(
        series(
            "Latest deletions / protection threshold",
            query(
                f"max without ({REPLICAS}, action, result, target_type, direction) (idaas_sync_last_job_objects{{"
                f'{INSTANCE},target_id=~"$target",target_type="identity_provider",action="deleted",'
                f'result="success"}}) / on ({KEEP}, instance_id, target_id, object_type) '
                f"({merged(f'idaas_sync_pull_deletion_threshold{{{INSTANCE}}} > 0')})",
                "{{target_id}} {{object_type}}",
            ),
            unit="percentunit",
            span=24,
            description="Share of each identity provider's deletion protection threshold used by its latest job; "
            "IDaaSSyncDeletionNearThreshold fires at 80% by default.",
        )
    )
    return board.with_panel(
        series(
            "Failures by error code",
            query(
                f"sum by ({KEEP}, error_code) "
                f"({merged(f'increase(idaas_sync_job_errors_total{{{SEL}}}[$__rate_interval])')})",
                "{{error_code}}",
                exemplars=True,
            ),
            unit="short",
            description="Finished jobs that reported an error code, per interval.",
        )
    )


def running_panels(board: dashboard.Dashboard) -> dashboard.Dashboard:
    board = board.with_row(dashboard.Row("Running jobs"))
    board = board.with_panel(
        series(
            "Jobs in progress",
            query(f"sum by ({KEEP}, status) ({merged(f'idaas_sync_jobs_in_progress{{{SEL}}}')})", "{{status}}"),
            unit="short",
            description="Jobs the API reports pending or running.",
        )
    )
    board = board.with_panel(
        series(
            "Age of the oldest job in progress",
            query(
                f"(time() - {merged(f'idaas_sync_oldest_in_progress_start_timestamp_seconds{{{SEL}}}')}) * {NAMES}",
                "{{target_name}}",
            ),
            unit="s",
            description="IDaaSSyncJobStuck fires above 2 h by default.",
        )
    )
    quantiles = [
        query(
            f"histogram_quantile({q}, sum by ({KEEP}, le) (idaas:sync_job_duration_seconds_bucket:rate1h{{{SEL}}}))",
            f"p{round(q * 100)}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.9, "B"))
    ]
    return board.with_panel(
        series(
            "Job duration (p50, p90)",
            *quantiles,
            unit="s",
            span=24,
            description="Durations of the jobs that finished in the hour before each point "
            "(recording rule idaas:sync_job_duration_seconds_bucket:rate1h).",
        )
    )


def exporter_panels(board: dashboard.Dashboard) -> dashboard.Dashboard:
    board = board.with_row(dashboard.Row("Exporter"))
    board = board.with_panel(
        stat.Panel()
        .title("Instances up")
        .datasource(DATASOURCE)
        .unit("none")
        .span(6)
        .height(6)
        .description("IDaaS instances whose latest poll succeeded (every replica).")
        .with_target(query(f"sum by ({KEEP}) (min without ({REPLICAS}) (idaas_up{{{INSTANCE}}}))"))
    )
    board = board.with_panel(
        series(
            "API requests by code",
            query(
                f"sum by ({KEEP}, code) (rate(idaas_exporter_api_requests_total{{{INSTANCE}}}[$__rate_interval]))",
                "{{code}}",
            ),
            unit="reqps",
            span=9,
            description="Requests to the IDaaS API by answer code, every replica's requests added up.",
        )
    )
    return board.with_panel(
        series(
            "Poll duration",
            query(f"idaas_exporter_poll_duration_seconds{{{INSTANCE}}}", "{{instance_id}} {{pod}}"),
            unit="s",
            span=9,
            description="Duration of each replica's latest poll of each instance.",
        )
    )


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("IDaaS synchronization")
        .uid(UID)
        .tags(["idaas", "alibaba-cloud", "identity"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .readonly()
        .description("Synchronization jobs of Alibaba Cloud IDaaS, from idaas-sync-exporter.")
    )
    for variable in variables():
        board = board.with_variable(variable)
    for add in (target_panels, object_panels, running_panels, exporter_panels):
        board = add(board)
    built: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))
    # Stable panel ids: the Grafana alert rules link to their panels by id (__panelId__).
    for panel in built["panels"]:
        panel["id"] = PANEL_IDS[panel["title"]]
    # Alert state (of the rules linked to a panel) and annotations, as Grafana's own dashboards have.
    built["annotations"] = {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ]
    }
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run .venv/bin/python grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
