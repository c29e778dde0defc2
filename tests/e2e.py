"""Helpers that start real processes (the exporter, Prometheus) on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Which package brings each binary the system tests run.
BINARY_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "chromium": "chromium",
}


# Debian renames alertmanager; other packagings keep the upstream name.
BINARY_ALTERNATIVES = {"prometheus-alertmanager": ("prometheus-alertmanager", "alertmanager")}


def exporter_command(*args: str) -> list[str]:
    """The exporter's command line, run from this interpreter."""
    return [sys.executable, "-m", "idaas_sync_exporter", *args]


def exporter_env(**extra: str) -> dict[str, str]:
    """This environment without any IDAAS_EXPORTER_ setting (each test gives its own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDAAS_EXPORTER_")}
    env.update(extra)
    return env


def require_binary(name: str) -> str:
    """The path of ``name``, or a one-line failure that says how to install it."""
    path = next(filter(None, map(shutil.which, BINARY_ALTERNATIVES.get(name, (name,)))), None)
    if path is None:
        package = BINARY_PACKAGES.get(name, name)
        elsewhere = (
            "or put a Chromium binary on PATH as `chromium`"
            if package == "chromium"
            else "or put the binary from prometheus.io/download on PATH"
        )
        pytest.fail(
            f"{name} is not installed: run `sudo apt-get install {package}` on Debian/Ubuntu "
            f"(`bash .ci/run` does it as root), `brew install {package.removeprefix('prometheus-')}` on macOS, "
            + elsewhere,
            pytrace=False,
        )
    return path


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback test URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


@contextmanager
def demo_exporter(port: int, *extra: str, poll_interval: float = 2, speed: float = 300) -> Iterator[str]:
    env = exporter_env()
    process = subprocess.Popen(
        exporter_command(
            "serve",
            "--demo",
            "--demo-speed",
            str(speed),
            "--listen-address",
            f"127.0.0.1:{port}",
            "--poll-interval-seconds",
            str(poll_interval),
            *extra,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, f"exporter exited {process.returncode}: {stderr[-2000:]}"


@contextmanager
def prometheus(tmp: Path, config: str, port: int, *flags: str) -> Iterator[str]:
    binary = require_binary("prometheus")
    (tmp / "prometheus.yml").write_text(config, encoding="utf-8")
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


class LogReader:
    """Collects the exporter's JSON log events from its stderr."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.lines.append(line)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def close(self) -> None:
        """After the process ended: the rest of its output, then the pipe closed."""
        self._thread.join(timeout=10)
        if self._process.stderr is not None:
            self._process.stderr.close()

    def polls_total(self) -> int:
        return sum(1 for e in list(self.events) if e.get("msg") == "poll finished")

    def polls(self, instance_id: str, message: str = "poll finished") -> int:
        return sum(1 for e in list(self.events) if e.get("msg") == message and e.get("instance_id") == instance_id)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def metrics(port: int) -> str:
    """The text exposition of the exporter on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def job_counts(body: str) -> dict[str, float]:
    """target_id -> jobs counted, from the text exposition."""
    counts: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("idaas_sync_jobs_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            target = labels["target_id"].strip('"')
            counts[target] = counts.get(target, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
