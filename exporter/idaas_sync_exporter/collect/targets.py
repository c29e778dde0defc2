"""What an instance's targets are called, and what its identity providers' inbound sync is set to."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from idaas_sync_exporter.api.client import EiamClient
from idaas_sync_exporter.api.credentials import CredentialsError
from idaas_sync_exporter.api.errors import EiamError, bounded_code, shown_text
from idaas_sync_exporter.api.models import UdPullConfiguration, is_plain_id, label_value
from idaas_sync_exporter.api.schedule import max_interval_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    name: str
    provider_type: str


@dataclass(frozen=True, slots=True)
class PullConfigView:
    """What an identity provider's inbound-sync configuration says, as exported."""

    thresholds: Mapping[str, int]  # object type -> deletion threshold
    features: Mapping[str, bool]  # incremental_callback, periodic_sync, group_sync
    max_interval_seconds: float | None  # None when periodic sync is off


def pull_config_view(config: UdPullConfiguration, *, now: float) -> PullConfigView:
    rule = config.pull_protected_rule
    thresholds: dict[str, int] = {}
    if rule is not None:
        for object_type, value in (
            ("user", rule.user_deleted_threshold),
            ("organizational_unit", rule.organizational_unit_deleted_threshold),
            ("group", rule.group_deleted_threshold),
        ):
            if value is not None:
                thresholds[object_type] = value
    periodic_on = config.periodic_sync_status == "enabled"
    periodic = config.periodic_sync_config
    interval = None
    if periodic_on and periodic is not None:
        interval = max_interval_seconds(periodic.model_dump(by_alias=True, exclude_none=True), now=now)
    return PullConfigView(
        thresholds=MappingProxyType(thresholds),
        features=MappingProxyType(
            {
                "incremental_callback": config.incremental_callback_status == "enabled",
                "periodic_sync": periodic_on,
                "group_sync": config.group_sync_status == "enabled",
            }
        ),
        max_interval_seconds=interval,
    )


_LABEL_ANOMALY_MESSAGES = {
    "long_label": "target names or types longer than a label may be; cut, ending in \u2026",
    "bad_target_id": "targets whose id is not a plain identifier; left out of the target names",
}


def _target_info(
    key: tuple[str, str], name: str | None, provider_type: str, anomalies: Mapping[str, list[str]]
) -> TargetInfo | None:
    """The target's labels, bounded; None when its id could never be a job's TargetId."""
    target_id = key[1]
    if not is_plain_id(target_id):
        anomalies["bad_target_id"].append(repr(target_id)[:80])
        return None
    full_name = name or target_id
    info = TargetInfo(label_value(full_name), label_value(provider_type))
    if info.name != full_name or info.provider_type != provider_type:
        anomalies["long_label"].append(target_id)
    return info


class TargetCatalogue:
    """One instance's target names and inbound-sync configurations, refreshed on their own schedule."""

    def __init__(self, instance_id: str, client: EiamClient, *, clock: Callable[[], float] = time.time) -> None:
        self.instance_id = instance_id
        self._client = client
        self._clock = clock
        self.names: dict[tuple[str, str], TargetInfo] = {}
        self.pull_configs: dict[str, PullConfigView] = {}
        self.pull_config_failures: dict[str, int] = {}  # error code -> count
        # Targets of the latest listing whose label values had to be changed, by reason: long_label (a
        # name or type cut to MAX_LABEL_LENGTH), bad_target_id (id unusable, target left out). A gauge of
        # the listing rather than a running count: the same target is listed again at every refresh.
        # Replaced, never changed in place, so the snapshot builder can compare it by identity.
        self.label_anomalies: Mapping[str, int] = {}

    async def refresh(self) -> bool:
        """List identity providers and applications, then read inbound configurations.

        Returns whether anything was read; on failure the previous names are kept.
        """
        names: dict[tuple[str, str], TargetInfo] = {}
        inbound: list[str] = []
        anomalies: dict[str, list[str]] = {"long_label": [], "bad_target_id": []}
        try:
            async for idp in self._client.list_identity_providers(self.instance_id):
                key = ("identity_provider", idp.identity_provider_id)
                info = _target_info(key, idp.identity_provider_name, idp.provider_kind, anomalies)
                if info is None:
                    continue
                names[key] = info
                if idp.ud_pull_status != "disabled":
                    inbound.append(idp.identity_provider_id)
            async for app in self._client.list_applications(self.instance_id):
                key = ("application", app.application_id)
                info = _target_info(key, app.application_name, "application", anomalies)
                if info is not None:
                    names[key] = info
        except CredentialsError:
            return False  # every poll fails the same way and reports it; one line per cause is enough
        except EiamError as exc:
            log.warning(
                "listing target names failed; keeping the previous names",
                extra={"instance_id": self.instance_id, "error": str(exc)},
            )
            return False
        self.names = names
        self._note_label_anomalies(anomalies)
        await self._refresh_pull_configs(inbound)
        return True

    def _note_label_anomalies(self, anomalies: Mapping[str, list[str]]) -> None:
        previous = self.label_anomalies
        self.label_anomalies = {reason: len(target_ids) for reason, target_ids in anomalies.items()}
        for reason, target_ids in anomalies.items():
            # Logged when the number changes, not at every refresh of the same listing.
            if not target_ids or previous.get(reason) == len(target_ids):
                continue
            log.warning(
                _LABEL_ANOMALY_MESSAGES[reason],
                extra={
                    "instance_id": self.instance_id,
                    "reason": reason,
                    "targets": len(target_ids),
                    "first_target_id": target_ids[0],
                },
            )

    async def _refresh_pull_configs(self, identity_provider_ids: list[str]) -> None:
        """Read each inbound identity provider's configuration; one that cannot be read is counted and skipped."""
        configs: dict[str, PullConfigView] = {}
        for idp_id in identity_provider_ids:
            try:
                config = await self._client.get_ud_pull_configuration(self.instance_id, idp_id)
                configs[idp_id] = pull_config_view(config, now=self._clock())
            # Any failure of one provider's schedule analysis (croniter raises more than ValueError
            # on odd expressions) costs that provider only: the others are still read.
            except Exception as exc:
                code = exc.metric_code if isinstance(exc, EiamError) else "InvalidSchedule"
                code = bounded_code(code, self.pull_config_failures)
                self.pull_config_failures[code] = self.pull_config_failures.get(code, 0) + 1
                log.warning(
                    "inbound-sync configuration not readable; skipped",
                    extra={"instance_id": self.instance_id, "identity_provider_id": idp_id, "error": shown_text(exc)},
                )
                previous = self.pull_configs.get(idp_id)
                if previous is not None:
                    configs[idp_id] = previous
        self.pull_configs = configs
