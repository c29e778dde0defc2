"""The exporter-toolkit web configuration file: TLS, client certificates, basic auth, headers.

Same format as Prometheus' own exporters (``--web.config.file``)::

    tls_server_config:
      cert_file: /etc/exporter/tls.crt
      key_file: /etc/exporter/tls.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: /etc/exporter/ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash

The file is read at start (an invalid file stops the exporter) and re-read when it
changes; an invalid change is logged and the last good configuration stays in force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from exporter.yamlfile import YamlFileError, read_yaml

log = logging.getLogger(__name__)

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
ALLOWED_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
# Go's names of the TLS 1.2 cipher suites exporter-toolkit accepts, as OpenSSL names them.
# (TLS 1.3 suites are not configurable, in Go as here.)
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
# Go's curve names; Python's ssl module can pin one curve, not order several.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}


class WebConfigError(ValueError):
    """The web configuration file is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class WebConfig:
    path: str | None
    tls: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # user -> bcrypt hash (bytes); never logged or shown
    users: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.users)

    def __repr__(self) -> str:
        return f"WebConfig(path={self.path!r}, tls={self.tls is not None}, users={sorted(self.users)})"


def load(path: str) -> WebConfig:
    try:
        data = read_yaml(path) or {}
    except YamlFileError as exc:
        raise WebConfigError(f"web config: {exc}") from None
    if not isinstance(data, dict):
        raise WebConfigError(f"web config {path}: must be a mapping with tls_server_config, basic_auth_users, ...")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise WebConfigError(f"web config {path}: unknown key {sorted(unknown)[0]!r} (allowed: {sorted(_TOP_KEYS)})")
    base = Path(path).parent
    tls = _tls(data.get("tls_server_config"), base, path)
    headers = _headers(data.get("http_server_config"), path)
    users = _users(data.get("basic_auth_users"), path)
    return WebConfig(path, tls, headers, users)


def _resolve(base: Path, value: Any, key: str, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"web config {path}: tls_server_config.{key} must be a file path")
    resolved = Path(value) if os.path.isabs(value) else base / value
    if not resolved.is_file():
        raise WebConfigError(f"web config {path}: tls_server_config.{key}: {resolved} does not exist")
    return str(resolved)


def _tls(raw: Any, base: Path, path: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WebConfigError(f"web config {path}: tls_server_config must be a mapping")
    unknown = set(raw) - _TLS_KEYS
    if unknown:
        raise WebConfigError(f"web config {path}: unknown key tls_server_config.{sorted(unknown)[0]}")
    if not raw.get("cert_file") or not raw.get("key_file"):
        raise WebConfigError(f"web config {path}: tls_server_config needs both cert_file and key_file")
    tls: dict[str, Any] = {
        "cert_file": _resolve(base, raw["cert_file"], "cert_file", path),
        "key_file": _resolve(base, raw["key_file"], "key_file", path),
    }
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"web config {path}: tls_server_config.client_auth_type {auth!r} is not one of {sorted(CLIENT_AUTH_TYPES)}"
        )
    tls["client_auth_type"] = auth
    if raw.get("client_ca_file"):
        tls["client_ca_file"] = _resolve(base, raw["client_ca_file"], "client_ca_file", path)
    elif auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        raise WebConfigError(f"web config {path}: client_auth_type {auth} needs tls_server_config.client_ca_file")
    for key in ("min_version", "max_version"):
        if key in raw:
            if raw[key] not in TLS_VERSIONS:
                raise WebConfigError(
                    f"web config {path}: tls_server_config.{key} {raw[key]!r} is not one of {sorted(TLS_VERSIONS)}"
                )
            tls[key] = raw[key]
    if auth == "RequireAnyClientCert":
        # Python's ssl module cannot ask for a certificate without verifying it, so without a CA
        # every client would be refused in the handshake.
        raise WebConfigError(
            f"web config {path}: client_auth_type RequireAnyClientCert (a certificate that is not verified) is not "
            "supported; use RequireAndVerifyClientCert with tls_server_config.client_ca_file"
        )
    tls.update(_tls_options(raw, auth, path))
    return tls


def _tls_options(raw: dict[str, Any], auth: str, path: str) -> dict[str, Any]:
    """cipher_suites, prefer_server_cipher_suites, curve_preferences, client_allowed_sans, checked."""
    options: dict[str, Any] = {}
    where = f"web config {path}: tls_server_config"
    suites = raw.get("cipher_suites")
    if suites is not None:
        if not isinstance(suites, list) or not suites or not all(isinstance(name, str) for name in suites):
            raise WebConfigError(f"{where}.cipher_suites must be a non-empty list of cipher suite names")
        unknown = [name for name in suites if name not in CIPHER_SUITES]
        if unknown:
            raise WebConfigError(f"{where}.cipher_suites: {unknown[0]!r} is not one of {sorted(CIPHER_SUITES)}")
        options["cipher_suites"] = [CIPHER_SUITES[name] for name in suites]
    prefer = raw.get("prefer_server_cipher_suites")
    if prefer is not None:
        if not isinstance(prefer, bool):
            raise WebConfigError(f"{where}.prefer_server_cipher_suites must be true or false")
        options["prefer_server_cipher_suites"] = prefer
    curves = raw.get("curve_preferences")
    if curves is not None:
        if not isinstance(curves, list) or len(curves) != 1 or curves[0] not in CURVES:
            raise WebConfigError(
                f"{where}.curve_preferences must name exactly one of {sorted(CURVES)} "
                "(Python's ssl module pins one curve and cannot order several)"
            )
        options["curve"] = CURVES[curves[0]]
    sans = raw.get("client_allowed_sans")
    if sans is not None:
        if not isinstance(sans, list) or not sans or not all(isinstance(name, str) and name for name in sans):
            raise WebConfigError(f"{where}.client_allowed_sans must be a non-empty list of names")
        if auth not in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven"):
            raise WebConfigError(
                f"{where}.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert "
                "(the names of an unverified certificate prove nothing)"
            )
        options["client_allowed_sans"] = frozenset(sans)
    return options


def allowed_client(tls: dict[str, Any] | None, peercert: dict[str, Any] | None) -> bool:
    """Whether a verified client certificate carries one of ``client_allowed_sans`` (True when unset).

    As in exporter-toolkit, any subject alternative name counts: DNS name, IP address, e-mail or URI.
    """
    allowed = (tls or {}).get("client_allowed_sans")
    if not allowed:
        return True
    names = {str(value) for _, value in (peercert or {}).get("subjectAltName", ())}
    return bool(names & allowed)


def _headers(raw: Any, path: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"web config {path}: http_server_config must be a mapping")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise WebConfigError(f"web config {path}: http_server_config.headers must be a mapping")
    for name, value in headers.items():
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(
                f"web config {path}: http_server_config.headers.{name} is not one of {list(ALLOWED_HEADERS)}"
            )
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise WebConfigError(f"web config {path}: http_server_config.headers.{name} must be a one-line string")
    return {str(k): str(v) for k, v in headers.items()}


def _users(raw: Any, path: str) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"web config {path}: basic_auth_users must map user names to bcrypt hashes")
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"web config {path}: basic_auth_users: invalid user name {user!r}")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(
                f"web config {path}: basic_auth_users.{user} must be a bcrypt hash ($2y$...), not a password"
            )
        encoded = hashed.encode()
        try:
            bcrypt.checkpw(b"", encoded)
        except ValueError:
            raise WebConfigError(f"web config {path}: basic_auth_users.{user} is not a valid bcrypt hash") from None
        users[user] = encoded
    return users


def ssl_context(tls: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure_ssl(context, tls)
    return context


def configure_ssl(context: ssl.SSLContext, tls: dict[str, Any]) -> None:
    """(Re)load certificates and client verification into ``context``; new connections use them."""
    try:
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
        auth = tls.get("client_auth_type", "NoClientCert")
        if tls.get("client_ca_file"):
            context.load_verify_locations(cafile=tls["client_ca_file"])
        context.verify_mode = CLIENT_AUTH_TYPES[auth]
        context.minimum_version = TLS_VERSIONS[tls.get("min_version", "TLS12")]
        if "max_version" in tls:
            context.maximum_version = TLS_VERSIONS[tls["max_version"]]
        if "cipher_suites" in tls:
            context.set_ciphers(":".join(tls["cipher_suites"]))
        if tls.get("prefer_server_cipher_suites") is True:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        elif tls.get("prefer_server_cipher_suites") is False:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if "curve" in tls:
            context.set_ecdh_curve(tls["curve"])
    except (ssl.SSLError, OSError) as exc:
        raise WebConfigError(f"web config: cannot load the TLS certificate or key: {exc}") from None


class Authenticator:
    """Checks basic-auth credentials against bcrypt hashes, in constant time per user.

    bcrypt is deliberately slow (tens of milliseconds), too slow for every scrape, so
    successful checks are remembered by a SHA-256 of (user, password, hash): the
    password itself is never stored.
    """

    def __init__(self) -> None:
        self._verified: set[bytes] = set()

    def cached(self, config: WebConfig, header: str | None) -> bool | None:
        """True/False when known without bcrypt, None when a bcrypt check is needed."""
        if not config.auth_enabled:
            return True
        user, password = _parse_basic(header)
        if user is None or password is None:
            return False
        hashed = config.users.get(user)
        if hashed is not None and self._key(user, password, hashed) in self._verified:
            return True
        return None

    @staticmethod
    def _key(user: str, password: str, hashed: bytes) -> bytes:
        return hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()

    def check(self, config: WebConfig, header: str | None) -> bool:
        if not config.auth_enabled:
            return True
        user, password = _parse_basic(header)
        if user is None or password is None:
            return False
        hashed = None
        for candidate, value in config.users.items():
            # Compare every name so timing does not tell which users exist.
            if hmac.compare_digest(candidate.encode(), user.encode()):
                hashed = value
        if hashed is None:
            bcrypt.checkpw(password.encode(), next(iter(config.users.values())))  # same work as a real user
            return False
        key = self._key(user, password, hashed)
        if key in self._verified:
            return True
        if bcrypt.checkpw(password.encode(), hashed):
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified.add(key)
            return True
        return False


def _parse_basic(header: str | None) -> tuple[str | None, str | None]:
    import base64
    import binascii

    if not header or not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None, None
    return user, password


class WebConfigWatcher:
    """Holds the configuration in force and re-reads the file when it changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.config = load(path) if path else WebConfig(None)
        self._stamp = self._file_stamp()
        self.context = ssl_context(self.config.tls) if self.config.tls else None

    def _file_stamp(self) -> tuple[float, int] | None:
        if not self.path:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime, stat.st_size)

    def maybe_reload(self) -> bool:
        """Re-read the file if it changed; returns True when a new configuration took effect."""
        stamp = self._file_stamp()
        if not self.path or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load(self.path)
            self._apply_tls(config)
        except WebConfigError as exc:
            log.error("web config not reloaded; the last good one stays in force", extra={"error": str(exc)})  # noqa: TRY400 - the message says it all
            return False
        self.config = config
        log.info(
            "web config reloaded",
            extra={"path": self.path, "tls": config.tls is not None, "basic_auth": config.auth_enabled},
        )
        return True

    def _apply_tls(self, config: WebConfig) -> None:
        if (config.tls is None) != (self.config.tls is None):
            raise WebConfigError(
                f"web config {self.path}: turning TLS on or off needs a restart; keeping the running configuration"
            )
        if config.tls is not None and self.context is not None:
            configure_ssl(self.context, config.tls)
