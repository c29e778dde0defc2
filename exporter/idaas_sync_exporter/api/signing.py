"""ACS3-HMAC-SHA256 request signing, as Alibaba Cloud's V3 signature specifies.

The same functions serve the client (to sign) and the simulator (to verify), so
both sides agree byte for byte; tests pin them to vectors produced by the
official SDK.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding over UTF-8: only ``A-Za-z0-9-_.~`` stay literal."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    # Keys sort by code point, so "TargetIds.10" precedes "TargetIds.2",
    # exactly as the server canonicalizes.
    return "&".join(f"{key}={percent_encode(params[key])}" for key in sorted(params))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """Return (canonical header block, signed header names) for ``headers``."""
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value.strip())
    names = sorted(lowered)
    block = "".join(f"{name}:{','.join(sorted(lowered[name]))}\n" for name in names)
    return block, ";".join(names)


@dataclass(frozen=True, slots=True)
class SignedParts:
    """Every intermediate of one signature, kept for tests and diagnostics."""

    canonical_request: str
    string_to_sign: str
    signature: str
    signed_headers: str

    def authorization(self, access_key_id: str) -> str:
        return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={self.signed_headers},Signature={self.signature}"


def sign(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body_sha256: str,
    access_key_secret: str,
) -> SignedParts:
    """Sign a request; ``headers`` must be exactly the headers to be signed."""
    header_block, signed_headers = canonical_headers(headers)
    canonical_request = "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            header_block,
            signed_headers,
            body_sha256,
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{digest}"
    signature = hmac.new(access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return SignedParts(canonical_request, string_to_sign, signature, signed_headers)


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse an ``Authorization`` header; ``None`` when it is not ACS3 or incomplete."""
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    fields: dict[str, str] = {}
    for part in value[len(prefix) :].split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    try:
        credential = fields["Credential"]
        signed = fields["SignedHeaders"]
        signature = fields["Signature"]
    except KeyError:
        return None
    if not credential or not signed or not signature:
        return None
    return ParsedAuthorization(credential, tuple(signed.split(";")), signature)
