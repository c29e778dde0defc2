"""What a deployment tunes in the generated rules, in the spirit of a monitoring mixin's ``_config``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from idaas_sync_exporter.config.validation import describe, load_document
from idaas_sync_exporter.config.yamlfile import YamlFileError
from idaas_sync_exporter.files import shown_path
from idaas_sync_exporter.links import DOCS_URL, check_docs_url, docs_page

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# One or more label matchers as PromQL writes them inside braces: job="x", namespace=~"a|b".
_MATCHERS = re.compile(
    r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*(,\s*[a-zA-Z_][a-zA-Z0-9_]*'
    r'\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*)*'
)

Seconds = Annotated[int, Field(gt=0, le=30 * 86400)]


class RulesConfigError(Exception):
    """A rules configuration that cannot be used; ``problems`` holds each, the message all in one line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class RulesConfig(BaseModel):
    """Every knob of the generated alerts, recording rules and dashboard queries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_selector: str = Field(
        'job="idaas-sync-exporter"',
        description="label matchers every selector carries, as inside PromQL braces",
    )
    aggregation_labels: tuple[str, ...] = Field(
        ("cluster", "namespace", "job"),
        description="labels every aggregation keeps, so Alertmanager can route on them",
    )
    replica_labels: tuple[str, ...] = Field(
        ("instance", "pod"),
        description="labels that tell replicas of the exporter apart; merged before anything is summed",
    )
    docs_url: str = Field(
        DOCS_URL, description="base URL of the documentation; runbook links are its alerts.md#<alert>"
    )
    runbook_url_pattern: str | None = Field(
        None,
        description="runbook link of each alert ({alert}: its name in lower case); default docs_url/alerts.md#{alert}",
    )
    failed_window: str = Field("15m", description="how far back a failed or partially failed job fires")
    stale_seconds: Seconds = Field(3 * 3600, description="IDaaSSyncStale: no success for this long")
    stuck_seconds: Seconds = Field(2 * 3600, description="IDaaSSyncJobStuck: a job in progress for this long")
    mass_deletion_objects: int = Field(50, gt=0, description="IDaaSSyncMassDeletion: deletions of one type")
    deletion_near_fraction: float = Field(
        0.8, gt=0, le=1, description="IDaaSSyncDeletionNearThreshold: share of the protection threshold"
    )
    schedule_grace_seconds: Seconds = Field(3600, description="IDaaSSyncScheduledRunMissed: grace period")
    exporter_stale_seconds: Seconds = Field(600, description="IDaaSExporterDown: last successful poll age")
    throttled_per_second: float = Field(0.01, gt=0, description="IDaaSExporterThrottled: throttled requests/s")
    grafana_datasource_uid: str = Field(
        "prometheus", pattern=r"^[A-Za-z0-9_-]{1,40}$", description="Grafana rules: uid of the Prometheus data source"
    )
    grafana_folder: str = Field("IDaaS sync", min_length=1, max_length=100, description="Grafana rules: folder")
    grafana_interval: str = Field("1m", pattern=r"^[1-9][0-9]*[smh]$", description="Grafana rules: evaluation interval")

    @field_validator("job_selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        if not _MATCHERS.fullmatch(value):
            raise ValueError('must be PromQL label matchers such as job="idaas-sync-exporter"')
        return value.strip()

    @field_validator("aggregation_labels", "replica_labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for label in value:
            if not _LABEL.fullmatch(label):
                raise ValueError(f"{label!r} is not a label name")
        return value

    @field_validator("failed_window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]*[smhd]", value):
            raise ValueError("must be a Prometheus duration such as 15m")
        return value

    @field_validator("docs_url")
    @classmethod
    def _docs_url(cls, value: str) -> str:
        return check_docs_url(value)

    @field_validator("runbook_url_pattern")
    @classmethod
    def _runbook(cls, value: str | None) -> str | None:
        if value is not None and ("{alert}" not in value or not re.match(r"https?://", value)):
            raise ValueError("must be an absolute http(s) URL containing {alert}")
        return value

    def runbook_url(self, alert: str) -> str:
        if self.runbook_url_pattern is None:
            return docs_page(self.docs_url, "alerts.md", alert.lower())
        return self.runbook_url_pattern.replace("{alert}", alert.lower())


def load(path: Path | None) -> RulesConfig:
    """The defaults, overridden by a YAML file; every problem named by its position and key."""
    if path is None:
        return RulesConfig()
    try:
        document = load_document(str(path))
    except YamlFileError as exc:
        raise RulesConfigError([f"rules config: cannot read it: {exc}"]) from None
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise RulesConfigError(
            [f"rules config: {shown_path(str(path))}: must be a mapping of settings (see docs/alerts.md)"]
        )
    try:
        return RulesConfig.model_validate(data)
    except ValidationError as exc:
        raise RulesConfigError(
            [f"rules config: {line}" for line in describe(exc, document, model=RulesConfig)]
        ) from None
