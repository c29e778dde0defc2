"""``idaas-sync-exporter pull-config get|set``: an identity provider's inbound-sync configuration as code.

Exit codes: 0 done (or nothing to change), 1 the API failed, 2 invalid input, 3 not confirmed.
"""

from __future__ import annotations

import difflib
import json
import sys
from typing import Any, TextIO

import yaml

from idaas_sync_exporter.api.client import EiamClient
from idaas_sync_exporter.api.errors import ApiError, EiamError, shown_text
from idaas_sync_exporter.api.flatten import flatten
from idaas_sync_exporter.config.validation import load_document
from idaas_sync_exporter.config.yamlfile import YamlFileError
from idaas_sync_exporter.pullconfig.config import PullConfigError, from_response, to_request, validate

EXIT_OK = 0
EXIT_API = 1
EXIT_INPUT = 2
EXIT_NOT_CONFIRMED = 3


def dump_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)


def describe_api_error(exc: EiamError) -> str:
    if isinstance(exc, ApiError):
        # message and request_id are already cut and escaped (see ApiError): repr would escape them twice.
        return f'{exc.action} failed: Code={exc.code} Message="{exc.message}" RequestId={exc.request_id or "-"}'
    return str(exc)


def api_failure(exc: EiamError) -> int:
    print(f"idaas-sync-exporter: error: {describe_api_error(exc)}", file=sys.stderr)
    return EXIT_API


async def read_current(client: EiamClient, instance_id: str, idp_id: str) -> dict[str, Any]:
    """The identity provider's configuration now, in the file format (raises EiamError)."""
    config = await client.get_ud_pull_configuration(instance_id, idp_id)
    return from_response(config.model_dump(by_alias=True, exclude_none=True))


async def get(client: EiamClient, instance_id: str, idp_id: str, output: str, out: TextIO) -> int:
    try:
        current = await read_current(client, instance_id, idp_id)
    except EiamError as exc:
        return api_failure(exc)
    out.write(json.dumps(current, indent=2, ensure_ascii=False) + "\n" if output == "json" else dump_yaml(current))
    return EXIT_OK


def is_directory_provider(kind: str) -> bool:
    """Whether a provider kind (``microsoft:ad:pull``, ``unknown:ldap:pull``) reads an AD or LDAP directory."""
    return bool({"ad", "ldap"} & set(kind.split(":")))


async def provider_kind(client: EiamClient, instance_id: str, idp_id: str) -> str | None:
    """The identity provider's kind as ListIdentityProviders gives it; None when unknown or not listed."""
    async for provider in client.list_identity_providers(instance_id):
        if provider.identity_provider_id == idp_id:
            return provider.provider_kind if provider.identity_provider_type else None
    return None


async def misplaced_ldap_block(client: EiamClient, instance_id: str, idp_id: str, wanted: dict[str, Any]) -> str | None:
    """Why ``wanted``'s LdapUdPullConfig cannot apply to the provider; None when it can, or is absent."""
    if "LdapUdPullConfig" not in wanted:
        return None
    kind = await provider_kind(client, instance_id, idp_id)
    if kind is None or is_directory_provider(kind):
        return None
    return (
        f"LdapUdPullConfig is for AD/LDAP identity providers only, and {idp_id} is of type "
        f"{shown_text(kind, 80)}; remove the LdapUdPullConfig block"
    )


def load_file(path: str) -> dict[str, Any]:
    """Read and validate a configuration file; raises PullConfigError naming every problem."""
    try:
        document = load_document(path)
    except YamlFileError as exc:
        raise PullConfigError([str(exc)]) from None
    return validate(document.data, document)


async def set_(
    client: EiamClient | None,
    instance_id: str,
    idp_id: str,
    path: str,
    *,
    dry_run: bool,
    yes: bool,
    stdin: TextIO,
    out: TextIO,
) -> int:
    try:
        wanted = load_file(path)
    except PullConfigError as exc:
        for problem in exc.problems:
            print(f"idaas-sync-exporter: invalid configuration: {problem}", file=sys.stderr)
        return EXIT_INPUT
    params = {"InstanceId": instance_id, "IdentityProviderId": idp_id, **to_request(wanted)}
    if dry_run:
        out.write("# SetIdentityProviderUdPullConfiguration parameters (not sent)\n")
        for key, value in sorted(flatten(params).items()):
            out.write(f"{key}={value}\n")
        return EXIT_OK
    if client is None:
        raise ValueError("a client is needed unless dry_run")
    try:
        misplaced = await misplaced_ldap_block(client, instance_id, idp_id, wanted)
        if misplaced is not None:
            print(f"idaas-sync-exporter: invalid configuration: {path}: {misplaced}", file=sys.stderr)
            return EXIT_INPUT
        current = await read_current(client, instance_id, idp_id)
    except EiamError as exc:
        return api_failure(exc)
    diff = list(
        difflib.unified_diff(
            dump_yaml(current).splitlines(keepends=True),
            dump_yaml(wanted).splitlines(keepends=True),
            fromfile=f"{idp_id} (current)",
            tofile=f"{idp_id} ({path})",
        )
    )
    if not diff:
        out.write("no changes: the identity provider already has this configuration\n")
        return EXIT_OK
    out.writelines(diff)
    out.flush()
    if not yes:
        if not stdin.isatty():
            print(
                "idaas-sync-exporter: not applied: confirm with --yes (standard input is not a terminal)",
                file=sys.stderr,
            )
            return EXIT_NOT_CONFIRMED
        out.write("Apply this configuration? [y/N] ")
        out.flush()
        if stdin.readline().strip().lower() not in ("y", "yes"):
            out.write("not applied\n")
            return EXIT_NOT_CONFIRMED
    try:
        request_id = await client.set_ud_pull_configuration(instance_id, idp_id, to_request(wanted))
    except EiamError as exc:
        return api_failure(exc)
    out.write(f"applied (RequestId {request_id or '-'})\n")
    return EXIT_OK
