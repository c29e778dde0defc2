"""The simulated IDaaS tenant: instances, identity providers, applications and their jobs.

Everything is a pure function of the seed and the simulated time:

* Jobs are generated lazily in one-hour buckets, each bucket from its own RNG
  seeded by (seed, target, hour), so the same seed gives the same jobs no matter
  when or how often the world is asked.
* A job's status is computed from its plan and the current time
  (pending -> running -> final), so jobs "move" without any background task.

Tests and demos can add jobs by hand (:meth:`World.add_job`), which is how a
failure is injected on demand.

Times are the world's own (``start_ms``, the clock's ``now``); the API reports them through
:meth:`World.api_ms`, which is the identity unless the clock is a
:class:`~idaas_sync_exporter.simulator.clock.CompressedClock`.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from idaas_sync_exporter.api.schedule import SCHEDULE_TZ
from idaas_sync_exporter.simulator.clock import CompressedClock

HOUR = 3600.0
OBJECT_TYPES = ("User", "OrganizationalUnit", "Group", "GroupMember")
INGRESS_ACTIONS = ("Created", "Updated", "Deleted", "Binded", "Same")
EGRESS_ACTIONS = ("Created", "Updated", "Deleted", "Pushed")
# The SDK knows Exported on users and organizational units only.
EXPORT_OBJECT_TYPES = ("User", "OrganizationalUnit")
DELETION_PROTECTION_ERROR = "UdPullProtectedRule.DeletedThresholdExceeded"

# Why a job failed, by what it synchronizes. The API document lists no job error codes (its one
# example is MissingParameter.Username); these are our model, kept apart by target so that a
# dashboard never shows an application's SCIM failure on an identity provider or the reverse.
CONNECTION_FAILED = ("IdentityProvider.ConnectionFailed", "Failed to connect to the identity provider API.")
# Any inbound identity provider, whatever its kind.
IDENTITY_PROVIDER_FAILURES: tuple[tuple[str, str], ...] = (
    CONNECTION_FAILED,
    ("MissingParameter.Username", "A user of the identity provider has no user name."),
)
# By the kind in the provider type (urn:alibaba:idaas:idp:<vendor>:<kind>:pull).
PROVIDER_KIND_FAILURES: dict[str, tuple[tuple[str, str], ...]] = {
    "dingtalk": (
        ("IdentityProvider.AccessTokenInvalid", "The DingTalk access token is invalid or has expired."),
        ("IdentityProvider.PermissionDenied", "The DingTalk application may not read the contacts."),
    ),
    "wecom": (
        ("IdentityProvider.AccessTokenInvalid", "The WeCom access token is invalid or has expired."),
        ("IdentityProvider.IpNotAllowed", "The WeCom application's trusted IP list does not allow IDaaS."),
    ),
    "lark": (
        ("IdentityProvider.AccessTokenInvalid", "The Lark tenant access token is invalid or has expired."),
        ("IdentityProvider.RateLimitExceeded", "The Lark open platform refused the request: rate limit exceeded."),
    ),
    "ad": (
        ("IdentityProvider.LdapBindFailed", "The directory refused the bind DN or its password."),
        ("IdentityProvider.LdapSearchFailed", "The directory search of the synchronization scope failed."),
    ),
    "ldap": (
        ("IdentityProvider.LdapBindFailed", "The directory refused the bind DN or its password."),
        ("IdentityProvider.LdapSearchFailed", "The directory search of the synchronization scope failed."),
    ),
}
APPLICATION_FAILURES: tuple[tuple[str, str], ...] = (
    ("Application.ScimEndpointUnavailable", "The SCIM endpoint of the application returned 503."),
    ("Application.ScimAuthenticationFailed", "The SCIM endpoint of the application refused the token (401)."),
    ("Application.ScimRequestRejected", "The SCIM endpoint of the application rejected a user (400)."),
)


def provider_kind(provider_type: str) -> str:
    """``urn:alibaba:idaas:idp:tencent:wecom:pull`` -> ``wecom``; the last part of a type without ``:pull``."""
    parts = provider_type.split(":")
    return parts[-2] if parts[-1] == "pull" and len(parts) > 1 else parts[-1]


def failure_codes(target_type: str, provider_type: str | None = None) -> tuple[tuple[str, str], ...]:
    """The (code, message) pairs a job of this target may fail with."""
    if target_type == "application":
        return APPLICATION_FAILURES
    kind = provider_kind(provider_type) if provider_type else ""
    return IDENTITY_PROVIDER_FAILURES + PROVIDER_KIND_FAILURES.get(kind, ())


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    identity_provider_id: str
    name: str
    provider_type: str  # e.g. urn:alibaba:idaas:idp:alibaba:dingtalk:pull
    pull_config: dict[str, Any] | None  # wire-shaped UdPullConfiguration, None when not inbound
    incremental_per_hour: float
    users: int  # size of the directory, scales the statistics


@dataclass(frozen=True, slots=True)
class ApplicationSpec:
    application_id: str
    name: str
    push_every_minutes: int
    users: int


@dataclass(slots=True)
class InstanceState:
    instance_id: str
    description: str
    providers: list[ProviderSpec]
    applications: list[ApplicationSpec]
    pull_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[JobPlan] = field(default_factory=list)
    keys: list[tuple[int, str]] = field(default_factory=list)  # (start_ms, job_id), sorted
    by_id: dict[str, JobPlan] = field(default_factory=dict)
    generated_until_hour: int | None = None


@dataclass(frozen=True, slots=True)
class StatsRecipe:
    """Enough to regenerate a job's statistics on demand, so 100,000 jobs cost little memory."""

    seed: int
    direction: str
    population: int
    failures: bool
    empty: bool
    deleted_users: int | None = None


@dataclass(slots=True)
class JobPlan:
    """A job's whole life, decided when it is generated."""

    job_id: str
    instance_id: str
    target_type: str
    target_id: str
    direction: str
    trigger_type: str
    start_ms: int
    pending_ms: int
    running_ms: int
    final_status: str
    # Explicit statistics (anchors, injected jobs) or a recipe to regenerate them.
    statistics: dict[str, dict[str, dict[str, int]]] | None = None
    recipe: StatsRecipe | None = None
    error_code: str | None = None
    error_message: str | None = None
    description: str = ""
    # What the API calls the status before the job runs ("init" is seen in the console).
    initial_status: str = "pending"
    # Fields of the answer replaced as they are, for hostile-input tests: a StartTime in
    # the future, a count that is a string, a Result that is a list...
    wire_overrides: dict[str, Any] | None = None

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.pending_ms + self.running_ms

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        if self.statistics is not None:
            return self.statistics
        if self.recipe is None:
            return {}
        recipe = self.recipe
        generated = _statistics(
            random.Random(recipe.seed),
            recipe.direction,
            recipe.population,
            failures=recipe.failures,
            empty=recipe.empty,
        )
        if recipe.deleted_users is not None:
            deleted = recipe.deleted_users
            generated["User"]["Deleted"] = {"Total": deleted, "Success": deleted, "Failed": 0, "Skipped": 0}
        return generated

    def status_at(self, now_ms: int) -> str:
        if now_ms < self.start_ms + self.pending_ms:
            return self.initial_status
        if now_ms < self.end_ms:
            return "running"
        return self.final_status

    def to_wire(self, now_ms: int, api_ms: Callable[[int], int] | None = None) -> dict[str, Any]:
        """The job as the API answers at the world's time ``now_ms``, its times reported through ``api_ms``."""
        report = api_ms or _same_time
        status = self.status_at(now_ms)
        # A job planned to stay running (the demo's stuck job) never has a result or an end time.
        final = status == self.final_status and status not in ("pending", "running", self.initial_status)
        result: dict[str, Any] = {}
        if final:
            result = {f"{name}Statistics": stats for name, stats in self.stats().items()}
            if self.error_code:
                result["ErrorCode"] = self.error_code
                result["ErrorMessage"] = self.error_message or ""
        job: dict[str, Any] = {
            "SynchronizationJobId": self.job_id,
            "TargetType": self.target_type,
            "TargetId": self.target_id,
            "Direction": self.direction,
            "StartTime": report(self.start_ms),
            "TriggerType": self.trigger_type,
            "Status": status,
            "Result": result,
            "Description": self.description,
        }
        if final:
            job["EndTime"] = report(self.end_ms)
        if self.wire_overrides:
            job.update(self.wire_overrides)
        return job


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """Shape of a simulated tenant. ``demo`` is what `serve --demo` shows."""

    name: str
    instances: int = 1
    providers_per_instance: int = 6
    applications_per_instance: int = 3
    incremental_per_hour: float = 6.0
    failure_rate: float = 0.05
    partial_rate: float = 0.15
    # How much history exists before the world's start time.
    history_hours: int = 26
    # Pin one always-visible example of each interesting case (stuck job, failure,
    # partial success, near-threshold deletion) so every dashboard panel has data.
    anchors: bool = True


SCENARIOS: dict[str, ScenarioSpec] = {
    "demo": ScenarioSpec("demo"),
    "quiet": ScenarioSpec("quiet", failure_rate=0.0, partial_rate=0.0, anchors=False),
    # 1,000 targets and about 100,000 jobs a day, for bench/.
    "bench": ScenarioSpec(
        "bench", providers_per_instance=200, applications_per_instance=800, incremental_per_hour=24.0, history_hours=25
    ),
    "busy": ScenarioSpec(
        "busy", instances=2, providers_per_instance=8, applications_per_instance=12, incremental_per_hour=30.0
    ),
}


def scenario_names() -> list[str]:
    return sorted(SCENARIOS)


def _same_time(world_ms: int) -> int:
    return world_ms


def _stable_id(prefix: str, *parts: object, length: int = 24) -> str:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"


_PROVIDER_KINDS: tuple[tuple[str, str, str], ...] = (
    ("DingTalk", "urn:alibaba:idaas:idp:alibaba:dingtalk:pull", "time"),
    ("WeCom", "urn:alibaba:idaas:idp:tencent:wecom:pull", "cron"),
    ("Lark", "urn:alibaba:idaas:idp:bytedance:lark:pull", "cron"),
    ("Active Directory", "urn:alibaba:idaas:idp:microsoft:ad:pull", "time"),
    ("OpenLDAP", "urn:alibaba:idaas:idp:unknown:ldap:pull", "cron"),
    ("Corporate OIDC", "urn:alibaba:idaas:idp:standard:oidc", ""),
)


def _pull_config(instance_id: str, idp_id: str, schedule: str, rng: random.Random, ldap: bool) -> dict[str, Any]:
    users = rng.choice((200, 800, 3000))
    config: dict[str, Any] = {
        "InstanceId": instance_id,
        "IdentityProviderId": idp_id,
        "IncrementalCallbackStatus": "disabled" if ldap else "enabled",
        "GroupSyncStatus": "enabled",
        "PeriodicSyncStatus": "enabled",
        "PullProtectedRule": {
            "UserDeletedThreshold": max(10, users // 20),
            "OrganizationalUnitDeletedThreshold": 10,
            "GroupDeletedThreshold": 10,
        },
        "UdSyncScopeConfig": {"SourceScopes": [f"ou_{idp_id[4:14]}root"], "TargetScope": "ou_root"},
    }
    if schedule == "cron":
        config["PeriodicSyncConfig"] = {
            "PeriodicSyncType": "cron",
            "PeriodicSyncCron": rng.choice(("0 0 * * * ?", "0 30 */2 * * ?", "0 45 1 * * ?")),
        }
    else:
        config["PeriodicSyncConfig"] = {"PeriodicSyncType": "time", "PeriodicSyncTimes": [3, 9, 15, 21]}
    if ldap:
        config["LdapUdPullConfig"] = {
            "UserObjectClass": "inetOrgPerson",
            "OrganizationUnitObjectClass": "organizationalUnit",
            "GroupObjectClass": "groupOfNames",
            "GroupMemberAttributeName": "member",
        }
    return config


class World:
    """Thread-safe: the simulator's HTTP handlers and tests may share one world."""

    def __init__(
        self,
        spec: ScenarioSpec,
        *,
        seed: int,
        clock: Callable[[], float],
        instance_ids: Sequence[str] | None = None,
    ) -> None:
        """A tenant of ``spec``; with ``instance_ids``, those instances (as many) instead of ids made from the seed."""
        self.spec = spec
        self.seed = seed
        self._clock = clock
        self._api_ms: Callable[[int], int] = clock.api_ms if isinstance(clock, CompressedClock) else _same_time
        self._lock = threading.RLock()
        self._origin_hour = int(clock() // HOUR) - spec.history_hours
        self.instances: dict[str, InstanceState] = {}
        rng = random.Random(f"{seed}/layout")
        if instance_ids is not None and len(set(instance_ids)) != len(instance_ids):
            raise ValueError("instance ids must be distinct")
        count = spec.instances if instance_ids is None else len(instance_ids)
        for index in range(count):
            instance_id = (
                _stable_id("idaas", seed, "instance", index, length=26) if instance_ids is None else instance_ids[index]
            )
            providers: list[ProviderSpec] = []
            pull_configs: dict[str, dict[str, Any]] = {}
            for p in range(spec.providers_per_instance):
                label, kind, schedule = _PROVIDER_KINDS[p % len(_PROVIDER_KINDS)]
                idp_id = _stable_id("idp", seed, instance_id, "idp", p, length=26)
                suffix = f" {p // len(_PROVIDER_KINDS) + 1}" if p >= len(_PROVIDER_KINDS) else ""
                inbound = kind.endswith(":pull")
                ldap = "ldap" in kind or ":ad:" in kind
                config = _pull_config(instance_id, idp_id, schedule, rng, ldap) if inbound else None
                if config is not None:
                    pull_configs[idp_id] = config
                providers.append(
                    ProviderSpec(
                        identity_provider_id=idp_id,
                        name=f"{label}{suffix}",
                        provider_type=kind,
                        pull_config=config,
                        incremental_per_hour=spec.incremental_per_hour if inbound and not ldap else 0.0,
                        users=rng.choice((200, 800, 3000)),
                    )
                )
            applications = [
                ApplicationSpec(
                    application_id=_stable_id("app", seed, instance_id, "app", a, length=26),
                    name=("HR Portal", "Expense", "Wiki", "CRM", "Git", "Mail")[a % 6]
                    + (f" {a // 6 + 1}" if a >= 6 else ""),
                    push_every_minutes=rng.choice((15, 30, 60)),
                    users=rng.choice((100, 500, 2000)),
                )
                for a in range(spec.applications_per_instance)
            ]
            state = InstanceState(instance_id, f"Simulated instance {index + 1}", providers, applications, pull_configs)
            self.instances[instance_id] = state
        if spec.anchors:
            self._add_anchors()

    # -- time ---------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def api_ms(self, world_ms: int) -> int:
        """The time the API reports for the world's time ``world_ms``."""
        return self._api_ms(world_ms)

    def api_now(self) -> float:
        """The API's clock (its Date header): the world's present as the API reports it."""
        return self._api_ms(self.now_ms()) / 1000

    # -- queries --------------------------------------------------------------

    def instance(self, instance_id: str) -> InstanceState | None:
        return self.instances.get(instance_id)

    def visible_jobs(self, instance_id: str, now_ms: int) -> list[JobPlan]:
        """Jobs that have started by ``now_ms``, oldest first (callers reverse as needed)."""
        with self._lock:
            state = self.instances[instance_id]
            self._generate_until(state, now_ms)
            cut = bisect.bisect_right(state.keys, (now_ms, "\U0010ffff"))
            return state.jobs[:cut]

    @contextlib.contextmanager
    def reading(self, instance_id: str, now_ms: int) -> Iterator[tuple[list[JobPlan], int]]:
        """The instance's jobs, oldest first, and how many have started by ``now_ms``; no copy.

        The world stays locked meanwhile, so the list must only be read, and only inside.
        A page of a large window is then a bisection and a short scan, not a copy of it.
        """
        with self._lock:
            state = self.instances[instance_id]
            self._generate_until(state, now_ms)
            yield state.jobs, bisect.bisect_right(state.keys, (now_ms, "\U0010ffff"))

    def job(self, instance_id: str, job_id: str, now_ms: int) -> JobPlan | None:
        with self._lock:
            state = self.instances[instance_id]
            self._generate_until(state, now_ms)
            plan = state.by_id.get(job_id)
            return plan if plan is not None and plan.start_ms <= now_ms else None

    def finished_jobs(self, now_ms: int | None = None) -> Iterator[JobPlan]:
        """Ground truth: every job in a final status at ``now_ms``."""
        at = self.now_ms() if now_ms is None else now_ms
        for instance_id in list(self.instances):
            for plan in self.visible_jobs(instance_id, at):
                if plan.end_ms <= at:
                    yield plan

    def pull_config(self, instance_id: str, idp_id: str) -> dict[str, Any] | None:
        with self._lock:
            config = self.instances[instance_id].pull_configs.get(idp_id)
            return _deep_copy(config) if config is not None else None

    def set_pull_config(self, instance_id: str, idp_id: str, config: dict[str, Any]) -> None:
        with self._lock:
            self.instances[instance_id].pull_configs[idp_id] = _deep_copy(config)

    # -- changes --------------------------------------------------------------

    def add_job(self, plan: JobPlan) -> JobPlan:
        with self._lock:
            state = self.instances[plan.instance_id]
            if plan.job_id in state.by_id:
                raise ValueError(f"job {plan.job_id} already exists")
            self._insert(state, [plan])
            return plan

    def new_job_id(self, instance_id: str, hint: str) -> str:
        with self._lock:
            state = self.instances[instance_id]
            return _stable_id("sync", self.seed, instance_id, hint, len(state.jobs), length=36)

    def _insert(self, state: InstanceState, plans: list[JobPlan]) -> None:
        for plan in plans:
            key = (plan.start_ms, plan.job_id)
            position = bisect.bisect_left(state.keys, key)
            state.keys.insert(position, key)
            state.jobs.insert(position, plan)
            state.by_id[plan.job_id] = plan

    # -- generation -------------------------------------------------------------

    def _generate_until(self, state: InstanceState, now_ms: int) -> None:
        last_hour = now_ms // 3_600_000
        first = self._origin_hour if state.generated_until_hour is None else state.generated_until_hour + 1
        if first > last_hour:
            return
        batch: list[JobPlan] = []
        for hour in range(first, last_hour + 1):
            for provider in state.providers:
                batch.extend(self._provider_jobs(state, provider, hour))
            for app in state.applications:
                batch.extend(self._application_jobs(state, app, hour))
        batch.sort(key=lambda plan: (plan.start_ms, plan.job_id))
        if state.jobs and batch and (batch[0].start_ms, batch[0].job_id) < state.keys[-1]:
            self._insert(state, batch)  # anchors or injected jobs lie ahead: merge
        else:
            for plan in batch:
                state.keys.append((plan.start_ms, plan.job_id))
                state.jobs.append(plan)
                state.by_id[plan.job_id] = plan
        state.generated_until_hour = last_hour

    def _provider_jobs(self, state: InstanceState, provider: ProviderSpec, hour: int) -> list[JobPlan]:
        config = state.pull_configs.get(provider.identity_provider_id)
        if config is None:
            return []
        rng = random.Random(f"{self.seed}/{provider.identity_provider_id}/{hour}")
        starts: list[tuple[float, str, bool]] = []
        if config.get("PeriodicSyncStatus") == "enabled":
            starts.extend((t, "auto", False) for t in _scheduled_in_hour(config.get("PeriodicSyncConfig") or {}, hour))
        if config.get("IncrementalCallbackStatus") == "enabled":
            t = hour * HOUR
            rate = provider.incremental_per_hour
            while rate > 0:
                t += rng.expovariate(rate / HOUR)
                if t >= (hour + 1) * HOUR:
                    break
                starts.append((t, "auto", True))
        if rng.random() < 0.03:
            starts.append((hour * HOUR + rng.uniform(0, HOUR), "manual", False))
        threshold = int((config.get("PullProtectedRule") or {}).get("UserDeletedThreshold") or 0)
        failures = failure_codes("identity_provider", provider.provider_type)
        return [
            self._plan(
                rng,
                state.instance_id,
                "identity_provider",
                provider.identity_provider_id,
                "ingress",
                trigger,
                start,
                provider.users,
                threshold,
                index,
                failures,
                incremental=incremental,
            )
            for index, (start, trigger, incremental) in enumerate(sorted(starts))
        ]

    def _application_jobs(self, state: InstanceState, app: ApplicationSpec, hour: int) -> list[JobPlan]:
        rng = random.Random(f"{self.seed}/{app.application_id}/{hour}")
        starts = [
            (hour * HOUR + minute * 60 + rng.uniform(0, 20), "auto") for minute in range(0, 60, app.push_every_minutes)
        ]
        if rng.random() < 0.05:
            starts.append((hour * HOUR + rng.uniform(0, HOUR), "manual"))
        return [
            self._plan(
                rng,
                state.instance_id,
                "application",
                app.application_id,
                "egress",
                trigger,
                start,
                app.users,
                0,
                index,
                APPLICATION_FAILURES,
            )
            for index, (start, trigger) in enumerate(sorted(starts))
        ]

    def _plan(
        self,
        rng: random.Random,
        instance_id: str,
        target_type: str,
        target_id: str,
        direction: str,
        trigger: str,
        start: float,
        population: int,
        user_threshold: int,
        index: int,
        failures: tuple[tuple[str, str], ...],
        *,
        incremental: bool = False,
    ) -> JobPlan:
        start_ms = int(start * 1000)
        roll = rng.random()
        error: tuple[str, str] | None = None
        if roll < self.spec.failure_rate:
            status = "failed"
            # One draw whatever the number of codes, so a code added to a table changes which
            # code a job has, not every job generated after it.
            error = failures[min(len(failures) - 1, int(rng.random() * len(failures)))]
        elif roll < self.spec.failure_rate + self.spec.partial_rate:
            status = "partial_success"
        else:
            status = "success"
        deleted: int | None = None
        if direction == "ingress" and user_threshold and status == "success" and rng.random() < 0.02:
            # A reorganisation: deletions close to the IdP's protection threshold.
            deleted = max(1, int(user_threshold * rng.uniform(0.8, 0.95)))
        recipe = StatsRecipe(
            rng.getrandbits(32), direction, population, status == "partial_success", status == "failed", deleted
        )
        if incremental:
            # Incremental callbacks carry a handful of changes and finish in seconds.
            pending_ms, running_ms = int(rng.uniform(1, 5) * 1000), int(rng.uniform(2, 40) * 1000)
            recipe = StatsRecipe(recipe.seed, direction, max(20, population // 50), recipe.failures, recipe.empty)
        else:
            pending_ms = int(rng.uniform(2, 30) * 1000)
            running_ms = int(rng.uniform(20, 600 if population > 1000 else 180) * 1000)
        return JobPlan(
            job_id=_stable_id("sync", self.seed, target_id, start_ms, index, length=36),
            instance_id=instance_id,
            target_type=target_type,
            target_id=target_id,
            direction=direction,
            trigger_type=trigger,
            start_ms=start_ms,
            pending_ms=pending_ms,
            running_ms=running_ms,
            final_status=status,
            recipe=recipe,
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
            description="",
        )

    def _add_anchors(self) -> None:
        """Guaranteed examples, placed relative to the world's start time."""
        now = self.now()
        for state in self.instances.values():
            rng = random.Random(f"{self.seed}/{state.instance_id}/anchors")
            inbound = [p for p in state.providers if p.pull_config is not None]
            plans: list[JobPlan] = []
            if inbound:
                stuck_on = inbound[0]
                plans.append(
                    self._anchor(rng, state, stuck_on.identity_provider_id, now - 3 * HOUR, "running", 12 * HOUR)
                )
                failing = inbound[min(1, len(inbound) - 1)]
                failed = self._anchor(rng, state, failing.identity_provider_id, now - 40 * 60, "failed", 90)
                failed.error_code, failed.error_message = CONNECTION_FAILED
                plans.append(failed)
                protected = inbound[-1]
                threshold = (
                    int(protected.pull_config["PullProtectedRule"]["UserDeletedThreshold"])
                    if protected.pull_config
                    else 10
                )
                near = self._anchor(rng, state, protected.identity_provider_id, now - 25 * 60, "success", 120)
                near.stats()["User"]["Deleted"] = {
                    "Total": int(threshold * 0.9),
                    "Success": int(threshold * 0.9),
                    "Failed": 0,
                    "Skipped": 0,
                }
                plans.append(near)
                blocked = self._anchor(rng, state, protected.identity_provider_id, now - 2 * HOUR, "failed", 60)
                blocked.error_code = DELETION_PROTECTION_ERROR
                blocked.error_message = (
                    "The number of users to be deleted exceeds the threshold "
                    "of the inbound synchronization protection rule."
                )
                plans.append(blocked)
                # Shortly after start, so a freshly started exporter counts a failure (cold starts
                # count nothing that was already final) and every dashboard panel has data.
                soon = self._anchor(rng, state, failing.identity_provider_id, now + 30, "failed", 60)
                own = PROVIDER_KIND_FAILURES.get(provider_kind(failing.provider_type), ())
                soon.error_code, soon.error_message = own[0] if own else CONNECTION_FAILED
                plans.append(soon)
            if state.applications:
                app = state.applications[0]
                plans.append(
                    self._anchor(
                        rng, state, app.application_id, now + 45, "partial_success", 60, target_type="application"
                    )
                )
                partial = self._anchor(
                    rng, state, app.application_id, now - 15 * 60, "partial_success", 200, target_type="application"
                )
                plans.append(partial)
            self._insert(state, plans)

    def _anchor(
        self,
        rng: random.Random,
        state: InstanceState,
        target_id: str,
        start: float,
        status: str,
        duration: float,
        *,
        target_type: str = "identity_provider",
    ) -> JobPlan:
        direction = "ingress" if target_type == "identity_provider" else "egress"
        stats = _statistics(rng, direction, 500, failures=status == "partial_success", empty=status == "failed")
        return JobPlan(
            job_id=_stable_id("sync", self.seed, target_id, "anchor", status, int(start), length=36),
            instance_id=state.instance_id,
            target_type=target_type,
            target_id=target_id,
            direction=direction,
            trigger_type="manual",
            start_ms=int(start * 1000),
            pending_ms=5000,
            running_ms=int(duration * 1000),
            final_status=status,
            statistics=stats,
        )


def _scheduled_in_hour(periodic: dict[str, Any], hour: int) -> list[float]:
    begin = datetime.fromtimestamp(hour * HOUR, UTC)
    end = begin + timedelta(hours=1)
    kind = periodic.get("PeriodicSyncType")
    if kind == "cron" and periodic.get("PeriodicSyncCron"):
        expression = str(periodic["PeriodicSyncCron"])
        if not croniter.is_valid(expression, second_at_beginning=True):
            return []
        it = croniter(expression, (begin - timedelta(seconds=1)).astimezone(SCHEDULE_TZ), second_at_beginning=True)
        times: list[float] = []
        while True:
            moment: datetime = it.get_next(datetime)
            if moment >= end:
                return times
            times.append(moment.timestamp())
    if kind == "time":
        hours = periodic.get("PeriodicSyncTimes") or []
        if isinstance(hours, int):
            hours = [hours]
        local = begin.astimezone(SCHEDULE_TZ)
        # "[3, 5]" means a run between 03:00 and 04:00; we start it a few minutes in.
        return [begin.timestamp() + 300] if local.hour in hours else []
    return []


def _statistics(
    rng: random.Random, direction: str, population: int, *, failures: bool, empty: bool
) -> dict[str, dict[str, dict[str, int]]]:
    actions = INGRESS_ACTIONS if direction == "ingress" else EGRESS_ACTIONS
    result: dict[str, dict[str, dict[str, int]]] = {}
    for object_type in OBJECT_TYPES:
        scale = {"User": 1.0, "OrganizationalUnit": 0.05, "Group": 0.03, "GroupMember": 0.6}[object_type]
        per_action: dict[str, dict[str, int]] = {}
        names = actions + (("Exported",) if direction == "egress" and object_type in EXPORT_OBJECT_TYPES else ())
        for action in names:
            if empty:
                per_action[action] = {"Total": 0, "Success": 0, "Failed": 0, "Skipped": 0}
                continue
            if action == "Same":
                total = int(population * scale * rng.uniform(0.5, 1.0))
            elif action == "Deleted":
                total = rng.choice((0, 0, 0, 1, 2))
            else:
                total = int(rng.expovariate(1 / max(0.5, population * scale * 0.01)))
            failed = rng.randint(1, max(1, total // 10)) if failures and total and rng.random() < 0.5 else 0
            skipped = rng.randint(0, total - failed) if total - failed and rng.random() < 0.2 else 0
            per_action[action] = {
                "Total": total,
                "Success": total - failed - skipped,
                "Failed": failed,
                "Skipped": skipped,
            }
        result[object_type] = per_action
    if failures and all(c["Failed"] == 0 for stats in result.values() for c in stats.values()):
        created = result["User"]["Created" if "Created" in result["User"] else "Updated"]
        created["Total"] += 1
        created["Failed"] += 1
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
