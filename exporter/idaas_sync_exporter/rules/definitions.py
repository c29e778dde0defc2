"""The alerts and recording rules, declared once; every output is generated from them.

Expressions are templates: ``$sel`` is the job selector (on every selector), ``$keep`` the labels
every aggregation keeps for routing, ``$replicas`` the labels that tell exporter replicas apart
(merged with ``max``/``min without`` before anything is summed, so two replicas neither double a
value nor fire twice), and the thresholds by name. Annotations use Prometheus' template syntax.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from string import Template

from idaas_sync_exporter.rules.config import RulesConfig

TARGET = "instance_id, target_type, target_id, direction"
# The dashboard (grafana/generate.py) and the Grafana rules that link to its panels share these.
DASHBOARD_UID = "idaas-sync-exporter"
PANEL_IDS = {
    title: number
    for number, title in enumerate(
        (
            "Targets",
            "Latest job per target",
            "Time since last success",
            "Jobs by status",
            "Objects",
            "Object outcomes per hour by type and action",
            "Deletions in the latest job",
            "Latest deletions / protection threshold",
            "Failures by error code",
            "Running jobs",
            "Jobs in progress",
            "Age of the oldest job in progress",
            "Job duration (p50, p90)",
            "Exporter",
            "Instances up",
            "API requests by code",
            "Poll duration",
            # Appended, so that the ids above stay what Grafana rules already link to.
            "Latest failed job per target",
        ),
        start=1,
    )
}


def _target_name(config: RulesConfig) -> str:
    """A template that names the target by its IDaaS name, or its id before names are known."""
    info = f"idaas_sync_target_info{{{config.job_selector},instance_id=%q,target_id=%q}}"
    return (
        f"{{{{ with printf `{info}` $labels.instance_id $labels.target_id | query }}}}"
        '{{ . | first | label "target_name" }}{{ else }}{{ $labels.target_id }}{{ end }}'
    )


# Grafana's templates cannot look the job up; they say where it is.
_FAILED_JOB_HINT = (
    "The latest failed job and its error code: idaas_sync_last_failed_job_info, or the exporter's /jobs page."
)


def _latest_failure(config: RulesConfig) -> str:
    """A template that names the target's latest failed job and its error code, when the exporter says."""
    info = (
        f"idaas_sync_last_failed_job_info{{{config.job_selector},"
        "instance_id=%q,target_type=%q,target_id=%q,direction=%q}"
    )
    return (
        f"{{{{ with printf `{info}` $labels.instance_id $labels.target_type $labels.target_id $labels.direction "
        '| query }} Latest: job {{ . | first | label "job_id" }} ({{ . | first | label "status" }}, error code '
        '"{{ . | first | label "error_code" }}"); the exporter\'s /jobs page links it to the console.{{ end }}'
    )


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str | None = None
    comment: str = ""
    # The dashboard panel that shows the alert's series (Grafana rules link to it).
    panel: str = ""
    # Grafana's templates cannot query; where a Prometheus annotation looks something up,
    # the Grafana one says it without (None: derived, see grafana.py).
    grafana_description: str | None = None


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    comment: str = ""


def substitute(template: str, config: RulesConfig) -> str:
    return Template(template).substitute(
        sel=config.job_selector,
        keep=", ".join(config.aggregation_labels),
        replicas=", ".join(config.replica_labels),
        failed_window=config.failed_window,
        stale=config.stale_seconds,
        stuck=config.stuck_seconds,
        mass=config.mass_deletion_objects,
        fraction=config.deletion_near_fraction,
        grace=config.schedule_grace_seconds,
        exporter_stale=config.exporter_stale_seconds,
        throttled=config.throttled_per_second,
        target=TARGET,
    )


SYNC = "idaas-sync"
PULL = "idaas-sync-pull-config"


def alerts(config: RulesConfig) -> list[Alert]:
    """Every alert, its expression already specialised for ``config``."""
    name = _target_name(config)
    window = config.failed_window
    declared = [
        Alert(
            "IDaaSSyncJobFailed",
            SYNC,
            """
sum by ($keep, $target) (
  max without ($replicas) (increase(idaas_sync_jobs_total{$sel, status="failed"}[$failed_window]))
) > 0
""",
            "critical",
            f"IDaaS sync to {name} failed",
            '{{ $value | printf "%.0f" }} {{ $labels.direction }} synchronization job(s) of '
            "{{ $labels.target_type }} {{ $labels.target_id }} in instance {{ $labels.instance_id }} failed in the "
            f"last {window}.{_latest_failure(config)}",
            comment="Counter increase: a restart without state brings series back at 0, which is no increase.",
            grafana_description='{{ $values.B.Value | printf "%.0f" }} {{ $labels.direction }} synchronization '
            "job(s) of {{ $labels.target_type }} {{ $labels.target_id }} in instance {{ $labels.instance_id }} "
            f"failed in the last {window}. {_FAILED_JOB_HINT}",
        ),
        Alert(
            "IDaaSSyncPartialSuccess",
            SYNC,
            """
sum by ($keep, $target) (
  max without ($replicas) (increase(idaas_sync_jobs_total{$sel, status="partial_success"}[$failed_window]))
) > 0
or
sum by ($keep, $target) (
  max without ($replicas) (increase(idaas_sync_objects_total{$sel, result="failed"}[$failed_window]))
) > 0
""",
            "warning",
            f"IDaaS sync of {name} partially failed",
            "Jobs of {{ $labels.target_type }} {{ $labels.target_id }} ({{ $labels.direction }}) in instance "
            "{{ $labels.instance_id }} finished with partial_success or failed objects in the last "
            f'{window} ({{{{ $value | printf "%.0f" }}}}). Look at idaas_sync_objects_total{{result="failed"}} '
            f"by object_type and action.{_latest_failure(config)}",
            grafana_description="Jobs of {{ $labels.target_type }} {{ $labels.target_id }} ({{ $labels.direction }}) "
            "in instance {{ $labels.instance_id }} finished with partial_success or failed objects in the last "
            f'{window} ({{{{ $values.B.Value | printf "%.0f" }}}}). {_FAILED_JOB_HINT}',
        ),
        Alert(
            "IDaaSSyncStale",
            SYNC,
            """
(time() - max without ($replicas) (idaas_sync_last_success_timestamp_seconds{$sel}))
  > on ($keep, $target)
(
  max without ($replicas) (idaas:sync_stale_threshold_seconds{$sel})
  or on ($keep, $target)
  max without ($replicas) (idaas_sync_last_success_timestamp_seconds{$sel} * 0 + $stale)
)
""",
            "warning",
            f"No successful IDaaS sync of {name} for {{{{ $value | humanizeDuration }}}}",
            "{{ $labels.target_type }} {{ $labels.target_id }} ({{ $labels.direction }}) in instance "
            "{{ $labels.instance_id }} used to sync successfully but has not for {{ $value | humanizeDuration }}.",
            for_="10m",
            comment="Per-target windows: record idaas:sync_stale_threshold_seconds (see docs/alerts.md).",
        ),
        Alert(
            "IDaaSSyncJobStuck",
            SYNC,
            """
time() - min without ($replicas) (idaas_sync_oldest_in_progress_start_timestamp_seconds{$sel}) > $stuck
""",
            "warning",
            f"IDaaS sync of {name} has been in progress for {{{{ $value | humanizeDuration }}}}",
            "The oldest pending/running job of {{ $labels.target_type }} {{ $labels.target_id }} "
            "({{ $labels.direction }}) in instance {{ $labels.instance_id }} started {{ $value | humanizeDuration }} "
            "ago.",
            for_="5m",
        ),
        Alert(
            "IDaaSSyncMassDeletion",
            SYNC,
            """
(
  max without ($replicas) (idaas_sync_last_job_objects{$sel, action="deleted", result="success"}) >= $mass
)
and on ($keep, $target)
(time() - max without ($replicas) (idaas_sync_last_job_end_timestamp_seconds{$sel}) < 86400)
""",
            "critical",
            f'IDaaS sync of {name} deleted {{{{ $value | printf "%.0f" }}}} {{{{ $labels.object_type }}}} objects',
            "The latest {{ $labels.direction }} job of {{ $labels.target_type }} {{ $labels.target_id }} in "
            'instance {{ $labels.instance_id }} deleted {{ $value | printf "%.0f" }} objects of type '
            "{{ $labels.object_type }}.",
            comment="Latest job only, and only for a day after it ended, so an old job does not page forever.",
        ),
        Alert(
            "IDaaSExporterDown",
            SYNC,
            """
min without ($replicas) (idaas_up{$sel}) == 0
or on ($keep, instance_id)
(time() - max without ($replicas) (idaas_exporter_last_poll_success_timestamp_seconds{$sel}) > $exporter_stale)
or
absent(idaas_exporter_build_info{$sel})
""",
            "critical",
            "{{ if $labels.instance_id }}idaas-sync-exporter cannot read IDaaS instance {{ $labels.instance_id }}"
            "{{ else }}idaas-sync-exporter is not being scraped{{ end }}",
            "{{ if $labels.instance_id }}Instance {{ $labels.instance_id }} has had no successful poll for at least "
            "5 minutes (polls fail or do not finish); the landing page and logs show the last error.{{ else }}No "
            "idaas-sync-exporter has been scraped for 5 minutes.{{ end }} IDaaS sync alerts are blind meanwhile.",
            for_="5m",
            comment="An instance cannot be read (by any replica), its last successful poll is too old "
            "(a poll that never ends keeps idaas_up at 1), or no exporter of this job is scraped at all.",
        ),
        Alert(
            "IDaaSExporterThrottled",
            SYNC,
            """
sum by ($keep, instance_id) (
  rate(idaas_exporter_api_requests_total{$sel, code=~"Throttling.*"}[10m])
) > $throttled
""",
            "warning",
            "IDaaS API throttles idaas-sync-exporter for instance {{ $labels.instance_id }}",
            'The IDaaS API has answered with throttling codes at {{ $value | printf "%.2f" }}/s for 15 minutes; '
            "polls are slowed down and may fall behind.",
            for_="15m",
            comment="Summed over replicas: each replica's requests count against the account's quota.",
        ),
        Alert(
            "IDaaSSyncDeletionNearThreshold",
            PULL,
            """
(
  max without ($replicas, action, result, target_type, direction) (
    idaas_sync_last_job_objects{$sel, target_type="identity_provider", action="deleted", result="success"}
  )
  >= on ($keep, instance_id, target_id, object_type) group_left ()
  (max without ($replicas) (idaas_sync_pull_deletion_threshold{$sel} > 0) * $fraction)
)
and on ($keep, instance_id, target_id)
(
  time()
  - max without ($replicas, target_type, direction) (
    idaas_sync_last_job_end_timestamp_seconds{$sel, target_type="identity_provider"}
  )
  < 86400
)
""",
            "warning",
            f'IDaaS sync of {name} deleted {{{{ $value | printf "%.0f" }}}} {{{{ $labels.object_type }}}} objects, '
            "close to its protection threshold",
            "The latest job of identity provider {{ $labels.target_id }} in instance {{ $labels.instance_id }} "
            'deleted {{ $value | printf "%.0f" }} {{ $labels.object_type }} objects; the deletion protection '
            "threshold is {{ with printf "
            f"`idaas_sync_pull_deletion_threshold{{{config.job_selector},instance_id=%q,target_id=%q,"
            "object_type=%q}` $labels.instance_id $labels.target_id $labels.object_type | query }}"
            '{{ . | first | value | printf "%.0f" }}{{ end }}. The next such sync may be stopped.',
            grafana_description="The latest job of identity provider {{ $labels.target_id }} in instance "
            '{{ $labels.instance_id }} deleted {{ $values.B.Value | printf "%.0f" }} {{ $labels.object_type }} '
            f"objects, at least {config.deletion_near_fraction:.0%} of its deletion protection threshold "
            "(idaas_sync_pull_deletion_threshold). The next such sync may be stopped.",
        ),
        Alert(
            "IDaaSSyncDeletionThresholdExceeded",
            PULL,
            """
sum by ($keep, $target) (
  max without ($replicas) (
    increase(idaas_sync_job_errors_total{$sel, error_code="UdPullProtectedRule.DeletedThresholdExceeded"}[1h])
  )
) > 0
""",
            "critical",
            f"Deletion protection stopped the IDaaS sync of {name}",
            "A sync of identity provider {{ $labels.target_id }} in instance {{ $labels.instance_id }} would have "
            "deleted more objects than its protection threshold and was stopped. Nothing syncs from it until this "
            "is resolved.",
            comment="Assumes IDaaS reports a sync stopped by deletion protection as a failed job with this "
            "error code (as the simulator models it; see docs/alerts.md).",
        ),
        Alert(
            "IDaaSSyncScheduledRunMissed",
            PULL,
            """
(
  time()
  - max without ($replicas, target_type, direction) (
    idaas_sync_last_job_start_timestamp_seconds{$sel, target_type="identity_provider"}
  )
)
> on ($keep, instance_id, target_id)
(max without ($replicas) (idaas_sync_pull_schedule_max_interval_seconds{$sel}) + $grace)
and on ($keep, instance_id, target_id)
(max without ($replicas) (idaas_sync_pull_feature_enabled{$sel, feature="periodic_sync"}) == 1)
""",
            "warning",
            f"Scheduled IDaaS sync of {name} did not run",
            "Identity provider {{ $labels.target_id }} in instance {{ $labels.instance_id }} has periodic sync "
            "enabled but its last job started {{ $value | humanizeDuration }} ago, longer than its schedule "
            "allows plus the grace period.",
            for_="5m",
        ),
    ]
    return [
        dataclasses.replace(a, expr=substitute(a.expr, config).strip() + "\n", panel=PANEL_OF_ALERT[a.name])
        for a in declared
    ]


PANEL_OF_ALERT = {
    "IDaaSSyncJobFailed": "Jobs by status",
    "IDaaSSyncPartialSuccess": "Object outcomes per hour by type and action",
    "IDaaSSyncStale": "Time since last success",
    "IDaaSSyncJobStuck": "Age of the oldest job in progress",
    "IDaaSSyncMassDeletion": "Deletions in the latest job",
    "IDaaSExporterDown": "Instances up",
    "IDaaSExporterThrottled": "API requests by code",
    "IDaaSSyncDeletionNearThreshold": "Latest deletions / protection threshold",
    "IDaaSSyncDeletionThresholdExceeded": "Failures by error code",
    "IDaaSSyncScheduledRunMissed": "Time since last success",
}


def recordings(config: RulesConfig) -> list[Recording]:
    """Series the dashboard reads instead of computing them over every target at each refresh."""
    declared = [
        Recording(
            "idaas:sync_job_duration_seconds_bucket:rate1h",
            "max without ($replicas) (rate(idaas_sync_job_duration_seconds_bucket{$sel}[1h]))",
            comment="Job durations: jobs are hourly or rarer, so an hour is the shortest window that holds some.",
        ),
        Recording(
            "idaas:sync_objects:increase1h",
            "max without ($replicas) (increase(idaas_sync_objects_total{$sel}[1h]))",
            comment="Object outcomes per target and hour, replicas merged.",
        ),
    ]
    return [Recording(r.record, substitute(r.expr, config), r.comment) for r in declared]
