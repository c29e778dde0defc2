"""What a ``simulate`` process serves, from its flags: the instances, the keys it accepts, and STS.

Two ways to name the tenant, never mixed: one AccessKey (``--access-key-id``, a secret from
``--access-key-secret-file``, ``--access-key-secret`` or ``IDAAS_SIMULATOR_ACCESS_KEY_SECRET``,
optionally ``--instance-ids``) that sees every instance, or an ``--accounts`` file
(:mod:`idaas_sync_exporter.simulator.cloud`) of which ``--region`` picks the instances. Every problem is
one line naming the flag and the fix, and never a secret.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from idaas_sync_exporter.api.credentials import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    SECURITY_TOKEN,
    CredentialPart,
    CredentialsError,
    checked_credential,
)
from idaas_sync_exporter.api.endpoint import REGION_PATTERN
from idaas_sync_exporter.config.accounts import KeyFileError, read_key_file
from idaas_sync_exporter.config.settings import check_instance_id, parse_listen_address
from idaas_sync_exporter.files import shown, shown_path
from idaas_sync_exporter.simulator.cloud import Cloud, CloudFileError, load_cloud
from idaas_sync_exporter.simulator.server import AccessKey
from idaas_sync_exporter.simulator.sts import server_tls

DEFAULT_ACCESS_KEY_ID = "simulator"
KEY_ID_VARIABLE = "IDAAS_SIMULATOR_ACCESS_KEY_ID"
SECRET_VARIABLE = "IDAAS_SIMULATOR_ACCESS_KEY_SECRET"  # noqa: S105 - the name of a variable, not its value


class LaunchError(ValueError):
    """Flags that cannot be served; ``problems`` are one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class TenantFlags:
    access_key_id: str | None = None
    access_key_secret: str | None = None
    access_key_secret_file: str | None = None
    security_token: str | None = None
    instance_ids: str | None = None
    accounts: str | None = None
    region: str | None = None
    sts_listen: str | None = None
    sts_tls_cert: str | None = None
    sts_tls_key: str | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    """The instances to simulate (None: ids made from the seed) and the keys accepted for them."""

    instance_ids: list[str] | None
    keys: list[AccessKey]
    cloud: Cloud | None = None
    region: str | None = None
    sts_address: tuple[str, int] | None = None
    sts_tls: ssl.SSLContext | None = None

    def owners(self) -> dict[str, str]:
        """Instance id -> account name, from the accounts file (empty without one)."""
        if self.cloud is None:
            return {}
        return {instance.id: account for account, listed in self.cloud.instances.items() for instance in listed}


def tenant(flags: TenantFlags, environ: Mapping[str, str]) -> Tenant:
    """The tenant the flags name; :class:`LaunchError` otherwise."""
    if flags.accounts is not None:
        return _accounts(flags, flags.accounts, environ)
    return _single_key(flags, environ)


def _single_key(flags: TenantFlags, environ: Mapping[str, str]) -> Tenant:
    for flag, given in (
        ("--region", flags.region),
        ("--sts-listen", flags.sts_listen),
        ("--sts-tls-cert", flags.sts_tls_cert),
        ("--sts-tls-key", flags.sts_tls_key),
    ):
        if given is not None:
            raise LaunchError([f"{flag} needs --accounts FILE (the accounts, roles and regions are in it); add it"])
    instance_ids = _instance_ids(flags.instance_ids)
    key_id = _checked(
        flags.access_key_id or environ.get(KEY_ID_VARIABLE) or DEFAULT_ACCESS_KEY_ID,
        ACCESS_KEY_ID,
        f"--access-key-id ({KEY_ID_VARIABLE})",
    )
    if flags.access_key_secret is not None and flags.access_key_secret_file is not None:
        raise LaunchError(["--access-key-secret and --access-key-secret-file both give the secret; keep one"])
    if flags.access_key_secret_file is not None:
        secret = _checked(_secret_file(flags.access_key_secret_file), ACCESS_KEY_SECRET, "--access-key-secret-file")
    elif flags.access_key_secret:
        secret = _checked(flags.access_key_secret, ACCESS_KEY_SECRET, "--access-key-secret")
    elif environ.get(SECRET_VARIABLE):
        secret = _checked(environ[SECRET_VARIABLE], ACCESS_KEY_SECRET, SECRET_VARIABLE)
    else:
        raise LaunchError(
            [
                "the simulator needs an AccessKey secret to verify signatures: "
                f"set {SECRET_VARIABLE} or pass --access-key-secret-file"
            ]
        )
    token = (
        SecretStr(_checked(flags.security_token, SECURITY_TOKEN, "--security-token")) if flags.security_token else None
    )
    return Tenant(instance_ids, [AccessKey(key_id, SecretStr(secret), token)])


def _accounts(flags: TenantFlags, path: str, environ: Mapping[str, str]) -> Tenant:
    for flag, given in (
        ("--access-key-id", flags.access_key_id),
        ("--access-key-secret", flags.access_key_secret),
        ("--access-key-secret-file", flags.access_key_secret_file),
        ("--security-token", flags.security_token),
        ("--instance-ids", flags.instance_ids),
    ):
        if given is not None:
            raise LaunchError([f"{flag} and --accounts both name the tenant; with --accounts, put it in the file"])
    if flags.region is not None and not REGION_PATTERN.match(flags.region):
        raise LaunchError(
            [f"--region must be a region id such as cn-hangzhou or ap-southeast-1, got {shown(flags.region)}"]
        )
    sts_address, sts_tls = _sts(flags)
    named = f"--accounts {shown_path(path)}"
    try:
        cloud = load_cloud(path, environ)
    except CloudFileError as exc:
        raise LaunchError([f"{named}: {problem}" for problem in exc.problems]) from None
    served = cloud.instance_ids(flags.region)
    if not served and flags.region is None:
        raise LaunchError([f"{named} lists no instances; give its accounts their instances"])
    if not served:
        regions = ", ".join(cloud.regions()) or "none"
        raise LaunchError([f"--region {flags.region}: no instance of {named} is in it; its regions are {regions}"])
    if sts_address is not None and not cloud.roles:
        raise LaunchError([f"--sts-listen: {named} has no roles to assume; give an account roles or leave it out"])
    return Tenant(served, cloud.served_keys(set(served)), cloud, flags.region, sts_address, sts_tls)


def _sts(flags: TenantFlags) -> tuple[tuple[str, int] | None, ssl.SSLContext | None]:
    if flags.sts_listen is None:
        if flags.sts_tls_cert is not None or flags.sts_tls_key is not None:
            raise LaunchError(["--sts-tls-cert and --sts-tls-key are for --sts-listen; add it or leave them out"])
        return None, None
    try:
        address = parse_listen_address(flags.sts_listen)
    except ValueError as exc:
        raise LaunchError([f"--sts-listen {exc}"]) from None
    if flags.sts_tls_cert is None or flags.sts_tls_key is None:
        raise LaunchError(
            ["--sts-listen needs --sts-tls-cert and --sts-tls-key: the credentials library speaks only HTTPS to STS"]
        )
    try:
        return address, server_tls(flags.sts_tls_cert, flags.sts_tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LaunchError(
            [
                f"--sts-tls-cert {shown_path(flags.sts_tls_cert)} and --sts-tls-key {shown_path(flags.sts_tls_key)} "
                f"cannot be loaded ({' '.join(reason.split())}); give a PEM certificate and its unencrypted key"
            ]
        ) from None


def _instance_ids(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if not ids:
        raise LaunchError(["--instance-ids is empty; give comma-separated instance ids or leave it out"])
    for instance_id in ids:
        try:
            check_instance_id(instance_id)
        except ValueError as exc:
            raise LaunchError([f"--instance-ids: {exc}"]) from None
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise LaunchError([f"--instance-ids names {repeated[0]} twice; give each instance once"])
    return ids


def _secret_file(path: str) -> str:
    try:
        return read_key_file(path)
    except KeyFileError as exc:
        # The path is not shown: a secret pasted where its path belongs is a valid path.
        text = str(exc)
        for written in dict.fromkeys((shown_path(path), path)):
            text = text.replace(written, "the file it names")
        raise LaunchError([f"--access-key-secret-file: {text}"]) from None


def _checked(value: str, part: CredentialPart, source: str) -> str:
    try:
        return checked_credential(value, part, source)
    except CredentialsError as exc:
        raise LaunchError([str(exc)]) from None
