"""exporter-toolkit web configuration: real TLS and client certificates, basic auth, reload, Prometheus."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from idaas_sync_exporter.web.config import Authenticator, WebConfigError, load
from tests.e2e import exporter_command, exporter_env, free_port, prometheus, query
from tests.pki import make_ca, make_leaf

PASSWORD = "scrape-pass-7d1e9a"
NEW_PASSWORD = "rotated-pass-4c2b8f"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca", "test CA")
    other = make_ca(root / "other-ca", "untrusted CA")
    make_leaf(root / "server", "localhost", ca, server=True)
    make_leaf(root / "client", "prometheus", ca, server=False)
    make_leaf(root / "rogue", "prometheus", other, server=False)
    return root


def web_config(pki: Path, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"""
tls_server_config:
  cert_file: {pki / "server.crt"}
  key_file: {pki / "server.key"}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki / "ca.crt"}
  min_version: TLS12
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: '{hashed}'
"""


@pytest.fixture
def secured(pki: Path, tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[str]]]:
    config = tmp_path / "web.yml"
    config.write_text(web_config(pki, PASSWORD))
    port = free_port()
    env = exporter_env()
    process = subprocess.Popen(
        exporter_command(
            "serve",
            "--demo",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--poll-interval-seconds",
            "2",
            "--web.config.file",
            str(config),
            "--log-format",
            "json",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with client(pki) as http:
                    if http.get(f"https://127.0.0.1:{port}/healthz").status_code == 200:
                        break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield port, config, process
    finally:
        process.terminate()
        process.communicate(timeout=20)


def client(pki: Path, cert: str | None = "client", auth: tuple[str, str] | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        context.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return httpx.Client(verify=context, auth=auth, timeout=10)


@pytest.mark.slow
def test_tls_client_certificates_and_basic_auth(secured: tuple[int, Path, subprocess.Popen[str]], pki: Path) -> None:
    port, config, process = secured
    url = f"https://127.0.0.1:{port}"
    with client(pki, auth=("prometheus", PASSWORD)) as http:
        ok = http.get(f"{url}/metrics")
        assert ok.status_code == 200 and "idaas_up" in ok.text
        assert ok.headers["X-Frame-Options"] == "deny"
        assert ok.headers["Strict-Transport-Security"] == "max-age=31536000"
    with client(pki, auth=("prometheus", "wrong-password")) as http:
        refused = http.get(f"{url}/metrics")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert http.get(f"{url}/").status_code == 401
    with client(pki) as http:
        assert http.get(f"{url}/metrics").status_code == 401  # no credentials
        assert http.get(f"{url}/healthz").status_code == 200  # liveness stays open
    for cert in ("rogue", None):
        with client(pki, cert=cert, auth=("prometheus", PASSWORD)) as http, pytest.raises(httpx.HTTPError):
            http.get(f"{url}/metrics")
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as plain:
        plain.get(f"http://127.0.0.1:{port}/metrics")

    # Reload: a new password takes effect; an invalid file keeps the last good one.
    config.write_text(web_config(pki, NEW_PASSWORD))
    # The file is read off the event loop: requests are answered under the old configuration until
    # the new one is ready.
    with client(pki, auth=("prometheus", NEW_PASSWORD)) as http:
        deadline = time.monotonic() + 15
        while http.get(f"{url}/metrics").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert http.get(f"{url}/metrics").status_code == 200
    with client(pki, auth=("prometheus", PASSWORD)) as http:
        assert http.get(f"{url}/metrics").status_code == 401
    config.write_text("basic_auth_users:\n  prometheus: plain-text-password\n")
    with client(pki, auth=("prometheus", NEW_PASSWORD)) as http:
        for _ in range(10):
            assert http.get(f"{url}/metrics").status_code == 200
            time.sleep(0.2)
    process.terminate()
    _, stderr = process.communicate(timeout=20)
    assert "web config not reloaded" in stderr and "must be a bcrypt hash" in stderr
    for secret in (PASSWORD, NEW_PASSWORD, "plain-text-password"):
        assert secret not in stderr


@pytest.mark.slow
def test_prometheus_scrapes_through_tls_and_basic_auth(
    secured: tuple[int, Path, subprocess.Popen[str]], pki: Path, tmp_path: Path
) -> None:
    port, _, _ = secured
    (tmp_path / "password").write_text(PASSWORD)
    (tmp_path / "wrong").write_text("not-the-password")
    tls = f"""    tls_config:
      ca_file: {pki / "ca.crt"}
      cert_file: {pki / "client.crt"}
      key_file: {pki / "client.key"}
      server_name: localhost
"""
    config = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: good
    scheme: https
    basic_auth: {{username: prometheus, password_file: {tmp_path / "password"}}}
{tls}    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: wrong-password
    scheme: https
    basic_auth: {{username: prometheus, password_file: {tmp_path / "wrong"}}}
{tls}    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""
    with prometheus(tmp_path, config, free_port()) as base:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            good = query(base, 'up{job="good"}')
            bad = query(base, 'up{job="wrong-password"}')
            if good and bad and good[0]["value"][1] == "1" and query(base, 'idaas_up{job="good"}'):
                break
            time.sleep(1)
        assert good and good[0]["value"][1] == "1"
        assert bad and bad[0]["value"][1] == "0"
        assert query(base, 'idaas_up{job="good"} == 1')


def test_invalid_files_are_refused_with_the_key_named(tmp_path: Path, pki: Path) -> None:
    cases = {
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n": "cert_file",
        "basic_auth_users:\n  prometheus: hunter2\n": "must be a bcrypt hash",
        "tls_server_confg: {}\n": "tls_server_confg: unknown key",
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n": "needs tls_server_config.client_ca_file",
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        "  min_version: TLS14\n": "min_version",
        "http_server_config:\n  headers:\n    X-Powered-By: me\n": "X-Powered-By",
    }
    for text, fragment in cases.items():
        path = tmp_path / "web.yml"
        path.write_text(text)
        with pytest.raises(WebConfigError, match=fragment.replace("'", ".")):
            load(str(path))


def test_cli_refuses_an_invalid_web_config_at_start(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  prometheus: hunter2-plain\n")
    result = subprocess.run(
        exporter_command(
            "serve",
            "--demo",
            "--listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            str(path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"web config: {path}:2:15: basic_auth_users.prometheus: must be a bcrypt hash" in result.stderr
    assert "hunter2-plain" not in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "1: a\nb: c\n",
        "tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n  client_auth_type: [a]\n",
        'basic_auth_users:\n  u: "$2y$10$\\ud800abc"\n',
        'http_server_config:\n  headers:\n    X-Frame-Options: "a\\x00b"\n',
    ],
    ids=["mixed_key_types", "client_auth_type_list", "hash_with_lone_surrogate", "header_value_nul"],
)
def test_a_web_config_that_crashed_the_start_is_one_line_per_problem_and_exit_2(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    result = subprocess.run(
        exporter_command("serve", "--demo", "--listen-address", "127.0.0.1:0", "--web.config.file", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "web config" in line]
    assert lines and all(str(path) in line for line in lines)


def test_authenticator_caches_only_successes(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    config = load(str(path))
    auth = Authenticator()
    import base64

    header = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert auth.cached(config, header) is None
    assert auth.check(config, header)
    assert auth.cached(config, header) is True
    wrong = "Basic " + base64.b64encode(b"alice:nope").decode()
    assert not auth.check(config, wrong)
    assert auth.cached(config, wrong) is None
    assert not auth.check(config, "Basic " + base64.b64encode(b"mallory:pw").decode())
    assert not auth.check(config, "Bearer x")
    assert "$2" not in repr(config)


def tls_config(pki: Path, extra: str, auth: str = "RequireAndVerifyClientCert") -> str:
    return (
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        f"  client_auth_type: {auth}\n  client_ca_file: {pki / 'ca.crt'}\n{extra}"
    )


@pytest.mark.parametrize(
    ("extra", "auth", "fragment"),
    [
        (
            "  cipher_suites: [TLS_MADE_UP_SUITE]\n",
            "RequireAndVerifyClientCert",
            "cipher_suites[0] (got 'TLS_MADE_UP_SUITE')",
        ),
        ("  curve_preferences: [CurveP256, X25519]\n", "RequireAndVerifyClientCert", "exactly one"),
        ("  prefer_server_cipher_suites: sometimes\n", "RequireAndVerifyClientCert", "true or false"),
        ("  client_allowed_sans: [prometheus]\n", "RequestClientCert", "needs client_auth_type"),
        ("", "RequireAnyClientCert", "RequireAnyClientCert"),
    ],
)
def test_tls_fields_that_cannot_be_honoured_are_refused(
    tmp_path: Path, pki: Path, extra: str, auth: str, fragment: str
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(tls_config(pki, extra, auth))
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_cipher_suites_curve_and_server_preference_are_applied(tmp_path: Path, pki: Path) -> None:
    from idaas_sync_exporter.web.config import ssl_context

    path = tmp_path / "web.yml"
    path.write_text(
        tls_config(
            pki,
            "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
            "  prefer_server_cipher_suites: true\n  curve_preferences: [CurveP384]\n",
        )
    )
    config = load(str(path))
    assert config.tls is not None
    context = ssl_context(config.tls)
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES256-GCM-SHA384"}
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_client_allowed_sans_admit_only_named_certificates(tmp_path: Path, pki: Path) -> None:
    from idaas_sync_exporter.web.config import allowed_client

    path = tmp_path / "web.yml"
    path.write_text(tls_config(pki, "  client_allowed_sans: [prometheus.monitoring.svc, 10.0.0.7]\n"))
    config = load(str(path))
    allowed = {"subjectAltName": (("DNS", "prometheus.monitoring.svc"),)}
    by_ip = {"subjectAltName": (("IP Address", "10.0.0.7"),)}
    other = {"subjectAltName": (("DNS", "grafana.monitoring.svc"),)}
    assert allowed_client(config.tls, allowed) and allowed_client(config.tls, by_ip)
    assert not allowed_client(config.tls, other)
    assert not allowed_client(config.tls, {})  # a certificate without names
    assert not allowed_client(config.tls, None)  # no certificate at all
    assert allowed_client(None, None)  # no TLS, no restriction
