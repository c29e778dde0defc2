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

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import ssl
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

import bcrypt
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from idaas_sync_exporter.config.validation import Loc, describe, load_document
from idaas_sync_exporter.config.yamlfile import YamlFileError
from idaas_sync_exporter.files import SHOWN_PATH_CHARACTERS, shown
from idaas_sync_exporter.metrics.selfmetrics import ConfigReload

log = logging.getLogger(__name__)

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
HeaderName = Literal[
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
]
ALLOWED_HEADERS: tuple[str, ...] = get_args(HeaderName)
# Go's names of the TLS 1.2 cipher suites exporter-toolkit accepts, as OpenSSL names them.
# (TLS 1.3 suites are not configurable, in Go as here.)
CipherSuite = Literal[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
]
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
# Go's curve names; Python's ssl module can pin one curve, not order several. X25519 is OpenSSL's
# default first group, and set_ecdh_curve cannot select it on some OpenSSL 3.0 builds ("EC:
# UNKNOWN_GROUP"): it means "leave OpenSSL's default group list", which offers X25519 first.
Curve = Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": None}
# RFC 9110 field-value, ASCII only: visible characters, with spaces and tabs inside. aiohttp
# refuses to send any control character, so one in a header would fail every response.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
MAX_HEADER_VALUE_CHARS = 4096
# A bcrypt hash as htpasswd and Go write it; the cost is bounded because each check costs
# 2**cost rounds (cost 31 is days), at start, on each reload and for each new password.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")
MAX_BCRYPT_COST = 16
MAX_USERS = 100
MAX_USER_NAME_CHARS = 256
_VERIFIED_CLIENT_AUTH = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")


class WebConfigError(ValueError):
    """The web configuration file is invalid; ``problems`` names each by its place, the message all in one line."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else problems
        super().__init__("; ".join(self.problems))


def _header_value(value: str) -> str:
    if len(value) > MAX_HEADER_VALUE_CHARS or not _HEADER_VALUE.fullmatch(value):
        raise ValueError(
            f"must be one line of visible ASCII characters (spaces and tabs inside), at most {MAX_HEADER_VALUE_CHARS}"
        )
    return value


def _user_name(user: str) -> str:
    # A user name is compared as UTF-8: a lone surrogate could not be, and a control character
    # could not be typed by any client.
    if not user or len(user) > MAX_USER_NAME_CHARS or ":" in user or not user.isprintable():
        raise ValueError(f"invalid user name; use 1 to {MAX_USER_NAME_CHARS} printable characters without ':'")
    return user


def _bcrypt_hash(hashed: str) -> str:
    # The value is never quoted: a password written where its hash belongs is a secret.
    if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("must be a bcrypt hash ($2y$...), not a password")
    shape = _BCRYPT_HASH.fullmatch(hashed)
    if shape is None or not 4 <= int(shape["cost"]) <= MAX_BCRYPT_COST:
        raise ValueError(
            f"is not a bcrypt hash of cost 4 to {MAX_BCRYPT_COST}; make one with htpasswd -nbBC 10 '' PASSWORD"
        )
    try:
        bcrypt.checkpw(b"", hashed.encode("ascii"))
    except ValueError:
        raise ValueError("is not a valid bcrypt hash") from None
    return hashed


def _at_most_users(users: Any) -> Any:
    # Counted before any hash is checked: each check costs bcrypt's rounds.
    if isinstance(users, dict) and len(users) > MAX_USERS:
        raise ValueError(f"holds {len(users)} users; at most {MAX_USERS}")
    return users


_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)
FilePath = Annotated[str, Field(min_length=1)]


class TlsServerConfig(BaseModel):
    model_config = _STRICT

    cert_file: FilePath
    key_file: FilePath
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: FilePath | None = None
    min_version: TlsVersion | None = None
    max_version: TlsVersion | None = None
    cipher_suites: list[CipherSuite] | None = Field(None, min_length=1)
    prefer_server_cipher_suites: bool | None = None
    curve_preferences: list[Curve] | None = Field(None, min_length=1, max_length=1)
    client_allowed_sans: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _regular_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Relative to the web config file, as in exporter-toolkit.
        if value is None:
            return None
        base = (info.context or {}).get("base", Path("."))
        resolved = Path(value) if os.path.isabs(value) else base / value
        if not _regular(str(resolved)):
            raise ValueError(f"{shown(str(resolved), SHOWN_PATH_CHARACTERS)} is not an existing regular file")
        return str(resolved)

    @model_validator(mode="after")
    def _client_certificates(self) -> TlsServerConfig:
        auth = self.client_auth_type
        if auth in _VERIFIED_CLIENT_AUTH and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {auth} needs tls_server_config.client_ca_file")
        if auth == "RequireAnyClientCert":
            # Python's ssl module cannot ask for a certificate without verifying it, so without a CA
            # every client would be refused in the handshake.
            raise ValueError(
                "client_auth_type RequireAnyClientCert (a certificate that is not verified) is not "
                "supported; use RequireAndVerifyClientCert with tls_server_config.client_ca_file"
            )
        if self.client_allowed_sans is not None and auth not in _VERIFIED_CLIENT_AUTH:
            raise ValueError(
                "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert "
                "(the names of an unverified certificate prove nothing)"
            )
        return self

    def settings(self) -> dict[str, Any]:
        """What :func:`configure_ssl` applies: OpenSSL's names, and only what the file set."""
        tls: dict[str, Any] = {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "client_auth_type": self.client_auth_type,
        }
        if self.client_ca_file is not None:
            tls["client_ca_file"] = self.client_ca_file
        for key in ("min_version", "max_version", "prefer_server_cipher_suites"):
            if getattr(self, key) is not None:
                tls[key] = getattr(self, key)
        if self.cipher_suites is not None:
            tls["cipher_suites"] = [CIPHER_SUITES[name] for name in self.cipher_suites]
        if self.curve_preferences is not None and CURVES[self.curve_preferences[0]] is not None:
            tls["curve"] = CURVES[self.curve_preferences[0]]
        if self.client_allowed_sans is not None:
            tls["client_allowed_sans"] = frozenset(self.client_allowed_sans)
        return tls


class HttpServerConfig(BaseModel):
    model_config = _STRICT

    headers: dict[HeaderName, Annotated[str, AfterValidator(_header_value)]] | None = None
    # exporter-toolkit's http2 (default true there): this server speaks HTTP/1.1 only, so false is
    # honoured as it is and true is refused rather than silently ignored.
    http2: bool = False

    @field_validator("http2")
    @classmethod
    def _http1_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("this exporter serves HTTP/1.1 only; set http2: false or leave it out")
        return value


class WebConfigFile(BaseModel):
    model_config = _STRICT

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig | None = None
    basic_auth_users: (
        Annotated[
            dict[Annotated[str, AfterValidator(_user_name)], Annotated[str, AfterValidator(_bcrypt_hash)]],
            BeforeValidator(_at_most_users),
        ]
        | None
    ) = None


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


def _show_value(path: Loc, error: ErrorDetails) -> Loc | None:
    # The choices a file names are quoted, as what was written instead; no other value (a user's
    # hash, a header) ever is.
    return path if error["type"] == "literal_error" and path[:1] == ("tls_server_config",) else None


def _explain(path: Loc, error: ErrorDetails) -> str | None:
    if "curve_preferences" in path:
        return (
            f"must name exactly one of {', '.join(CURVES)} "
            "(Python's ssl module pins one curve and cannot order several)"
        )
    if not path and error["type"] == "model_type":
        return "must be a mapping of tls_server_config, http_server_config, basic_auth_users"
    return None


def load(path: str) -> WebConfig:
    """The web configuration of the file at ``path``; :class:`WebConfigError` naming every problem."""
    try:
        document = load_document(path)
    except YamlFileError as exc:
        raise WebConfigError(f"web config: {exc}") from None
    data = {} if document.data is None else document.data
    try:
        parsed = WebConfigFile.model_validate(data, context={"base": Path(path).parent})
    except ValidationError as exc:
        problems = describe(exc, document, model=WebConfigFile, show_value=_show_value, explain=_explain)
        raise WebConfigError([f"web config: {problem}" for problem in problems]) from None
    http = parsed.http_server_config
    users = parsed.basic_auth_users or {}
    return WebConfig(
        path,
        parsed.tls_server_config.settings() if parsed.tls_server_config is not None else None,
        {str(name): value for name, value in ((http.headers if http is not None else None) or {}).items()},
        {user: hashed.encode("ascii") for user, hashed in users.items()},
    )


def allowed_client(tls: dict[str, Any] | None, peercert: dict[str, Any] | None) -> bool:
    """Whether a verified client certificate carries one of ``client_allowed_sans`` (True when unset).

    As in exporter-toolkit, any subject alternative name counts: DNS name, IP address, e-mail or URI.
    """
    allowed = (tls or {}).get("client_allowed_sans")
    if not allowed:
        return True
    names = {str(value) for _, value in (peercert or {}).get("subjectAltName", ())}
    return bool(names & allowed)


def ssl_context(tls: dict[str, Any], path: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure_ssl(context, tls, path)
    return context


def configure_ssl(context: ssl.SSLContext, tls: dict[str, Any], path: str | None = None) -> None:
    """(Re)load certificates and client verification into ``context``; new connections use them.

    A failure raises :class:`WebConfigError` naming the field at fault.
    """
    field_name = "cert_file/key_file"
    try:
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
        auth = tls.get("client_auth_type", "NoClientCert")
        field_name = "client_ca_file"
        if tls.get("client_ca_file"):
            context.load_verify_locations(cafile=tls["client_ca_file"])
        field_name = "client_auth_type"
        context.verify_mode = CLIENT_AUTH_TYPES[auth]
        field_name = "min_version"
        context.minimum_version = TLS_VERSIONS[tls.get("min_version", "TLS12")]
        field_name = "max_version"
        if "max_version" in tls:
            context.maximum_version = TLS_VERSIONS[tls["max_version"]]
        field_name = "cipher_suites"
        if "cipher_suites" in tls:
            context.set_ciphers(":".join(tls["cipher_suites"]))
        field_name = "prefer_server_cipher_suites"
        if tls.get("prefer_server_cipher_suites") is True:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        elif tls.get("prefer_server_cipher_suites") is False:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        field_name = "curve_preferences"
        if "curve" in tls:
            context.set_ecdh_curve(tls["curve"])
    except (ssl.SSLError, OSError, ValueError) as exc:
        what = {
            "cert_file/key_file": "cannot load the TLS certificate or key",
            "client_ca_file": "cannot load the client CA certificates",
            "curve_preferences": "this Python's OpenSSL cannot select the curve",
        }.get(field_name, "cannot be applied")
        where = f"web config {path}" if path else "web config"
        raise WebConfigError(f"{where}: tls_server_config.{field_name}: {what}: {exc}") from None


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


class _Stamp(NamedTuple):
    """What a stat() tells of the file: a change of any of these is a new file to read."""

    mtime_ns: int
    size: int
    inode: int
    mode: int


class WebConfigWatcher:
    """Holds the configuration in force and re-reads the file when it changes.

    On the event loop (each request, and the scheduler every few seconds) the file is only
    stat()ed. Reading, parsing and checking it (bcrypt included) happen in a thread of its own:
    a file swapped for a FIFO, or on a hung mount, must not stop /healthz and /metrics. The new
    configuration is swapped in on the event loop once it is ready and whole; one reload at a time.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.config = load(path) if path else WebConfig(None)
        # The start's read is the first successful one; a refused change turns it to False.
        self.last_reload = ConfigReload(successful=True, success_time=time.time())
        self._stamp = self._file_stamp()
        self.context = ssl_context(self.config.tls, path) if self.config.tls else None
        self._reload: asyncio.Future[bool] | None = None

    def _file_stamp(self) -> _Stamp | None:
        if not self.path:
            return None
        try:
            stat = os.stat(self.path)
        except (OSError, ValueError):
            return None
        return _Stamp(stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_mode)

    def maybe_reload(self) -> None:
        """Start re-reading the file in a thread if it changed; the configuration in force serves meanwhile."""
        if not self.path or self._reload is not None:
            return  # a change made while a reload runs is noticed after it
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        loop = asyncio.get_running_loop()
        self._reload = loop.create_future()
        reader = threading.Thread(
            target=self._read, args=(loop, self._reload, self.path), name="web-config-reload", daemon=True
        )
        reader.start()

    async def reloaded(self) -> bool:
        """Wait for the reload in flight, if any; True when it put a new configuration in force."""
        if self._reload is None:
            return False
        return await asyncio.shield(self._reload)

    def _read(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[bool], path: str) -> None:
        """In the reload thread: the whole file checked, certificates loaded once to prove they load."""
        outcome: WebConfig | Exception
        try:
            outcome = load(path)
            if outcome.tls is not None:
                ssl_context(outcome.tls, path)
        except Exception as exc:  # any failure keeps the last good configuration
            outcome = exc
        # A daemon thread (a read that never returns must not hold up the exit), so the loop may be gone.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish, done, outcome)

    def _finish(self, done: asyncio.Future[bool], outcome: WebConfig | Exception) -> None:
        self._reload = None
        if not isinstance(outcome, Exception):
            try:
                self._apply_tls(outcome)
            except Exception as exc:  # the live TLS context is left as it was
                outcome = exc
        if isinstance(outcome, Exception):
            # Only a WebConfigError's text is ours; any other may quote the file, so only its kind is told.
            error = (
                str(outcome)
                if isinstance(outcome, WebConfigError)
                else f"web config {self.path}: cannot be used ({type(outcome).__name__}); fix the file"
            )
            log.error("web config not reloaded; the last good one stays in force", extra={"error": error})
            self.last_reload = ConfigReload(successful=False, success_time=self.last_reload.success_time)
            done.set_result(False)
            return
        self.config = outcome
        self.last_reload = ConfigReload(successful=True, success_time=time.time())
        log.info(
            "web config reloaded",
            extra={"path": self.path, "tls": outcome.tls is not None, "basic_auth": outcome.auth_enabled},
        )
        done.set_result(True)

    def _apply_tls(self, config: WebConfig) -> None:
        if (config.tls is None) != (self.config.tls is None):
            raise WebConfigError(
                f"web config {self.path}: turning TLS on or off needs a restart; keeping the running configuration"
            )
        if config.tls is not None and self.context is not None:
            # The reload thread loaded these files a moment ago; on the event loop they are opened
            # only if still regular files, so one swapped for a FIFO since cannot block it.
            for key in ("cert_file", "key_file", "client_ca_file"):
                if key in config.tls and not _regular(config.tls[key]):
                    raise WebConfigError(
                        f"web config {self.path}: tls_server_config.{key} is no longer a regular file; not loaded"
                    )
            configure_ssl(self.context, config.tls, self.path)


def _regular(path: str) -> bool:
    """Whether ``path`` is a regular file; never raises (Path.is_file raises on a name too long)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
