"""A hostile web configuration file or request cannot take the HTTP side down or put a secret in the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import idaas_sync_exporter.web.config as web_config
from idaas_sync_exporter.collect.store import StateStore
from idaas_sync_exporter.config.validation import Document, load_document
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.web.config import WebConfigError, WebConfigWatcher, load
from idaas_sync_exporter.web.server import build_app

GOOD = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
HASH = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(rounds=4)).decode()
LONG = "x" * 6000
# YAML keys are at most 1,024 characters.
LONG_KEY = "k" * 1000


def one_bounded_line(message: str) -> None:
    """A message fit for a log line or a terminal: bounded, and nothing a terminal or a log reader acts on.

    (The longest fixed part is the list of cipher suite names, about 700 characters.)
    """
    assert len(message) < 1000, len(message)
    assert message.isprintable(), [c for c in message if not c.isprintable()][:5]


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "a\x0bb", "a\x7fb", "deny\x1b[31m", "a\x85b", "naïve", " deny", "deny\t", "", "x" * 5000],
    ids=["nul", "vt", "del", "esc", "nel", "non_ascii", "leading_space", "trailing_tab", "empty", "long"],
)
def test_a_header_value_aiohttp_cannot_send_is_refused_in_the_file(tmp_path: Path, value: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": value}}}))
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert (
        f"web config: {path}:3:22: http_server_config.headers.X-Frame-Options: must be one line of visible ASCII"
        in message
    )
    one_bounded_line(str(caught.value))


def test_a_header_value_with_spaces_and_tabs_inside_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    value = "default-src 'self';\tframe-ancestors 'none'"
    path.write_text(yaml.safe_dump({"http_server_config": {"headers": {"Content-Security-Policy": value}}}))
    assert load(str(path)).headers == {"Content-Security-Policy": value}


def test_http2_off_is_honoured_as_it_is(tmp_path: Path) -> None:
    # exporter-toolkit's http2 key: this server speaks HTTP/1.1, so false needs nothing done.
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n")
    assert load(str(path)).headers == {"X-Frame-Options": "deny"}


TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.crt\n"
HOSTILE_FILES = {
    "mixed_key_types": "1: a\nb: c\n",
    "client_auth_type_list": TLS + "  client_auth_type: [a]\n",
    "client_auth_type_mapping": TLS + "  client_auth_type: {a: b}\n",
    "min_version_list": TLS + "  min_version: [TLS12]\n",
    "max_version_list": TLS + "  max_version: [TLS13]\n",
    "curve_in_a_list": TLS + "  curve_preferences: [[X25519]]\n",
    "tls_keys_mixed": TLS + "  1: a\n  b: c\n",
    "cert_path_long_with_newline": f'tls_server_config:\n  cert_file: "/{LONG}\\n"\n  key_file: tls.crt\n',
    "tls_key_long_with_newline": TLS + f'  "{LONG_KEY}\\nforged: line": 1\n',
    "client_auth_type_long_with_escape": TLS + f'  client_auth_type: "{LONG}\\e[2J"\n',
    "min_version_with_carriage_return": TLS + f'  min_version: "TLS12\\r{LONG}"\n',
    "cipher_suite_long_with_newline": TLS + f'  cipher_suites: ["{LONG}\\n"]\n',
    "hash_with_lone_surrogate": 'basic_auth_users:\n  u: "$2y$10$\\ud800abc"\n',
    "hash_of_cost_31": "basic_auth_users:\n  u: '$2y$31$" + "a" * 53 + "'\n",
    "user_with_lone_surrogate": f"basic_auth_users:\n  \"\\ud800\": '{HASH}'\n",
    "user_long_with_escape": f"basic_auth_users:\n  \"{LONG_KEY}\\e[31m\": '{HASH}'\n",
    "user_not_a_name": f"basic_auth_users:\n  [a]: '{HASH}'\n",
    "users_mixed_keys": f"basic_auth_users:\n  1: '{HASH}'\n  b: '{HASH}'\n",
    "users_a_list": "basic_auth_users: [a, b]\n",
    "header_name_with_newline": 'http_server_config:\n  headers:\n    "X-\\nEvil: yes": a\n',
    "header_names_mixed": "http_server_config:\n  headers:\n    1: a\n    X-Frame-Options: deny\n",
    "header_value_nul": 'http_server_config:\n  headers:\n    X-Frame-Options: "a\\0b"\n',
    "http_server_config_unknown_key": "http_server_config:\n  http3: true\n",
    "http2_asked_for": "http_server_config:\n  http2: true\n",
    "http_server_config_a_list": "http_server_config: [a]\n",
    "top_level_a_list": "[a, b]\n",
}
HOSTILE = sorted(HOSTILE_FILES)


def write_hostile(config: Path, name: str) -> None:
    (config.parent / "tls.crt").write_text("a regular file: load() reads no certificate")
    config.write_text(HOSTILE_FILES[name])


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_web_config_is_one_bounded_line_never_a_crash(tmp_path: Path, name: str) -> None:
    path = tmp_path / "web.yml"
    write_hostile(path, name)
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    one_bounded_line(str(caught.value))
    assert LONG[:300] not in str(caught.value) and LONG_KEY[:300] not in str(caught.value)


@pytest.fixture
def caught_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


@contextlib.asynccontextmanager
async def serving(config: Path) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], WebConfigWatcher]]:
    watcher = WebConfigWatcher(str(config))
    exporter = Exporter(store=StateStore(None), pollers={}, api_stats=ApiStats())
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(build_app(exporter, poll_interval=60, web_config=watcher))
    )
    await client.start_server()
    try:
        yield client, watcher
    finally:
        await client.close()


async def answered_quickly(http: TestClient[web.Request, web.Application], path: str) -> None:
    started = time.monotonic()
    answer = await asyncio.wait_for(http.get(path), 10)
    assert answer.status == 200, (path, answer.status)
    assert answer.headers["X-Frame-Options"] == "deny"  # the last good configuration
    assert time.monotonic() - started < 2, path


def not_reloaded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "web config not reloaded; the last good one stays in force"]


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_hostile_web_config_on_reload_is_one_line_and_the_last_good_one_stays(
    tmp_path: Path, caught_errors: pytest.LogCaptureFixture, name: str
) -> None:
    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    async with serving(config) as (http, watcher):
        write_hostile(config, name)
        await answered_quickly(http, "/healthz")  # notices the change
        assert await watcher.reloaded() is False
        for path in ("/healthz", "/metrics", "/"):
            await answered_quickly(http, path)
    [line] = not_reloaded(caught_errors)
    one_bounded_line(line.__dict__["error"])
    assert not [r for r in caught_errors.records if r.levelno >= logging.ERROR and r is not line]


async def test_a_good_change_is_put_in_force_off_the_event_loop(
    tmp_path: Path, caught_errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    async with serving(config) as (http, watcher):
        loop_thread = threading.current_thread()
        readers: list[threading.Thread] = []

        def recorded(path: str) -> Document:
            readers.append(threading.current_thread())
            return load_document(path)

        monkeypatch.setattr(web_config, "load_document", recorded)
        config.write_text(f"{GOOD}basic_auth_users:\n  prometheus: '{HASH}'\n")
        await answered_quickly(http, "/healthz")
        assert await watcher.reloaded() is True
        assert (await http.get("/metrics")).status == 401
        assert readers and loop_thread not in readers


async def test_a_read_that_hangs_never_stops_the_endpoints(
    tmp_path: Path, caught_errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    released = threading.Event()

    def hung(path: str) -> Document:
        # A file on a hung mount: let go after 5 s at the latest, so a read on the event loop fails
        # the test instead of hanging it.
        released.wait(5)
        raise OSError("the mount answered at last")

    async with serving(config) as (http, watcher):
        monkeypatch.setattr(web_config, "load_document", hung)
        config.write_text(GOOD + "\n")
        try:
            for _ in range(3):
                for path in ("/healthz", "/metrics"):
                    await answered_quickly(http, path)
        finally:
            released.set()
        assert await watcher.reloaded() is False
    [line] = not_reloaded(caught_errors)
    assert line.__dict__["error"].endswith("cannot be used (OSError); fix the file")


def release_fifo_reader(path: Path, stop: threading.Event) -> None:
    """Opens the FIFO for writing and closes it, so a reader blocked on it sees its end, until stopped."""
    while not stop.wait(0.1):
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO until someone reads


async def test_a_web_config_swapped_for_a_fifo_never_stops_the_endpoints(
    tmp_path: Path, caught_errors: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    stop = threading.Event()
    async with serving(config) as (http, _):
        config.unlink()
        os.mkfifo(config)
        # Released after 5 s at the latest: a read on the event loop then fails the test instead of hanging it.
        releaser = threading.Timer(5, release_fifo_reader, args=(config, stop))
        releaser.start()
        try:
            for _ in range(3):
                for path in ("/healthz", "/metrics"):
                    await answered_quickly(http, path)
                await asyncio.sleep(0.2)
        finally:
            releaser.cancel()
            releaser_now = threading.Thread(target=release_fifo_reader, args=(config, stop), daemon=True)
            releaser_now.start()
            await asyncio.sleep(0.3)
            stop.set()


REFUSED_HEADERS = {
    "authorization": b"Authorization: Basic cHJvbWV0aGV1czpTdXBlclNlY3JldFBhc3N3b3Jk\x01",
    "cookie": b"Cookie: session=c2Vzc2lvbi1zZWNyZXQtdG9rZW4\x01",
}


async def refused(http: TestClient[web.Request, web.Application], header: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n" + header + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(head.split(b" ")[1])


@pytest.mark.parametrize("name", sorted(REFUSED_HEADERS))
async def test_a_refused_header_is_logged_by_its_kind_and_name_never_its_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    header = REFUSED_HEADERS[name]
    async with serving(config) as (http, _):
        assert await refused(http, header) == 400
    [line] = [r for r in caplog.records if r.name == "aiohttp.server"]
    shown = " ".join(f"{key}={value}" for key, value in line.__dict__.items()) + line.getMessage()
    secret = header.partition(b": ")[2][6:26].decode("latin-1")
    assert secret not in shown, "the header's value reached the log"
    assert line.__dict__["error"] == "a request the HTTP parser refuses"
    assert line.__dict__.get("header", header.partition(b":")[0].decode()) == header.partition(b":")[0].decode()


async def test_the_reload_metrics_follow_each_read_of_the_web_config(
    tmp_path: Path, caught_errors: pytest.LogCaptureFixture
) -> None:
    from types import MappingProxyType

    from idaas_sync_exporter.metrics.selfmetrics import SelfMetrics
    from idaas_sync_exporter.metrics.snapshot import ApiRequestView, Snapshot

    empty = Snapshot(1, 0.0, MappingProxyType({}), ApiRequestView(MappingProxyType({}), MappingProxyType({})))

    def exposed(watcher: web_config.WebConfigWatcher) -> str:
        lines = SelfMetrics(process=False, web_config=lambda: watcher.last_reload).render(empty)[False]
        return "".join(
            line for line in lines.decode().splitlines(keepends=True) if line.startswith("idaas_exporter_config_")
        )

    config = tmp_path / "web.yml"
    config.write_text(GOOD)
    async with serving(config) as (http, watcher):
        started = watcher.last_reload
        assert started.successful and abs(started.success_time - time.time()) < 60
        assert "idaas_exporter_config_last_reload_successful 1\n" in exposed(watcher)
        write_hostile(config, HOSTILE[0])
        await answered_quickly(http, "/healthz")
        assert await watcher.reloaded() is False
        assert watcher.last_reload == type(started)(successful=False, success_time=started.success_time)
        assert "idaas_exporter_config_last_reload_successful 0\n" in exposed(watcher)
        config.write_text(f"{GOOD}basic_auth_users:\n  prometheus: '{HASH}'\n")
        await answered_quickly(http, "/healthz")
        assert await watcher.reloaded() is True
        assert watcher.last_reload.successful and watcher.last_reload.success_time >= started.success_time
    assert len(not_reloaded(caught_errors)) == 1
    # Without a web config file the two series are absent, not a made-up success.
    assert b"idaas_exporter_config_" not in SelfMetrics(process=False).render(empty)[False]
