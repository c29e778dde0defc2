"""Hostile credentials through the whole exporter, run as another process against the simulator.

A token with a line break or a control character, a key file that is a symlink to another
secret or to /proc/self/environ, a FIFO, a device, a directory or a huge file in place of a key:
the exporter either uses the cleaned value, stops at start with exit 2 and one line naming the
source, or fails the poll with one line; the value itself never reaches stderr (logfmt or JSON),
`/`, `/readyz` or the output of `once`, and a FIFO never stops `/healthz` or `/metrics`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.simulator.clock import ScaledClock
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import ScenarioSpec, World
from tests.conftest import STS_ID, STS_SECRET, STS_TOKEN
from tests.e2e import LogReader, exporter_command, exporter_env, free_port, wait_for

MARKER = "MARKER-8c2e51-never-shown"
SPEC = ScenarioSpec("hostile-secrets", providers_per_instance=1, applications_per_instance=1, anchors=False)
START_SECONDS = 30


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[str, str]]:
    """The simulator's endpoint and its one instance, accepting the STS key of tests.conftest."""
    world = World(SPEC, seed=5, clock=ScaledClock(speed=60))
    key = AccessKey(STS_ID, SecretStr(STS_SECRET), SecretStr(STS_TOKEN))
    with SimulatorThread(SimulatorApp(world, [key])) as running:
        yield running.endpoint, next(iter(world.instances))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in exporter_env().items() if not k.startswith("ALIBABA_CLOUD_ACCESS")}
    return {**env, "HOSTILE_MARKER_SECRET": MARKER, **extra}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        exporter_command(*args), capture_output=True, text=True, timeout=START_SECONDS, env=env, check=False
    )


def _assert_clean(*texts: str) -> None:
    """Fails naming what leaked where, never quoting the text: that would print the secret in the test output."""
    for index, text in enumerate(texts):
        for name, secret in (("the marker", MARKER), ("the STS token", STS_TOKEN), ("the STS secret", STS_SECRET)):
            if secret in text:
                pytest.fail(f"{name} reached output #{index}", pytrace=False)


def _settings_args(simulator: tuple[str, str], *extra: str) -> list[str]:
    endpoint, instance_id = simulator
    return ["--instance-ids", instance_id, "--endpoint", endpoint, "--state-path", "", *extra]


# -- at start --------------------------------------------------------------------


def test_a_token_with_a_trailing_newline_is_used_without_it(simulator: tuple[str, str]) -> None:
    env = _env(
        IDAAS_EXPORTER_ACCESS_KEY_ID=STS_ID,
        IDAAS_EXPORTER_ACCESS_KEY_SECRET=STS_SECRET + "\n",
        IDAAS_EXPORTER_SECURITY_TOKEN=STS_TOKEN + "\n",
    )
    result = _run("once", *_settings_args(simulator, "--log-level", "warning"), env=env)
    _assert_clean(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert f'idaas_up{{instance_id="{simulator[1]}"}} 1' in result.stdout


@pytest.mark.parametrize("command", ["once", "serve"])
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_a_token_with_a_control_character_stops_the_exporter_at_start(
    simulator: tuple[str, str], command: str, log_format: str
) -> None:
    env = _env(
        IDAAS_EXPORTER_ACCESS_KEY_ID=STS_ID,
        IDAAS_EXPORTER_ACCESS_KEY_SECRET=STS_SECRET,
        IDAAS_EXPORTER_SECURITY_TOKEN=f"{STS_TOKEN}\x1b[2J{MARKER}",
    )
    listen = ["--listen-address", f"127.0.0.1:{free_port()}"] if command == "serve" else []
    result = _run(command, *_settings_args(simulator, "--log-format", log_format, *listen), env=env)
    _assert_clean(result.stdout, result.stderr)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "idaas-sync-exporter: invalid setting: security_token (IDAAS_EXPORTER_SECURITY_TOKEN, --security-token"
    )
    assert "the STS security token has a control character" in result.stderr


def _key_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path standing where a key file should be, and what the one-line error says of it."""
    path = tmp_path / "key"
    if kind == "another secret":
        other = tmp_path / "other-secret"
        other.write_text(f"password: hunter2\n{MARKER}\n")
        path.symlink_to(other)
        return path, "the AccessKey id has a line break inside it"
    if kind == "/proc/self/environ":
        path.symlink_to("/proc/self/environ")
        return path, "the AccessKey id has"  # a space, a control character: whatever comes first in it
    if kind == "FIFO":
        os.mkfifo(path)
        return path, "is not a regular file (a FIFO)"
    if kind == "/dev/zero":
        path.symlink_to("/dev/zero")
        return path, "is not a regular file (a character device)"
    if kind == "directory":
        path.mkdir()
        return path, "is not a regular file (a directory)"
    with path.open("wb") as handle:
        handle.truncate(1 << 30)
    return path, "is larger than 16384 bytes"


KINDS = ["another secret", "/proc/self/environ", "FIFO", "/dev/zero", "directory", "1 GB sparse file"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_id_file_that_is_not_a_key_stops_the_exporter_at_start(
    simulator: tuple[str, str], tmp_path: Path, kind: str
) -> None:
    endpoint, instance_id = simulator
    path, expected = _key_file(tmp_path, kind)
    config = tmp_path / "exporter.yml"
    config.write_text(
        "accounts: [{name: a, access_key: {id_file: " + str(path) + ", secret_env: S}}]\n"
        f"instances: [{{id: {instance_id}, endpoint: '{endpoint}', account: a}}]\n"
    )
    started = time.monotonic()
    command = "serve" if kind == "FIFO" else "once"  # the FIFO used to hang serve before it said anything
    listen = ["--listen-address", f"127.0.0.1:{free_port()}"] if command == "serve" else []
    result = _run(command, "--config", str(config), "--state-path", "", *listen, env=_env(S=STS_SECRET))
    elapsed = time.monotonic() - started
    _assert_clean(result.stdout, result.stderr)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "accounts[0].access_key.id_file" in result.stderr and str(path) in result.stderr
    assert expected in result.stderr
    assert elapsed < 15  # the start-up of Python and the exporter; nothing is read for long


# -- at run time ---------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def _serving(args: list[str], env: dict[str, str], port: int) -> Iterator[LogReader]:
    process = subprocess.Popen(
        exporter_command("serve", *args, "--listen-address", f"127.0.0.1:{port}", "--poll-interval-seconds", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reader = LogReader(process)
    try:
        wait_for(lambda: _healthy(port), START_SECONDS, "/healthz")
        yield reader
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.close()


def _healthy(port: int) -> bool:
    try:
        return _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def _failures(reader: LogReader, phrase: str) -> list[str]:
    return [line for line in list(reader.lines) if "poll failed" in line and phrase in line]


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_a_bad_token_from_the_default_chain_fails_each_poll_and_is_never_shown(
    simulator: tuple[str, str], log_format: str
) -> None:
    env = _env(
        ALIBABA_CLOUD_ACCESS_KEY_ID=STS_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=STS_SECRET,
        ALIBABA_CLOUD_SECURITY_TOKEN=f"{STS_TOKEN}\x07{MARKER}",
    )
    phrase = "the default credential chain"
    port = free_port()
    with _serving(_settings_args(simulator, "--log-format", log_format), env, port) as logs:
        wait_for(lambda: len(_failures(logs, phrase)) >= 2, START_SECONDS, "two failed polls")
        ready_status, ready = _get(f"http://127.0.0.1:{port}/readyz")
        _, landing = _get(f"http://127.0.0.1:{port}/")
    _assert_clean(ready, landing, "".join(logs.lines))
    assert ready_status == 503 and phrase in ready and "the STS security token has a control character" in ready
    assert phrase in landing
    if log_format == "json":
        assert all(json.loads(line)["msg"] for line in logs.lines)  # every line is one JSON event
    once = _run("once", *_settings_args(simulator, "--log-format", log_format), env=env)
    _assert_clean(once.stdout, once.stderr)
    assert once.returncode == 1
    assert f"idaas-sync-exporter: error: poll failed: {simulator[1]}: {phrase}" in once.stderr


def test_key_files_turned_hostile_at_run_time_fail_the_poll_and_the_server_keeps_answering(
    simulator: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, instance_id = simulator
    id_file, token_file = tmp_path / "id", tmp_path / "token"
    id_file.write_text(STS_ID + "\n")
    token_file.write_text(STS_TOKEN + "\n")
    config = tmp_path / "exporter.yml"
    config.write_text(
        f"accounts: [{{name: a, access_key: {{id_file: {id_file}, secret_env: S, "
        f"security_token_file: {token_file}}}}}]\n"
        f"instances: [{{id: {instance_id}, endpoint: '{endpoint}', account: a}}]\n"
    )
    port = free_port()
    args = ["--config", str(config), "--state-path", "", "--log-format", "json"]
    with _serving(args, _env(S=STS_SECRET), port) as logs:
        wait_for(lambda: logs.polls(instance_id) >= 1, START_SECONDS, "a successful poll")

        token_file.write_text(f"{STS_TOKEN}\n{MARKER}\n")
        wait_for(lambda: bool(_failures(logs, "the STS security token has a line break")), 20, "the token refused")

        token_file.write_text(STS_TOKEN + "\n")
        id_file.unlink()
        id_file.symlink_to("/proc/self/environ")
        wait_for(lambda: bool(_failures(logs, "id_file " + str(id_file) + ": the AccessKey id has")), 20, "environ")
        _, landing = _get(f"http://127.0.0.1:{port}/")
        _assert_clean(landing)
        assert f"id_file {id_file}: the AccessKey id has" in landing

        id_file.unlink()
        os.mkfifo(id_file)
        wait_for(lambda: bool(_failures(logs, "is not a regular file (a FIFO)")), 20, "the FIFO refused")
        for _ in range(3):  # polls keep failing; the server keeps answering at once
            started = time.monotonic()
            assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            metrics_status, body = _get(f"http://127.0.0.1:{port}/metrics")
            _assert_clean(body)
            assert metrics_status == 200 and f'idaas_up{{instance_id="{instance_id}"}} 0' in body
            assert time.monotonic() - started < 2
            time.sleep(1)
        failures = len(_failures(logs, "is not a regular file (a FIFO)"))
        wait_for(lambda: len(_failures(logs, "is not a regular file (a FIFO)")) > failures, 20, "another poll")
        _, landing = _get(f"http://127.0.0.1:{port}/")
    _assert_clean(landing, "".join(logs.lines))
    for line in logs.lines:
        event = json.loads(line)
        if event["msg"] == "poll failed":
            assert event["error"].startswith("account a (access_key id from ")
