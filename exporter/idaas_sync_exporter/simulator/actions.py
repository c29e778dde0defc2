"""The simulated EIAM actions: parameter validation, paging and response shapes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from idaas_sync_exporter.api.models import DIRECTIONS, TARGET_TYPES
from idaas_sync_exporter.api.pullfile import SCHEMA as PULL_CONFIG_SCHEMA
from idaas_sync_exporter.simulator.world import JobPlan, World

MAX_PAGE = 100
ENABLED_DISABLED = ("enabled", "disabled")
_STATUSES = ("pending", "running", "failed", "partial_success", "success")
# Filters.N.Key values the simulator understands, mapped onto job fields.
_FILTER_KEYS = {
    "status": "status",
    "direction": "direction",
    "targettype": "target_type",
    "target_type": "target_type",
    "targetid": "target_id",
    "target_id": "target_id",
    "triggertype": "trigger_type",
    "trigger_type": "trigger_type",
}


class ActionError(Exception):
    """An API error answer: HTTP status, Code and Message, as the real service sends them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _missing(name: str) -> ActionError:
    return ActionError(
        400,
        "MissingParameter",
        f"The input parameter {name} that is mandatory for processing this request is not supplied.",
    )


def _invalid(name: str, detail: str) -> ActionError:
    return ActionError(400, "InvalidParameter", f"The specified parameter {name} is invalid: {detail}")


def _int_param(params: Mapping[str, Any], name: str, *, low: int | None = None, high: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise _invalid(name, f"{raw!r} is not an integer") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise _invalid(name, f"{value} is out of range [{low}, {high}]")
    return value


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise _invalid(name, f"{raw!r} is not one of {', '.join(allowed)}")
    return str(raw)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Actions:
    """Dispatches one request's parameters (already unflattened) to the world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "ListInstances": self.list_instances,
            "ListSynchronizationJobs": self.list_synchronization_jobs,
            "GetSynchronizationJob": self.get_synchronization_job,
            "ListIdentityProviders": self.list_identity_providers,
            "ListApplications": self.list_applications,
            "GetIdentityProviderUdPullConfiguration": self.get_pull_configuration,
            "SetIdentityProviderUdPullConfiguration": self.set_pull_configuration,
        }

    def known(self, action: str) -> bool:
        return action in self._handlers

    def handle(
        self, action: str, params: Mapping[str, Any], *, visible: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """The answer to ``action``; ``visible`` limits ListInstances to the instances the caller's account owns."""
        if action == "ListInstances":
            return self.list_instances(params, visible)
        return self._handlers[action](params)

    # -- helpers ----------------------------------------------------------------

    def _instance_id(self, params: Mapping[str, Any]) -> str:
        instance_id = params.get("InstanceId")
        if not instance_id:
            raise _missing("InstanceId")
        if self.world.instance(str(instance_id)) is None:
            raise ActionError(404, "EntityNotExists.Instance", f"The instance {instance_id} does not exist.")
        return str(instance_id)

    def _page(self, params: Mapping[str, Any]) -> tuple[int, int]:
        number = _int_param(params, "PageNumber", low=1) or 1
        size = _int_param(params, "PageSize", low=1, high=MAX_PAGE) or 20
        return number, size

    # -- actions --------------------------------------------------------------------

    def list_instances(self, params: Mapping[str, Any], visible: frozenset[str] | None = None) -> dict[str, Any]:
        wanted = {str(v) for v in _as_list(params.get("InstanceIds"))}
        rows = [
            {
                "InstanceId": state.instance_id,
                "Description": state.description,
                "Status": "running",
                "CreateTime": 1_700_000_000_000,
                "DefaultEndpoint": {"Endpoint": f"{state.instance_id[6:14]}.aliyunidaas.com", "Status": "resolved"},
            }
            for state in self.world.instances.values()
            if (not wanted or state.instance_id in wanted) and (visible is None or state.instance_id in visible)
        ]
        number, size = self._page(params)
        return {"TotalCount": len(rows), "Instances": rows[(number - 1) * size : number * size]}

    def list_identity_providers(self, params: Mapping[str, Any]) -> dict[str, Any]:
        state = self.world.instances[self._instance_id(params)]
        direction = _choice(params, "Direction", ("pull", "push"))
        rows = []
        for provider in state.providers:
            inbound = provider.provider_type.endswith(":pull")
            if direction == "pull" and not inbound:
                continue
            if direction == "push":
                continue  # the simulated tenant has no outbound identity providers
            config = state.pull_configs.get(provider.identity_provider_id) or {}
            rows.append(
                {
                    "InstanceId": state.instance_id,
                    "IdentityProviderId": provider.identity_provider_id,
                    "IdentityProviderName": provider.name,
                    "IdentityProviderType": provider.provider_type,
                    "UdPullStatus": "enabled" if inbound else "disabled",
                    "UdPushStatus": "disabled",
                    "IncrementalCallbackStatus": config.get("IncrementalCallbackStatus", "disabled"),
                    "PeriodicSyncStatus": config.get("PeriodicSyncStatus", "disabled"),
                    "AuthnStatus": "enabled",
                    "CreateTime": 1_700_000_000_000,
                    "UpdateTime": 1_700_000_000_000,
                }
            )
        number, size = self._page(params)
        return {"TotalCount": len(rows), "IdentityProviders": rows[(number - 1) * size : number * size]}

    def list_applications(self, params: Mapping[str, Any]) -> dict[str, Any]:
        state = self.world.instances[self._instance_id(params)]
        rows = [
            {
                "InstanceId": state.instance_id,
                "ApplicationId": app.application_id,
                "ApplicationName": app.name,
                "ApplicationSourceType": "urn:alibaba:idaas:app:source:standard",
                "ApplicationCreationType": "user_custom",
                "ApplicationIdentityType": "application",
                "SsoType": "saml2",
                "Status": "enabled",
                "CreateTime": 1_700_000_000_000,
                "UpdateTime": 1_700_000_000_000,
            }
            for app in state.applications
        ]
        number, size = self._page(params)
        return {"TotalCount": len(rows), "Applications": rows[(number - 1) * size : number * size]}

    def list_synchronization_jobs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = self._instance_id(params)
        start = _int_param(params, "StartTime", low=0)
        end = _int_param(params, "EndTime", low=0)
        status = _choice(params, "Status", _STATUSES)
        direction = _choice(params, "Direction", DIRECTIONS)
        target_type = _choice(params, "TargetType", TARGET_TYPES)
        target_ids = {str(v) for v in _as_list(params.get("TargetIds"))}
        filters = self._filters(params.get("Filters"))
        max_results = _int_param(params, "MaxResults", low=1, high=MAX_PAGE)
        token = params.get("NextToken")
        now_ms = self.world.now_ms()
        # StartTime and EndTime are the API's times; the world's may run on another timeline.
        api_ms = self.world.api_ms

        def matches(plan: JobPlan) -> bool:
            started = api_ms(plan.start_ms)
            if (start is not None and started < start) or (end is not None and started > end):
                return False
            if (direction and plan.direction != direction) or (target_type and plan.target_type != target_type):
                return False
            if target_ids and plan.target_id not in target_ids:
                return False
            job_status = plan.status_at(now_ms) if status or "status" in filters else ""
            if status and job_status != status:
                return False
            return all(
                (job_status if field == "status" else getattr(plan, field)) in values
                for field, values in filters.items()
            )

        with self.world.reading(instance_id, now_ms) as (jobs, visible):
            # Both time filters apply to the job's start time, so the oldest wanted job
            # can be found by bisection instead of a scan.
            lowest = _first_at_or_after(jobs, start, visible, api_ms) if start is not None else 0
            if max_results is not None or token:
                fingerprint = _fingerprint(instance_id, start, end, status, direction, target_type, target_ids, filters)
                return _token_page(
                    jobs, lowest, visible, matches, params, max_results or 20, fingerprint, now_ms, api_ms
                )
            number, size = self._page(params)
            matching = [plan for plan in reversed(jobs[lowest:visible]) if matches(plan)]
        rows = [plan.to_wire(now_ms, api_ms) for plan in matching[(number - 1) * size : number * size]]
        return {"TotalCount": len(matching), "SynchronizationJobs": rows}

    def _filters(self, raw: Any) -> dict[str, set[str]]:
        filters: dict[str, set[str]] = {}
        for index, item in enumerate(_as_list(raw), start=1):
            if not isinstance(item, dict) or not item.get("Key"):
                raise _invalid(f"Filters.{index}.Key", "a filter needs a Key")
            key = str(item["Key"])
            field = _FILTER_KEYS.get(key.lower())
            if field is None:
                raise _invalid(f"Filters.{index}.Key", f"unsupported filter key {key!r}")
            filters.setdefault(field, set()).update(str(v) for v in _as_list(item.get("Values")))
        return filters

    def get_synchronization_job(self, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = self._instance_id(params)
        job_id = params.get("SynchronizationJobId")
        if not job_id:
            raise _missing("SynchronizationJobId")
        now_ms = self.world.now_ms()
        plan = self.world.job(instance_id, str(job_id), now_ms)
        if plan is None:
            raise ActionError(
                404, "EntityNotExists.SynchronizationJob", f"The synchronization job {job_id} does not exist."
            )
        wire = plan.to_wire(now_ms, self.world.api_ms)
        wire.pop("Description", None)  # GetSynchronizationJob does not return it
        return {"SynchronizationJob": wire}

    def _provider_id(self, params: Mapping[str, Any], instance_id: str) -> str:
        idp_id = params.get("IdentityProviderId")
        if not idp_id:
            raise _missing("IdentityProviderId")
        state = self.world.instances[instance_id]
        if not any(p.identity_provider_id == idp_id for p in state.providers):
            raise ActionError(
                404, "EntityNotExists.IdentityProvider", f"The identity provider {idp_id} does not exist."
            )
        return str(idp_id)

    def get_pull_configuration(self, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = self._instance_id(params)
        idp_id = self._provider_id(params, instance_id)
        config = self.world.pull_config(instance_id, idp_id)
        if config is None:
            raise ActionError(
                400,
                "OperationNotSupported.IdentityProvider",
                f"The identity provider {idp_id} does not support inbound synchronization.",
            )
        return {"UdPullConfiguration": config}

    def set_pull_configuration(self, params: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = self._instance_id(params)
        idp_id = self._provider_id(params, instance_id)
        if self.world.pull_config(instance_id, idp_id) is None:
            raise ActionError(
                400,
                "OperationNotSupported.IdentityProvider",
                f"The identity provider {idp_id} does not support inbound synchronization.",
            )
        config = validate_pull_configuration(params)
        config["InstanceId"] = instance_id
        config["IdentityProviderId"] = idp_id
        self.world.set_pull_config(instance_id, idp_id, config)
        return {}


# The parameters the API document lists, as the exporter's pull-config file schema names them.
_TOP_LEVEL = {"InstanceId", "IdentityProviderId", *PULL_CONFIG_SCHEMA}
_NESTED = {name: set(fields) for name, fields in PULL_CONFIG_SCHEMA.items() if isinstance(fields, dict)}


def validate_pull_configuration(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a SetIdentityProviderUdPullConfiguration request as the API document states."""
    for key in params:
        if key not in _TOP_LEVEL:
            raise _invalid(key, "unknown parameter")
    if not params.get("IncrementalCallbackStatus"):
        raise _missing("IncrementalCallbackStatus")
    config: dict[str, Any] = {}
    for name in ("IncrementalCallbackStatus", "GroupSyncStatus", "PeriodicSyncStatus"):
        value = _choice(params, name, ENABLED_DISABLED)
        if value is not None:
            config[name] = value
    for name, allowed in _NESTED.items():
        nested = params.get(name)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise _invalid(name, "must be an object")
        unknown = [key for key in nested if key not in allowed]
        if unknown:
            raise _invalid(f"{name}.{unknown[0]}", "unknown parameter")
        config[name] = dict(nested)
    if "PeriodicSyncConfig" in config:
        _check_periodic(config["PeriodicSyncConfig"])
    rule = config.get("PullProtectedRule") or {}
    for key, raw in list(rule.items()):
        rule[key] = _int_param({f"PullProtectedRule.{key}": raw}, f"PullProtectedRule.{key}", low=0)
    scope = config.get("UdSyncScopeConfig")
    if scope is not None and "SourceScopes" in scope:
        scope["SourceScopes"] = [str(v) for v in _as_list(scope["SourceScopes"])]
    return config


def _check_periodic(periodic: dict[str, Any]) -> None:
    kind = periodic.get("PeriodicSyncType")
    if kind not in (None, "cron", "time"):
        raise _invalid("PeriodicSyncConfig.PeriodicSyncType", f"{kind!r} is not one of cron, time")
    if kind == "cron" and not periodic.get("PeriodicSyncCron"):
        raise _missing("PeriodicSyncConfig.PeriodicSyncCron")
    if kind == "time":
        times = _as_list(periodic.get("PeriodicSyncTimes"))
        if not times:
            raise _missing("PeriodicSyncConfig.PeriodicSyncTimes")
        name = "PeriodicSyncConfig.PeriodicSyncTimes"
        periodic["PeriodicSyncTimes"] = [
            _int_param({f"{name}.{i}": t}, f"{name}.{i}", low=0, high=23) for i, t in enumerate(times, start=1)
        ]


def _token_page(
    jobs: list[JobPlan],
    lowest: int,
    visible: int,
    matches: Callable[[JobPlan], bool],
    params: Mapping[str, Any],
    limit: int,
    fingerprint: str,
    now_ms: int,
    api_ms: Callable[[int], int],
) -> dict[str, Any]:
    """One NextToken page of ``jobs[lowest:visible]``, newest first; TotalCount on the first page only (as the API)."""
    token = params.get("NextToken")
    position = visible  # exclusive upper bound, walking newest first
    if token:
        after = _decode_token(str(token), fingerprint)
        position = max(lowest, _first_at_or_after_key(jobs, after, visible))
        if params.get("DuplicateBoundary"):
            # A fault for tests: the previous page's last job comes back on this page.
            position = min(visible, position + 1)
    page: list[dict[str, Any]] = []
    last: JobPlan | None = None
    index = position - 1
    while index >= lowest and len(page) < limit:
        plan = jobs[index]
        if matches(plan):
            page.append(plan.to_wire(now_ms, api_ms))
            last = plan
        index -= 1
    body: dict[str, Any] = {"SynchronizationJobs": page}
    if not token:
        body["TotalCount"] = sum(1 for i in range(lowest, visible) if matches(jobs[i]))
    if last is not None and index >= lowest and any(matches(jobs[i]) for i in range(index, lowest - 1, -1)):
        # The job's own position, not its wire StartTime: a hostile override (a job dated in the
        # future) would otherwise send the next page back to the same job, and the same token.
        body["NextToken"] = _encode_token((last.start_ms, last.job_id), fingerprint)
    return body


def _first_at_or_after(jobs: list[JobPlan], start_ms: int, hi: int, api_ms: Callable[[int], int]) -> int:
    """The first of ``jobs[:hi]`` the API reports as started at or after ``start_ms`` (the mapping keeps the order)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if api_ms(jobs[mid].start_ms) < start_ms:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _first_at_or_after_key(jobs: list[JobPlan], key: tuple[int, str], hi: int) -> int:
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if (jobs[mid].start_ms, jobs[mid].job_id) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _fingerprint(*parts: Any) -> str:
    text = json.dumps([sorted(p) if isinstance(p, set) else p for p in parts], default=_jsonable, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value).__name__)


def _encode_token(key: tuple[int, str], fingerprint: str) -> str:
    payload = json.dumps({"s": key[0], "i": key[1], "f": fingerprint}, separators=(",", ":"))
    return "NT" + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[int, str]:
    if not token.startswith("NT"):
        raise _invalid("NextToken", "the token is malformed")
    try:
        raw = token[2:]
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        key = (int(payload["s"]), str(payload["i"]))
        matches = payload["f"] == fingerprint
    except (ValueError, KeyError, TypeError):
        raise _invalid("NextToken", "the token is malformed") from None
    if not matches:
        raise _invalid("NextToken", "the token belongs to a request with other filters")
    return key
