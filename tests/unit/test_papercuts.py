"""Rough edges a first-time user meets: the documented web config, a busy port, a clean stop, pipes, the state path."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import ipaddress
import logging
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from idaas_sync_exporter import cli, runtime
from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateError, StateStore
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.server import RunningSimulator, SimulatorApp
from idaas_sync_exporter.simulator.world import World
from idaas_sync_exporter.web.config import WebConfigError, WebConfigWatcher, configure_ssl, load
from tests.conftest import AK_ID, AK_SECRET, instance_id_of
from tests.e2e import exporter_command, exporter_env, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "docs-example-pass-3f9c"
# Tests that start the exporter's CLI: marked as tests/system's are, so `-m "not system"` leaves them out.
SYSTEM = pytest.mark.system


# --- 1. the documented web config ---------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    path: Path,
    common: str,
    sans: list[x509.GeneralName] | None,
    issuer: tuple[rsa.RSAPrivateKey, x509.Certificate] | None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA certificate (the docs' cipher suite is ECDHE_RSA), self-signed when ``issuer`` is None."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[1].subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def docs_web_config() -> str:
    """The web config example of docs/security.md, as written there."""
    text = (ROOT / "docs" / "security.md").read_text()
    section = text[text.index("### Web configuration") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "docs/security.md has no YAML example of the web config"
    return match.group(1)


@pytest.fixture
def docs_example(tmp_path: Path) -> Path:
    """The docs' example with its files generated: certificates, and a hash of PASSWORD for the user."""
    ca = _issue(tmp_path / "ca", "example CA", None, None)
    _issue(
        tmp_path / "tls",
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ca,
    )
    _issue(tmp_path / "client", "prometheus", [x509.DNSName("prometheus.monitoring.svc")], ca)
    _issue(tmp_path / "other-client", "prometheus", [x509.DNSName("someone.else.svc")], ca)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = docs_web_config().replace("/etc/idaas-sync-exporter/", f"{tmp_path}/").replace("$2y$10$...", f"'{hashed}'")
    assert "X25519" in config and "cipher_suites" in config and "client_allowed_sans" in config
    path = tmp_path / "web-config.yml"
    path.write_text(config)
    return path


def _client(pki: Path, cert: str, **options: Any) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    if options.get("tls12"):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return httpx.Client(verify=context, auth=("prometheus", PASSWORD), timeout=10)


@pytest.fixture
def serving(docs_example: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        exporter_command(
            "serve", "--demo", "--listen-address", f"127.0.0.1:{port}", "--web.config.file", str(docs_example)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=exporter_env(),
    )
    try:
        yield port, process
    finally:
        process.terminate()
        process.communicate(timeout=20)


def _wait_https(pki: Path, port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the exporter exited {process.returncode}: {process.communicate()[1][-2000:]}")
        try:
            with _client(pki, "client") as http:
                if http.get(f"https://127.0.0.1:{port}/healthz").status_code == 200:
                    return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail("the exporter did not answer over TLS within 30 s")


@SYSTEM
def test_the_docs_web_config_example_starts_and_serves_tls(
    docs_example: Path, serving: tuple[int, subprocess.Popen[str]]
) -> None:
    port, process = serving
    pki = docs_example.parent
    _wait_https(pki, port, process)
    url = f"https://127.0.0.1:{port}/metrics"
    with _client(pki, "client") as http:
        answer = http.get(url)
        assert answer.status_code == 200 and "idaas_up" in answer.text
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    with _client(pki, "client", tls12=True) as http:  # the TLS 1.2 suite the example names, over X25519
        assert http.get(url).status_code == 200
    with _client(pki, "other-client") as http:  # not in client_allowed_sans
        assert http.get(url).status_code == 403


def test_x25519_leaves_openssl_s_default_groups(docs_example: Path) -> None:
    tls = load(str(docs_example)).tls
    assert tls is not None and "curve" not in tls  # nothing pinned: OpenSSL's default list, X25519 first

    class NoX25519(ssl.SSLContext):
        """As Python's set_ecdh_curve behaves on OpenSSL 3.0 builds that cannot select X25519 by it."""

        def set_ecdh_curve(self, name: str, /) -> None:
            raise ssl.SSLError(1, "[EC: UNKNOWN_GROUP] unknown group")

    configure_ssl(NoX25519(ssl.PROTOCOL_TLS_SERVER), tls)


def test_an_openssl_refusal_names_the_field_at_fault(docs_example: Path, tmp_path: Path) -> None:
    tls = load(str(docs_example)).tls
    assert tls is not None

    class Refusing(ssl.SSLContext):
        def set_ecdh_curve(self, name: str, /) -> None:
            raise ssl.SSLError(1, "[EC: UNKNOWN_GROUP] unknown group")

    with pytest.raises(WebConfigError, match=r"tls_server_config\.curve_preferences"):
        configure_ssl(Refusing(ssl.PROTOCOL_TLS_SERVER), {**tls, "curve": "secp384r1"})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.client_ca_file") as refused:
        configure_ssl(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), {**tls, "client_ca_file": str(garbage)})
    assert "certificate or key" not in str(refused.value)
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file/key_file"):
        configure_ssl(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), {**tls, "cert_file": str(garbage)})
    docs_example.write_text(docs_example.read_text().replace("tls.crt", "garbage.pem"))
    with pytest.raises(WebConfigError) as at_start:  # as the exporter reads it at start
        WebConfigWatcher(str(docs_example))
    assert str(at_start.value).startswith(f"web config {docs_example}: tls_server_config.cert_file/key_file: ")


# --- 2. a port in use ---------------------------------------------------------------------------


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exporter_command(*args), capture_output=True, text=True, timeout=60, env=exporter_env(**env), check=False
    )


@SYSTEM
def test_a_port_in_use_is_one_line_naming_the_address_and_the_flag_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = _cli("serve", "--demo", "--listen-address", address)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("idaas-sync-exporter: error")]
    assert errors == [
        f"idaas-sync-exporter: error: cannot listen on {address}: address already in use; "
        "choose another address with --listen-address (IDAAS_EXPORTER_LISTEN_ADDRESS)"
    ]
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr


@SYSTEM
def test_the_simulator_on_a_port_in_use_is_one_line_naming_its_flag_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = _cli("simulate", "--listen", address, IDAAS_SIMULATOR_ACCESS_KEY_SECRET="sim-secret")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == (
        f"idaas-sync-exporter: error: cannot listen on {address}: address already in use; "
        "choose another address with --listen"
    )


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@SYSTEM
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_port_in_use_on_ipv6_only_is_also_refused_for_every_interface() -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("serve", "--demo", "--listen-address", f":{port}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot listen on :{port}: address already in use" in result.stderr


# --- 3. a clean stop ----------------------------------------------------------------------------


@pytest.fixture
async def exporter(simulator: RunningSimulator, world: World, clock: ManualClock) -> AsyncIterator[Exporter]:
    stats = ApiStats()
    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", simulator.endpoint),
        credentials=StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)),
        options=ClientOptions(requests_per_second=1000, burst=1000, max_attempts=1, attempt_timeout_seconds=60),
        observer=stats.observe,
    )
    instance = instance_id_of(world)
    store = StateStore(None)
    poller = InstancePoller(instance, client, store, PollOptions(), clock=clock)
    yield Exporter(store=store, pollers={instance: poller}, api_stats=stats, clock=clock)
    await client.aclose()


async def test_stopping_during_a_poll_and_a_target_refresh_logs_no_error(
    exporter: Exporter, sim_app: SimulatorApp, caplog: pytest.LogCaptureFixture
) -> None:
    # Both the poll and the target refresh still wait for the API when SIGTERM comes.
    sim_app.faults.latency_seconds = 3  # longer than the 0.2 s stop_polling waits below
    scheduler = AsyncIOScheduler()
    exporter.schedule(scheduler, poll_interval=3600, target_refresh=3600)
    caplog.set_level(logging.INFO)
    scheduler.start()
    for _ in range(500):
        if exporter.polls_in_flight:
            break
        await asyncio.sleep(0.01)
    assert exporter.polls_in_flight == 1
    await runtime.stop_polling(scheduler, exporter, limit_seconds=0.2)  # what `serve` does on SIGTERM
    for _ in range(20):  # whatever the scheduler would log comes on the next turns of the loop
        await asyncio.sleep(0.01)
    assert exporter.polls_in_flight == 0
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []
    assert [r.getMessage() for r in caplog.records].count("cut off by the shutdown; redone at the next start") == 2


# --- 4. pipes, bench/aggregate.py, once's flags ---------------------------------------------------


def _with_closed_stdout(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``args`` with a stdout whose reader has gone, as ``| head`` leaves it once head has exited."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            list(args),
            check=False,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=exporter_env(),
            cwd=cwd,
        )
    finally:
        os.close(write)


@SYSTEM
def test_a_reader_that_leaves_mid_exposition_is_exit_141_not_a_silent_success() -> None:
    # `once … | head -c 100`: head reads a little and exits while the exposition is being written.
    # The large write then returned short and the rest was dropped with exit code 0.
    command = f"{shlex.join(exporter_command('once', '--demo', '--log-level', 'error'))} | head -c 100 > /dev/null"
    result = subprocess.run(
        ["bash", "-c", command + "; echo ${PIPESTATUS[0]}"],
        capture_output=True, text=True, timeout=60, env=exporter_env(), check=False,
    )  # fmt: skip
    assert result.stdout.strip() == str(cli.EXIT_BROKEN_PIPE), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@SYSTEM
@pytest.mark.parametrize(
    "args",
    [
        ("rules",),
        ("rules", "--help"),
        ("pull-config", "set", "--dry-run"),
        ("once", "--demo"),
    ],
    ids=["rules", "help", "pull-config-set-dry-run", "once"],
)
def test_a_reader_gone_away_ends_every_command_quietly(args: tuple[str, ...], tmp_path: Path) -> None:
    if args[0] == "pull-config":
        wanted = tmp_path / "idp.yaml"
        wanted.write_text("IncrementalCallbackStatus: enabled\nPullProtectedRule:\n  UserDeletedThreshold: 30\n")
        args = (*args, "--instance-id", "idaas_ue2jvisn35ea5lmthk267xxxxx", "--identity-provider-id", "idp_x")
        args = (*args, "--file", str(wanted))
    result = _with_closed_stdout(*exporter_command(*args))
    # argparse's help ignores a failed write itself, and exits 0.
    assert result.returncode == (0 if "--help" in args else cli.EXIT_BROKEN_PIPE), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr[-2000:]
    assert "Exception ignored" not in result.stderr


@SYSTEM
def test_bench_aggregate_help_and_missing_files_are_usage_not_tracebacks(tmp_path: Path) -> None:
    aggregate = str(ROOT / "bench" / "aggregate.py")
    shown = subprocess.run([sys.executable, aggregate, "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and shown.stdout.startswith("usage:"), shown.stderr
    missing = subprocess.run(
        [sys.executable, aggregate, str(tmp_path / "nope.json")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "cannot read" in missing.stderr


def test_once_does_not_offer_the_connection_cap_of_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["once", "--demo", "--web-max-connections", "5"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --web-max-connections" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["serve", "--web-max-connections", "5"]).setting_web_max_connections == "5"


# --- 6. every interface: IPv4 and IPv6 ----------------------------------------------------------


@SYSTEM
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_empty_host_listens_on_ipv4_and_ipv6() -> None:
    port = free_port()
    process = subprocess.Popen(
        exporter_command("serve", "--demo", "--listen-address", f":{port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=exporter_env(),
    )
    try:
        answers: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while len(answers) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-2000:]
            for host in ("127.0.0.1", "[::1]"):
                try:
                    answers[host] = httpx.get(f"http://{host}:{port}/healthz", timeout=5).status_code
                except httpx.HTTPError:
                    time.sleep(0.1)
        assert answers == {"127.0.0.1": 200, "[::1]": 200}
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert f"addresses=0.0.0.0:{port},[::]:{port}" in err


async def test_without_ipv6_every_interface_is_ipv4_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = runtime._bound_socket

    def no_ipv6(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return real(family, host, port)

    monkeypatch.setattr(runtime, "_bound_socket", no_ipv6)
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    servers = await runtime.listen(loop, asyncio.Protocol, ":0", None)
    try:
        assert [server.sockets[0].family for server in servers] == [socket.AF_INET]
        assert "IPv6 is not available: listening on IPv4 only" in caplog.messages
    finally:
        for server in servers:
            server.close()


def test_an_explicit_ipv4_address_stays_ipv4_only() -> None:
    assert runtime.listens_on_every_interface(":10129")
    assert not runtime.listens_on_every_interface("0.0.0.0:10129")
    assert not runtime.listens_on_every_interface("[::]:10129")


# --- 7. the state path --------------------------------------------------------------------------


@SYSTEM
def test_a_state_path_in_a_missing_directory_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "deeper" / "state.sqlite3"
    with pytest.raises(StateError, match=r"does not exist; nothing was created: create it \(mkdir -p "):
        StateStore(str(path))
    assert list(tmp_path.iterdir()) == []
    result = _cli("once", "--demo", "--state-path", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"the directory of state path {path} does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


@SYSTEM
def test_the_default_path_s_own_directory_is_still_created(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "share" / "idaas-sync-exporter" / "state.sqlite3"
    StateStore(str(path), create_directory=True).close()
    assert path.is_file()
    env = {"HOME": str(tmp_path / "home")}
    result = _cli(
        "once", "--instance-ids", "idaas_ue2jvisn35ea5lmthk267xxxxx", "--endpoint", "http://127.0.0.1:9", **env
    )
    assert (tmp_path / "home" / ".local" / "share" / "idaas-sync-exporter" / "state.sqlite3").is_file(), result.stderr


@SYSTEM
def test_the_start_names_the_state_file_and_whether_it_is_new(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = _cli("once", "--demo", "--state-path", str(path))
    second = _cli("once", "--demo", "--state-path", str(path))
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-2000:]
    assert next(line for line in first.stderr.splitlines() if 'msg="state file"' in line).endswith(
        f"path={path} new=True"
    )
    assert next(line for line in second.stderr.splitlines() if 'msg="state file"' in line).endswith(
        f"path={path} new=False"
    )
    memory = _cli("once", "--demo")
    assert "state kept in memory only" in memory.stderr


@SYSTEM
def test_every_start_problem_is_reported_together_and_nothing_is_created(tmp_path: Path) -> None:
    web_config = tmp_path / "web-config.yml"
    web_config.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    state = tmp_path / "state.sqlite3"
    result = _cli(
        "serve",
        "--instance-ids",
        "idaas_ue2jvisn35ea5lmthk267xxxxx",
        "--region-id",
        "cn-hangzhou",
        "--state-path",
        str(state),
        "--web-config-file",
        str(web_config),
        "--shard-count",
        "2",
        "--listen-address",
        f"127.0.0.1:{free_port()}",
        HOSTNAME="not-a-statefulset-pod",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("idaas-sync-exporter: error: ") for line in lines), lines
    # One line per problem: the shard's, then each of the web config's, naming its place in the file.
    assert "shard" in lines[0] and all("web-config.yml:" in line for line in lines[1:]), lines
    assert list(tmp_path.iterdir()) == [web_config]
    assert not state.exists()


# --- 8. a hermetic demo -------------------------------------------------------------------------

PRODUCTION_SECRET = "pr0duction-secret-that-must-not-leak"


@SYSTEM
def test_the_demo_ignores_the_tenant_settings_of_a_production_shell_and_says_which(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "poll_interval_seconds: 45\n"
        "accounts:\n  - name: team\n    access_key: {id_env: TEAM_ID, secret_env: TEAM_SECRET}\n"
        "instances:\n  - {id: idaas_team, region: cn-shanghai, account: team}\n"
    )
    state = tmp_path / "from-env.sqlite3"
    result = _cli(
        "once",
        "--demo",
        "--config",
        str(config),
        IDAAS_EXPORTER_INSTANCE_IDS="idaas_ue2jvisn35ea5lmthk267xxxxx",
        IDAAS_EXPORTER_ACCESS_KEY_SECRET=PRODUCTION_SECRET,
        IDAAS_EXPORTER_REGION_ID="cn-beijing",
        IDAAS_EXPORTER_STATE_PATH=str(state),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The simulator's instance was polled, not the production one, and the key was never tried.
    assert re.search(r'^idaas_up\{instance_id="idaas_[0-9a-f]+"\} 1$', result.stdout, re.MULTILINE)
    assert "idaas_ue2jvisn35ea5lmthk267xxxxx" not in result.stdout
    ignored = next(line for line in result.stderr.splitlines() if "demo mode ignores" in line)
    for name in ("IDAAS_EXPORTER_ACCESS_KEY_SECRET", "IDAAS_EXPORTER_INSTANCE_IDS", "IDAAS_EXPORTER_REGION_ID"):
        assert name in ignored
    assert f"{config}: accounts" in ignored and f"{config}: instances" in ignored
    assert PRODUCTION_SECRET not in result.stderr + result.stdout
    # Every other setting applies, whichever source gave it: the state path from the environment.
    assert state.is_file()
    assert f"path={state} new=True" in result.stderr


@SYSTEM
def test_a_demo_without_tenant_settings_logs_nothing_about_ignoring() -> None:
    result = _cli("once", "--demo")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ignores" not in result.stderr


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "inf"])
def test_a_demo_speed_that_is_not_a_positive_number_is_one_line(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["once", "--demo", "--demo-speed", speed]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--demo-speed must be a positive number" in err


def test_once_help_says_what_it_does_with_state(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["once", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "same state file as serve" in text and "refused while a serve holds that file" in text


# --- 5. commands that run on Debian -------------------------------------------------------------


def test_documented_commands_name_a_python_that_exists() -> None:
    # Debian has no `python`, only `python3`; the clone's commands run the virtual environment's python.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bare = re.compile(r"(?:^|[`(]|\s)python\s", re.MULTILINE)
    found = [
        f"{page.name}: {line.strip()[:80]}"
        for page in pages
        if page.name != "deployment.md"  # edited elsewhere
        for line in page.read_text().splitlines()
        if bare.search(line)
    ]
    assert found == []
    for page in (ROOT / "docs" / "alerts.md", ROOT / "docs" / "development.md"):
        text = " ".join(page.read_text().split())
        assert "grafana/generate.py" in text and "the `test` extra" in text, page.name


# --- 9. command-line mistakes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["serve", "--instance_ids", "x"],
            "serve: error: unknown option --instance_ids: the option is spelled --instance-ids",
        ),
        (["serve", "--port", "10140"], "serve: error: unknown option --port (the option is --listen-address)"),
        (["once", "--poll-interval-seconds", "5"], "once: error: --poll-interval-seconds is an option of serve only"),
        (["once", "--poll-interval", "5"], "(did you mean --poll-interval-seconds? it is an option of serve only)"),
        (
            ["serve", "--access-key-secrett=hunter2-secret"],
            "unknown option --access-key-secrett (did you mean --access-key-secret?)",
        ),
        (["serve", "--demo", "--demo-speed", "abc"], "serve: error: argument --demo-speed: invalid float value: 'abc'"),
        (["rules", "--kind", "alert"], "rules: error: argument --kind: invalid choice: 'alert'"),
        (["serve", "hunter2-secret"], "serve: error: 1 unexpected argument(s) that are not options"),
    ],
)
def test_a_command_line_mistake_is_one_line_naming_the_command_and_a_fix(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert err.startswith(f"idaas-sync-exporter {argv[0]}: error: ") and err.endswith(" --help\n")
    assert "hunter2" not in err and "usage:" not in err


@SYSTEM
def test_once_refused_by_a_running_serve_says_how_to_look_without_its_state(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    holder = StateStore(str(state))  # holds the lock, as a running serve does
    try:
        result = _cli("once", "--demo", "--state-path", str(state))
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr[-2000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("idaas-sync-exporter: error: ")]
    assert "is in use by another exporter process" in error and "--state-path ''" in error
