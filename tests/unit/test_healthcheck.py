"""``idaas-sync-exporter healthcheck``: the settings decide where and how /healthz is probed."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from idaas_sync_exporter.cli import main
from idaas_sync_exporter.web.config import load as load_web_config
from idaas_sync_exporter.web.config import ssl_context
from tests.pki import make_ca, make_leaf


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def server(host: str = "127.0.0.1", *, status: int = 200, context: ssl.SSLContext | None = None) -> Iterator[int]:
    """A /healthz server on a free port of ``host``, over TLS when ``context`` is given; yields the port."""
    handler = type("Handler", (_Health,), {"status": status})
    httpd = ThreadingHTTPServer((host, 0), handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca", "test CA")
    other = make_ca(root / "other-ca", "another CA")
    make_leaf(root / "server", "localhost", ca, server=True)
    make_leaf(root / "impostor", "localhost", other, server=True)
    return root


@pytest.fixture
def healthcheck(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Runs the command with only the given ``IDAAS_EXPORTER_*`` variables; returns its exit code and stderr."""

    def run(*args: str, **env: str) -> tuple[int, str]:
        for name in ("LISTEN_ADDRESS", "WEB_CONFIG_FILE"):
            monkeypatch.delenv(f"IDAAS_EXPORTER_{name}", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(f"IDAAS_EXPORTER_{name.upper()}", value)
        code = main(["healthcheck", *args])
        captured = capsys.readouterr()
        assert captured.out == ""
        return code, captured.err

    return run


def web_config(tmp_path: Path, pki: Path, cert: str = "server", extra: str = "") -> str:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki / cert}.crt\n  key_file: {pki / cert}.key\n{extra}")
    return str(path)


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("idaas-sync-exporter: healthcheck: "), err
    return err


def test_the_listen_address_variable_picks_the_port(healthcheck: Callable[..., tuple[int, str]]) -> None:
    with server() as port:
        assert healthcheck(listen_address=f"127.0.0.1:{port}") == (0, "")
        # The flag, as serve takes it, and the exporter-toolkit alias.
        assert healthcheck("--listen-address", f"127.0.0.1:{port}") == (0, "")
        assert healthcheck("--web.listen-address", f"127.0.0.1:{port}") == (0, "")


def test_an_all_interfaces_listener_is_probed_on_loopback(healthcheck: Callable[..., tuple[int, str]]) -> None:
    with server() as port:
        assert healthcheck(listen_address=f":{port}") == (0, "")
        assert healthcheck(listen_address=f"0.0.0.0:{port}") == (0, "")


def test_a_stopped_server_fails_in_one_line(healthcheck: Callable[..., tuple[int, str]]) -> None:
    port = free_port()
    code, err = healthcheck(listen_address=f":{port}")
    assert code == 1
    assert f"http://127.0.0.1:{port}/healthz: connection refused" in one_line(err)


def test_the_default_port_is_probed_without_settings(healthcheck: Callable[..., tuple[int, str]]) -> None:
    code, err = healthcheck()
    # Whether or not something listens on 10129 here, the probe went there.
    assert code == 0 or "http://127.0.0.1:10129/healthz" in one_line(err)


def test_an_unhealthy_answer_fails(healthcheck: Callable[..., tuple[int, str]]) -> None:
    with server(status=503) as port:
        code, err = healthcheck(listen_address=f"127.0.0.1:{port}")
    assert code == 1
    assert "answered 503" in one_line(err)


def test_a_server_that_does_not_answer_times_out(healthcheck: Callable[..., tuple[int, str]]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        code, err = healthcheck("--timeout", "0.3", listen_address=f"127.0.0.1:{port}")
    assert code == 1
    assert "no answer within 0.3 s" in one_line(err)


def test_tls_from_the_web_config_is_followed(
    healthcheck: Callable[..., tuple[int, str]], pki: Path, tmp_path: Path
) -> None:
    config = web_config(tmp_path, pki)
    tls = load_web_config(config).tls
    assert tls is not None
    with server(context=ssl_context(tls)) as port:
        assert healthcheck(listen_address=f":{port}", web_config_file=config) == (0, "")
        assert healthcheck("--web.config.file", config, listen_address=f":{port}") == (0, "")
        # Without the web config the probe speaks plain HTTP, which a TLS server refuses.
        code, err = healthcheck(listen_address=f":{port}")
    assert code == 1
    assert f"http://127.0.0.1:{port}/healthz" in one_line(err)


def test_tls_trusts_only_the_configured_certificate(
    healthcheck: Callable[..., tuple[int, str]], pki: Path, tmp_path: Path
) -> None:
    served = load_web_config(web_config(tmp_path, pki, "impostor")).tls
    assert served is not None
    (tmp_path / "configured").mkdir()
    with server(context=ssl_context(served)) as port:
        code, err = healthcheck(listen_address=f":{port}", web_config_file=web_config(tmp_path / "configured", pki))
    assert code == 1
    assert f"https://127.0.0.1:{port}/healthz: the server's certificate is not the configured one" in one_line(err)


def test_required_client_certificates_are_answered_with_the_servers_own(
    healthcheck: Callable[..., tuple[int, str]], pki: Path, tmp_path: Path
) -> None:
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki / 'ca.crt'}\n"
    config = web_config(tmp_path, pki, extra=extra)
    tls = load_web_config(config).tls
    assert tls is not None
    with server(context=ssl_context(tls)) as port:
        assert healthcheck(listen_address=f":{port}", web_config_file=config) == (0, "")
    # A client CA that did not issue the server's certificate refuses the probe: said in one line.
    (tmp_path / "strict").mkdir()
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki / 'other-ca.crt'}\n"
    strict = web_config(tmp_path / "strict", pki, extra=extra)
    tls = load_web_config(strict).tls
    assert tls is not None
    with server(context=ssl_context(tls)) as port:
        code, err = healthcheck(listen_address=f":{port}", web_config_file=strict)
    assert code == 1
    assert f"https://127.0.0.1:{port}/healthz: " in one_line(err)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"listen_address": "nonsense"}, "invalid setting: IDAAS_EXPORTER_LISTEN_ADDRESS"),
        ((), {"listen_address": ":0"}, "has no fixed port to probe"),
        (("--timeout", "0"), {}, "--timeout must be between 0 and 300, got 0.0"),
        (("--timeout", "inf"), {}, "--timeout must be between 0 and 300, got inf"),
        (("--timeout", "nan"), {}, "--timeout must be between 0 and 300, got nan"),
        ((), {"web_config_file": "/nonexistent/web.yml"}, "web config: cannot read /nonexistent/web.yml"),
    ],
)
def test_invalid_settings_are_unhealthy_not_a_usage_error(
    healthcheck: Callable[..., tuple[int, str]], args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    # Exit 1 even here: container engines reserve a health check's other exit codes.
    code, err = healthcheck(*args, **env)
    assert code == 1
    assert expected in one_line(err)
