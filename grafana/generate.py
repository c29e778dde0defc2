"""Builds the IDaaS sync dashboard with grafana-foundation-sdk and writes grafana/dashboards/idaas-sync.json.

python grafana/generate.py          # regenerate the committed JSON
python grafana/generate.py --check  # exit 1 when the committed JSON is out of date
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

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "idaas-sync.json"
UID = "idaas-sync-exporter"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every panel query narrows to the variables' selection.
SEL = 'instance_id=~"$instance",target_type=~"$target_type",target_id=~"$target",direction=~"$direction"'
NAMES = "on (instance_id, target_type, target_id) group_left (target_name) idaas_sync_target_info"


def query(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(PromQueryFormat.TABLE)
    return q


def series(
    title: str, *queries: prometheus.Dataquery, unit: str = "short", span: int = 12, description: str = ""
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(span).height(8)
    if description:
        panel = panel.description(description)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def build() -> dict[str, Any]:
    variables = [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dashboard.QueryVariable("instance")
        .label("Instance")
        .datasource(DATASOURCE)
        .query("label_values(idaas_up, instance_id)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        dashboard.QueryVariable("target_type")
        .label("Target type")
        .datasource(DATASOURCE)
        .query('label_values(idaas_sync_target_info{instance_id=~"$instance"}, target_type)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        # Shown by name, selected by id: query_result lists labels alphabetically (target_id before target_name).
        dashboard.QueryVariable("target")
        .label("Target")
        .datasource(DATASOURCE)
        .query('query_result(idaas_sync_target_info{instance_id=~"$instance",target_type=~"$target_type"})')
        .regex('/target_id="(?<value>[^"]+)".*target_name="(?<text>[^"]*)"/')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        dashboard.QueryVariable("direction")
        .label("Direction")
        .datasource(DATASOURCE)
        .query("label_values(idaas_sync_jobs_total, direction)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]
    board = (
        dashboard.Dashboard("IDaaS synchronization")
        .uid(UID)
        .tags(["idaas", "alibaba-cloud", "identity"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .description("Synchronization jobs of Alibaba Cloud IDaaS, from idaas-sync-exporter.")
    )
    for variable in variables:
        board = board.with_variable(variable)

    board = board.with_row(dashboard.Row("Targets"))
    board = board.with_panel(
        table.Panel()
        .title("Latest job per target")
        .datasource(DATASOURCE)
        .span(24)
        .height(8)
        .description("Status of each target's latest finished job, with its name.")
        .with_target(
            query(
                f"max by (target_name, target_type, target_id, direction, status) "
                f"((idaas_sync_last_job_status{{{SEL}}} == 1) * {NAMES})",
                instant=True,
            )
        )
    )
    board = board.with_panel(
        series(
            "Time since last success",
            query(f"(time() - idaas_sync_last_success_timestamp_seconds{{{SEL}}}) * {NAMES}", "{{target_name}}"),
            unit="s",
            description="Compare with the IDaaSSyncStale window (3 h by default).",
        )
    )
    board = board.with_panel(
        series(
            "Jobs by status",
            query(f"sum by (status) (increase(idaas_sync_jobs_total{{{SEL}}}[$__rate_interval]))", "{{status}}"),
        )
    )

    board = board.with_row(dashboard.Row("Objects"))
    board = board.with_panel(
        series(
            "Object outcomes by type and action",
            query(
                f"sum by (object_type, action, result) (increase(idaas_sync_objects_total{{{SEL}}}[$__rate_interval]))",
                "{{object_type}} {{action}} {{result}}",
            ),
            span=24,
        )
    )
    board = board.with_panel(
        series(
            "Deletions in the latest job",
            query(
                f'sum by (target_name, object_type) (idaas_sync_last_job_objects{{{SEL},action="deleted"}} * {NAMES})',
                "{{target_name}} {{object_type}}",
            ),
            description="Compare with IDaaSSyncMassDeletion (50) and each identity provider's protection threshold.",
        )
    )
    board = board.with_panel(
        series(
            "Latest deletions / protection threshold",
            query(
                "max without (action, result, target_type, direction) (idaas_sync_last_job_objects{"
                'instance_id=~"$instance",target_id=~"$target",target_type="identity_provider",action="deleted",'
                'result="success"}) / on (instance_id, target_id, object_type) '
                "(idaas_sync_pull_deletion_threshold > 0)",
                "{{target_id}} {{object_type}}",
            ),
            unit="percentunit",
            span=24,
            description="Share of each identity provider's deletion protection threshold used by its latest job; "
            "IDaaSSyncDeletionNearThreshold fires at 80%.",
        )
    )
    board = board.with_panel(
        series(
            "Failures by error code",
            query(
                f"sum by (error_code) (increase(idaas_sync_job_errors_total{{{SEL}}}[$__rate_interval]))",
                "{{error_code}}",
            ),
        )
    )

    board = board.with_row(dashboard.Row("Running jobs"))
    board = board.with_panel(
        series(
            "Jobs in progress",
            query(f"sum by (status) (idaas_sync_jobs_in_progress{{{SEL}}})", "{{status}}"),
        )
    )
    board = board.with_panel(
        series(
            "Age of the oldest job in progress",
            query(
                f"(time() - idaas_sync_oldest_in_progress_start_timestamp_seconds{{{SEL}}}) * {NAMES}",
                "{{target_name}}",
            ),
            unit="s",
            description="IDaaSSyncJobStuck fires above 2 h.",
        )
    )
    board = board.with_panel(
        series(
            "Job duration (p50, p90)",
            query(
                f"histogram_quantile(0.5, sum by (le) (rate(idaas_sync_job_duration_seconds_bucket{{{SEL}}}[1h])))",
                "p50",
                ref="A",
            ),
            query(
                f"histogram_quantile(0.9, sum by (le) (rate(idaas_sync_job_duration_seconds_bucket{{{SEL}}}[1h])))",
                "p90",
                ref="B",
            ),
            unit="s",
            span=24,
        )
    )

    board = board.with_row(dashboard.Row("Exporter"))
    board = board.with_panel(
        stat.Panel()
        .title("Instances up")
        .datasource(DATASOURCE)
        .span(6)
        .height(6)
        .with_target(query('sum(idaas_up{instance_id=~"$instance"})'))
    )
    board = board.with_panel(
        series(
            "API requests by code",
            query(
                'sum by (code) (rate(idaas_exporter_api_requests_total{instance_id=~"$instance"}[$__rate_interval]))',
                "{{code}}",
            ),
            unit="reqps",
            span=9,
        )
    )
    board = board.with_panel(
        series(
            "Poll duration",
            query('idaas_exporter_poll_duration_seconds{instance_id=~"$instance"}', "{{instance_id}}"),
            unit="s",
            span=9,
        )
    )
    built: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))
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
            print(f"{OUTPUT} is out of date: run python grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
