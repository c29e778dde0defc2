"""How an instance's polls have gone: up or not, the last success and error, failures, odd jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from idaas_sync_exporter.api.models import ANOMALY_REASONS


@dataclass(slots=True)
class InstanceHealth:
    polled: bool = False  # at least one poll finished, successfully or not
    up: bool = False
    last_success: float | None = None
    last_error: str | None = None
    poll_duration: float | None = None
    poll_failures: int = 0
    anomalies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANOMALY_REASONS, 0))

    def succeeded(self, *, at: float, duration: float, anomalies: dict[str, int]) -> None:
        for reason, count in anomalies.items():
            self.anomalies[reason] = self.anomalies.get(reason, 0) + count
        self.polled = True
        self.up = True
        self.last_error = None
        self.last_success = at
        self.poll_duration = duration

    def failed(self, error: str, *, duration: float) -> None:
        self.polled = True
        self.up = False
        self.last_error = error
        self.poll_failures += 1
        self.poll_duration = duration
