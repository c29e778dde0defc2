"""Exporter settings: environment (``IDAAS_EXPORTER_*``), an optional YAML file, and CLI flags.

Precedence, highest first: command-line flag, environment variable, YAML file, default.
Every problem is reported on its own line naming the setting, the value and
what is allowed; the exporter refuses to start until all are fixed.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from idaas_sync_exporter.api.endpoint import REGION_PATTERN, EndpointError, parse_endpoint
from idaas_sync_exporter.api.models import DIRECTIONS, TARGET_ID_CHARS_PER_QUERY, TARGET_IDS_PER_QUERY, TARGET_TYPES
from idaas_sync_exporter.config.validation import Document, Loc, describe, load_document
from idaas_sync_exporter.config.yamlfile import YamlFileError
from idaas_sync_exporter.files import SHOWN_CHARACTERS, shown_name, shown_path
from idaas_sync_exporter.files import shown as shown_value
from idaas_sync_exporter.links import DEFAULT_CONSOLE_URL, DOCS_URL, check_console_url, check_docs_url
from idaas_sync_exporter.logs import LOG_FORMATS, LOG_LEVELS

ENV_PREFIX = "IDAAS_EXPORTER_"
# Registered-range default; see docs/configuration.md "Port".
DEFAULT_PORT = 10129
# Variables with the prefix that are not settings: the image's build revision (see the Dockerfile).
# The image's build revision (the Dockerfile sets it), shown in idaas_exporter_build_info{revision}.
REVISION_VARIABLE = "IDAAS_EXPORTER_REVISION"
OTHER_VARIABLES = frozenset({REVISION_VARIABLE})
# Kubernetes gives each pod variables for every Service in its namespace, named after the Service:
# one named idaas-exporter (or idaas-exporter-x) brings <prefix>SERVICE_HOST, <prefix>PORT and the
# like. They are told apart from misspelled settings by name and by the value Kubernetes writes.
_ADDRESS = r"[0-9A-Fa-f.:]+"
_PROTOCOL = r"(?:tcp|udp|sctp)"
_SERVICE_LINKS = tuple(
    (re.compile(name), re.compile(value))
    for name, value in (
        (r"(?:[A-Z0-9_]+_)?SERVICE_HOST", _ADDRESS),
        (r"(?:[A-Z0-9_]+_)?SERVICE_PORT(?:_[A-Z0-9_]+)?", r"[0-9]+"),
        (r"(?:[A-Z0-9_]+_)?PORT(?:_[0-9]+_(?:TCP|UDP|SCTP))?", _PROTOCOL + r"://\[?" + _ADDRESS + r"\]?:[0-9]+"),
        (r"(?:[A-Z0-9_]+_)?PORT_[0-9]+_(?:TCP|UDP|SCTP)_PROTO", _PROTOCOL),
        (r"(?:[A-Z0-9_]+_)?PORT_[0-9]+_(?:TCP|UDP|SCTP)_PORT", r"[0-9]+"),
        (r"(?:[A-Z0-9_]+_)?PORT_[0-9]+_(?:TCP|UDP|SCTP)_ADDR", _ADDRESS),
    )
)


def _is_service_link(variable: str, value: str) -> bool:
    suffix = variable.removeprefix(ENV_PREFIX)
    return any(name.fullmatch(suffix) and written.fullmatch(value) for name, written in _SERVICE_LINKS)


# One rule for an instance id wherever it enters (variable, flag, config file, pull-config):
# IDaaS ids are short and printable (idaas_ue2jvisn35ea5lmthk267xxxxx); anything else is a mistake.
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
INSTANCE_ID_RULE = "1 to 64 letters, digits, '_' or '-', such as idaas_ue2jvisn35ea5lmthk267xxxxx"
# Far above any tenant we know of, and low enough that a list pasted by mistake (or a hostile one)
# is refused at start instead of costing minutes and gigabytes.
MAX_INSTANCES = 1000
# Target ids are sent in the URL of every window listing, which API fronts refuse past 8 KB: as
# many as the poller's re-reads send at once (ids, and characters once encoded) is what fits.
MAX_TARGET_IDS = TARGET_IDS_PER_QUERY
MAX_TARGET_ID_CHARACTERS = TARGET_ID_CHARS_PER_QUERY
MAX_FILTER_VALUES = 10


def shown(value: Any) -> str:
    """``value`` quoted in a message, at most :data:`SHOWN_CHARACTERS` long, controls escaped; lists by their length.

    Never builds the whole ``repr``: a list of a thousand aliases of one long text would cost gigabytes.
    """
    return shown_value(value, SHOWN_CHARACTERS)


def check_target_ids(target_ids: list[str]) -> list[str]:
    """``target_ids`` when they fit in the URL of one listing; ValueError naming the bound otherwise."""
    if len(target_ids) > MAX_TARGET_IDS:
        raise ValueError(
            f"{len(target_ids)} target ids are more than the {MAX_TARGET_IDS} that fit in the URL of one job "
            "listing (every poll would fail); filter by target_types or directions instead"
        )
    characters = sum(_query_characters(target_id) for target_id in target_ids)
    if characters > MAX_TARGET_ID_CHARACTERS:
        raise ValueError(
            f"the target ids take {characters} characters of the listing URL once encoded, more than the "
            f"{MAX_TARGET_ID_CHARACTERS} that fit (every poll would fail); list fewer or filter by target_types"
        )
    return target_ids


def _query_characters(target_id: str) -> int:
    """Characters one target id adds to a signed query: ``&TargetIds.100=`` and the percent-encoded id."""
    return 16 + len(quote(target_id, safe="-_.~"))


def check_endpoint(value: str) -> str:
    """``value`` when it is an endpoint; ValueError naming the problem otherwise."""
    try:
        parse_endpoint(value)
    except EndpointError as exc:
        # Its message quotes the endpoint whole: cut it, and never repeat a user:password given in it.
        message = str(exc)
        if "@" in value:
            message = message.replace(f"endpoint {value!r}", "the endpoint").replace(repr(value), "the endpoint")
        raise ValueError(message.replace(repr(value), shown(value))) from None
    return value


def check_instance_id(value: str) -> str:
    """``value`` when it is an instance id; ValueError naming the rule otherwise."""
    if not re.fullmatch(INSTANCE_ID_PATTERN, value):
        raise ValueError(f"{shown(value)} is not an instance id: use {INSTANCE_ID_RULE}")
    return value


def one_of(choices: tuple[str, ...]) -> Callable[[list[str]], list[str]]:
    """A check that every item of a list is one of ``choices``; ValueError naming the first that is not."""

    def check(values: list[str]) -> list[str]:
        for item in values:
            if item not in choices:
                raise ValueError(f"{shown(item)} is not one of {', '.join(choices)}")
        return values

    return check


# The types of the values a setting and a config file's instance share: checked by one rule each.
InstanceId = Annotated[str, AfterValidator(check_instance_id)]
# A list of ids is told by its first bad one: a list pasted by mistake is one mistake, not a thousand.
InstanceIds = Annotated[list[str], AfterValidator(lambda ids: [check_instance_id(item) for item in ids])]
TargetTypes = Annotated[list[str], Field(max_length=MAX_FILTER_VALUES), AfterValidator(one_of(TARGET_TYPES))]
Directions = Annotated[list[str], Field(max_length=MAX_FILTER_VALUES), AfterValidator(one_of(DIRECTIONS))]
TargetIds = Annotated[list[str], AfterValidator(check_target_ids)]


def default_state_path() -> str:
    """``/var/lib/idaas-sync-exporter`` when it exists (the container volume), else a user data dir."""
    container = Path("/var/lib/idaas-sync-exporter")
    if container.is_dir():
        return str(container / "state.sqlite3")
    return str(Path.home() / ".local" / "share" / "idaas-sync-exporter" / "state.sqlite3")


# Keys of the config file that are not settings: the accounts and instances (exporter/tenancy.py).
TENANCY_KEYS = frozenset({"accounts", "instances", "allow_inline_secrets"})

# Served by the exporter itself besides the metrics (see exporter/web/server.py).
RESERVED_PATHS = frozenset({"/healthz", "/readyz", "/jobs", "/api/v1/jobs"})


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; ``:PORT`` for all interfaces, as in Go exporters); ValueError otherwise.

    An empty host is returned as ``0.0.0.0``; ``runtime.listen`` serves ``:PORT`` on IPv6 (``::``) as well.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{shown(value)} must be HOST:PORT (or :PORT for all interfaces) with a port 0-65535")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all interfaces


class SettingsError(Exception):
    """Invalid settings; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
        # "inf" and 1e309 parse as floats; no interval or timeout can be infinite.
        allow_inf_nan=False,
    )

    instance_ids: InstanceIds = Field(
        default_factory=list, max_length=MAX_INSTANCES, description="IDaaS instance ids to export, comma-separated"
    )
    region_id: str = Field("cn-hangzhou", description="region of the instances")
    endpoint: str | None = Field(None, description="API endpoint override (host or URL)")
    listen_address: str = Field(f":{DEFAULT_PORT}", description="HOST:PORT of the metrics server")
    telemetry_path: str = Field("/metrics", description="path the metrics are served under")
    poll_interval_seconds: float = Field(60.0, ge=1, le=86400, description="seconds between polls of an instance")
    lookback_seconds: float = Field(86400.0, ge=60, description="cold-start window and in-progress tracking limit")
    overlap_seconds: float = Field(30.0, ge=0, description="re-read window for late-appearing jobs")
    stuck_after_seconds: float = Field(
        7200.0, gt=0, description="age after which an in-progress job is logged as stuck"
    )
    recheck_max_seconds: float = Field(
        600.0, gt=0, le=86400, description="longest an in-progress job behind the window goes unread"
    )
    late_horizon_seconds: float = Field(
        1800.0, ge=0, le=86400, description="how far behind the newest job late-appearing jobs are looked for"
    )
    target_refresh_seconds: float = Field(
        900.0, ge=10, le=86400, description="seconds between listings of target names and inbound-sync configurations"
    )
    state_path: str = Field(default_factory=default_state_path, description="SQLite state file; empty = in memory")
    target_types: TargetTypes = Field(default_factory=list, description="only these target types")
    directions: Directions = Field(default_factory=list, description="only these directions")
    target_ids: TargetIds = Field(
        default_factory=list, description=f"only these target ids (at most {MAX_TARGET_IDS}: they are sent in each URL)"
    )
    access_key_id: str | None = Field(None, description="AccessKey id (else the default credential chain)")
    access_key_secret: SecretStr | None = Field(None, description="AccessKey secret")
    security_token: SecretStr | None = Field(None, description="STS token for the AccessKey")
    requests_per_second: float = Field(
        5.0, gt=0, le=100, description="API request rate limit per account, shared by its instances"
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, le=300, description="seconds to connect to the API")
    read_timeout_seconds: float = Field(10.0, gt=0, le=300, description="seconds to wait for API response data")
    api_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="seconds one API request may take in all, from sending to the last byte"
    )
    poll_timeout_seconds: float = Field(
        900.0, ge=10, le=86400, description="seconds one poll may spend reading before it fails"
    )
    web_max_connections: int = Field(
        256, ge=4, le=10000, description="open connections to the metrics server; the longest idle is closed past it"
    )
    web_config_file: str | None = Field(
        None, description="exporter-toolkit web config (TLS, client certificates, basic auth, headers)"
    )
    shard_count: int = Field(1, ge=1, le=1000, description="replicas that split the instances between them")
    shard_index: int | None = Field(
        None, ge=0, lt=1000, description="this replica's shard, 0-based (default: the StatefulSet pod ordinal)"
    )
    recent_jobs: int = Field(
        100, ge=0, le=5000, description="finished jobs per instance kept for /jobs and /api/v1/jobs (in the state file)"
    )
    console_job_url: str = Field(
        DEFAULT_CONSOLE_URL,
        description="link of each job on /jobs, with {instance_id} {job_id} {target_type} {target_id} {direction}",
    )
    docs_url: str = Field(
        DOCS_URL, description="base URL of the documentation the pages link to (a mirror or fork's docs/ folder)"
    )
    log_level: str = Field("info", description=f"one of {', '.join(LOG_LEVELS)}")
    log_format: str = Field("logfmt", description=f"one of {', '.join(LOG_FORMATS)}")

    @field_validator("instance_ids", "target_types", "directions", "target_ids", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{shown(value)} is not one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.lower() not in LOG_FORMATS:
            raise ValueError(f"{shown(value)} is not one of {', '.join(LOG_FORMATS)}")
        return value.lower()

    @field_validator("region_id")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_PATTERN.match(value):
            raise ValueError(f"{shown(value)} is not a region id; use e.g. cn-hangzhou or ap-southeast-1")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value:
            check_endpoint(value)
        return value or None

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("shard_index")
    @classmethod
    def _shard_index(cls, value: int | None, info: ValidationInfo) -> int | None:
        count = info.data.get("shard_count")
        if value is not None and isinstance(count, int) and value >= count:
            raise ValueError(f"must be below shard_count ({count}): 0 to {count - 1}")
        return value

    @field_validator("console_job_url")
    @classmethod
    def _console_url(cls, value: str) -> str:
        return check_console_url(value)

    @field_validator("docs_url")
    @classmethod
    def _docs_url(cls, value: str) -> str:
        return check_docs_url(value)

    @field_validator("telemetry_path")
    @classmethod
    def _telemetry_path(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be a path such as /metrics: segments of letters, digits, '.', '_', '~' or '-'")
        if value in RESERVED_PATHS:
            raise ValueError(f"{value} is the exporter's own endpoint; choose another path")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        has_secret = self.access_key_secret is not None and bool(self.access_key_secret.get_secret_value())
        if bool(self.access_key_id) != has_secret:
            raise ValueError(
                "access_key_id and access_key_secret must be set together (or neither, to use the credential chain)"
            )
        if self.security_token is not None and not self.access_key_id:
            raise ValueError("security_token needs access_key_id and access_key_secret")
        return self

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_listen_address(self.listen_address)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the file, the environment and the flags itself and passes the
        # result as init values. pydantic-settings' own sources would merge them too, but they
        # do not record where each value came from, and a bad value must be reported under the
        # name the user gave it by (the flag, the variable, or the key in the file).
        return (init_settings,)


def _env_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    return values


def read_config_document(path: str) -> Document:
    """The config file, positions kept; :class:`SettingsError` if it cannot be read or is not a mapping."""
    try:
        document = load_document(path)
    except YamlFileError as exc:
        raise SettingsError([f"config: {exc}"]) from None
    if document.data is None:
        return Document(document.name, {}, document.marked)
    if not isinstance(document.data, dict):
        raise SettingsError([f"config: {shown_path(path)} must be a mapping of setting names to values"])
    return document


def _yaml_values(
    document: Document, tenancy_keys: list[str] | None = None, spelled_as: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of the file by their own names; ``spelled_as`` gets the key each was written as."""
    path = document.name or "config"
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in document.data.items():
        if key in TENANCY_KEYS:
            if tenancy_keys is not None:
                tenancy_keys.append(str(key))
            continue
        name = str(key).lower().replace("-", "_")
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX) :]
        if name in spelled:
            # The reader refuses a key given twice; two spellings of one setting would still
            # let the later silently win.
            raise SettingsError(
                [
                    f"config: {path}: {spelled[name]} and {shown_name(key)} are the same setting "
                    f"({shown_name(name)}); keep one"
                ]
            )
        spelled[name] = shown_name(key)
        if spelled_as is not None:
            spelled_as[name] = key
        values[name] = [str(v) for v in value] if isinstance(value, list) else value
    return values


def closest_setting(name: str) -> str | None:
    """The setting ``name`` most likely misspells, if any is close."""
    if len(name) > 100:
        return None  # no setting is that long, and comparing costs time in the square of the length
    matches = difflib.get_close_matches(name.lower(), list(Settings.model_fields), n=1, cutoff=0.75)
    return matches[0] if matches else None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One problem per ``IDAAS_EXPORTER_*`` variable that is no setting: a misspelling must not run with defaults."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    problems = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in known:
            continue
        if _is_service_link(variable, environ[variable]):
            continue
        # The name, never the value (it may be a secret); a name too is cut, as anything given.
        name = variable if re.fullmatch(r"[A-Za-z0-9_]{1,100}", variable) else shown(variable)
        closest = closest_setting(variable.removeprefix(ENV_PREFIX))
        hint = f"did you mean {ENV_PREFIX}{closest.upper()}?" if closest else "no setting has that name;"
        problems.append(f"{name}: unknown variable; {hint} rename or unset it (settings: docs/configuration.md)")
    return problems


def flag_name(setting: str) -> str:
    """The command-line flag of a setting: ``poll_interval_seconds`` -> ``--poll-interval-seconds``."""
    return "--" + setting.replace("_", "-")


def load_settings(
    config_file: str | Document | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    flag_names: dict[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    ignored: frozenset[str] = frozenset(),
    ignored_given: list[str] | None = None,
) -> Settings:
    """Merge defaults < YAML < environment < flags (``overrides``) and validate; raises :class:`SettingsError`.

    Each problem is reported under the name the user gave the value by: the flag (as named
    in ``flag_names`` when it was given under an alias), the environment variable, or the
    key in the YAML file. Settings named in ``ignored`` are dropped from every source before
    validation (the demo replaces the tenant); the names they were given by are appended to
    ``ignored_given``, so the caller can say which it ignored.
    """
    problems = unknown_variables(os.environ)
    merged: dict[str, Any] = dict(defaults or {})
    given_as: dict[str, str] = {}
    file = Document(None, {})
    spelled_as: dict[str, Any] = {}
    tenancy_keys: list[str] = []
    if config_file:
        # A document already read (the command line reads the file once for settings and tenancy).
        file = config_file if isinstance(config_file, Document) else read_config_document(config_file)
        merged.update(_yaml_values(file, tenancy_keys, spelled_as))
    for name, value in _env_values().items():
        merged[name] = value
        given_as[name] = ENV_PREFIX + name.upper()
    for name, value in (overrides or {}).items():
        if value is not None:
            merged[name] = value
            given_as[name] = (flag_names or {}).get(name) or flag_name(name)
    if ignored_given is not None:
        # The file's accounts and instances describe the tenant too.
        ignored_given.extend(f"{file.name}: {key}" for key in tenancy_keys if key in ignored)
    for name in sorted(ignored):
        if ignored_given is not None and (name in given_as or name in spelled_as):
            ignored_given.append(given_as.get(name) or f"{file.name}: {shown_name(name)}")
        merged.pop(name, None)
    # A value the file gave is named by its position in the file; one a variable or flag gave, by that.
    from_file: dict[Hashable, Hashable] = {
        name: key for name, key in spelled_as.items() if name not in given_as and name in merged
    }
    document = Document(file.name, merged, file.marked, from_file)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(problems + _describe(exc, document, given_as)) from None
    if problems:
        raise SettingsError(problems)
    return settings


def _describe(exc: ValidationError, document: Document, given_as: Mapping[str, str]) -> list[str]:
    """The problems of the settings, each named the way its value was given: flag, variable or file key."""

    def head(path: Loc) -> str | None:
        name = str(path[0]) if path else ""
        if name in document.keys:
            return None  # the file's position and key
        return given_as.get(name) or (f"{ENV_PREFIX}{name.upper()}" if name else "settings")

    def show_value(path: Loc, error: ErrorDetails) -> Loc | None:
        # The setting's value as given, whichever item the problem is with; never a secret's, nor an
        # endpoint's that carries a user name or password.
        name = str(path[0]) if path else ""
        present, value = document.value(path[:1])
        if error["type"] == "extra_forbidden" or not present or "secret" in name or "token" in name:
            return None
        if name == "endpoint" and "@" in str(value):
            return None
        return path[:1]

    def explain(path: Loc, error: ErrorDetails) -> str | None:
        if error["type"] != "extra_forbidden":
            return None
        closest = closest_setting(str(path[0]))
        hint = f"did you mean {closest}? " if closest else ""
        return f"unknown setting; {hint}see docs/configuration.md"

    return describe(
        exc,
        document,
        show_value=show_value,
        explain=explain,
        head=head,
    )
