"""``idaas-sync-exporter healthcheck``: is the server that these settings describe answering ``/healthz``?

Container health checks (the Dockerfile's ``HEALTHCHECK``) run this beside the server, with the same
environment, so it follows the settings serve follows: the listen address and the web config's TLS.

- An all-interfaces listener (``:10129``, ``0.0.0.0``, ``::``) is probed on loopback; a listener
  on one address is probed on that address.
- With TLS, the server must present the certificate of the web config's ``cert_file``: that file is
  the only trust anchor (a leaf is accepted as one), so the probe trusts exactly the certificate
  this exporter is configured with, whoever issued it, and not whatever else may hold the port.
  Its names are not checked: the probe connects to an address (loopback), which a certificate
  issued for the service's name does not list, and the pinned certificate already identifies it.
- When the web config requires client certificates, the probe presents the server's own
  certificate and key (it runs where the server runs and can read them). That passes when the
  server's certificate is also a client certificate the server accepts (issued by a CA in
  ``client_ca_file``, without an extended key usage that excludes clients, and named in
  ``client_allowed_sans`` when that is set); otherwise the probe reports the refused handshake.
- ``/healthz`` needs no basic auth, so no password is read.

Only the standard library's HTTP client is used: a probe runs every 30 seconds and must start fast.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from typing import Any

# An all-interfaces listener is reached on the loopback address of its family.
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - names, not binds
# Client certificate modes where the server refuses a handshake without one.
CLIENT_CERTIFICATE_REQUIRED = frozenset({"RequireAnyClientCert", "RequireAndVerifyClientCert"})
DEFAULT_TIMEOUT_SECONDS = 3.0
PATH = "/healthz"


@dataclass(frozen=True)
class Target:
    """Where and how the probe connects."""

    host: str
    port: int
    context: ssl.SSLContext | None

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.context else 'http'}://{shown}:{self.port}{PATH}"


def target(listen_host: str, port: int, tls: dict[str, Any] | None) -> Target:
    """The target for a server listening on ``listen_host:port`` with the web config's ``tls`` (or None)."""
    host = LOOPBACK_FOR.get(listen_host, listen_host)
    return Target(host, port, client_context(tls) if tls else None)


def client_context(tls: dict[str, Any]) -> ssl.SSLContext:
    """A client context that trusts exactly the server's configured certificate (see the module's notes).

    Raises :class:`ssl.SSLError` or :class:`OSError` when the files cannot be read.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    # The configured certificate may be a leaf issued by a CA the probe does not know: without
    # this flag OpenSSL accepts only a self-signed root as a trust anchor.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cafile=tls["cert_file"])
    if tls.get("client_auth_type", "NoClientCert") in CLIENT_CERTIFICATE_REQUIRED:
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
    return context


def probe(where: Target, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str | None:
    """None when ``/healthz`` answers 200 within ``timeout`` seconds; otherwise one line saying what failed."""
    connection: http.client.HTTPConnection
    if where.context is not None:
        connection = http.client.HTTPSConnection(where.host, where.port, timeout=timeout, context=where.context)
    else:
        connection = http.client.HTTPConnection(where.host, where.port, timeout=timeout)
    try:
        connection.request("GET", PATH, headers={"User-Agent": "idaas-sync-exporter-healthcheck"})
        response = connection.getresponse()
        response.read(4096)
    except ssl.SSLCertVerificationError as exc:
        return f"{where.url}: the server's certificate is not the configured one: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"{where.url}: TLS handshake failed: {exc.reason or exc}"
    except TimeoutError:
        return f"{where.url}: no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return f"{where.url}: connection refused (is the exporter running and listening there?)"
    except (OSError, http.client.HTTPException) as exc:
        return f"{where.url}: {type(exc).__name__}: {exc}"
    finally:
        connection.close()
    if response.status != 200:
        return f"{where.url}: answered {response.status} {response.reason}"
    return None
