"""Helpers that start real processes (the exporter, Prometheus) on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDAAS_EXPORTER_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--demo",
            "--demo-speed",
            str(speed),
            "--listen-address",
            f"127.0.0.1:{port}",
            "--poll-interval-seconds",
            str(poll_interval),
            *extra,
        ],
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
def prometheus(tmp: Path, config: str, port: int) -> Iterator[str]:
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
