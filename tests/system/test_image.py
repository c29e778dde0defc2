"""The container image, built from the Dockerfile and run as a user would run it.

Built with podman from ``deploy/image/build.sh`` on the base image already present (CI bootstraps a
stand-in with ``deploy/image/build-standin.sh``), then run non-root with a read-only root filesystem
and the state volume, serving the demo on a port other than the default, so the image's own
HEALTHCHECK passes only if it follows ``IDAAS_EXPORTER_LISTEN_ADDRESS``.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from idaas_sync_exporter.config.settings import DEFAULT_PORT
from tests.e2e import free_port, wait_for
from tests.image import TAG, podman, require_image
from tests.pki import make_ca, make_leaf

ROOT = Path(__file__).resolve().parents[2]
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
STATE = "/var/lib/idaas-sync-exporter"
# The state volume as a tmpfs owned by the container's user, as a Docker named volume (a copy of the
# image's directory, owned by 10001) or Kubernetes' fsGroup provide it. `mode=1777` is not enough:
# podman 4.3 with runc leaves the tmpfs root-owned 0755 whatever the mode says.
STATE_TMPFS = f"{STATE}:rw,U"
# Polls in flight get up to 5 s to commit after SIGTERM (docs/counting.md); Docker and podman wait
# 10 s before SIGKILL, which must never be needed.
STOP_TIMEOUT_SECONDS = 10

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image() -> str:
    """Builds the image from the Dockerfile as ``TAG``; returns the revision it was built with."""
    commit = require_image()
    inspected = json.loads(podman("image", "inspect", TAG).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"
    assert inspected["Healthcheck"]["Test"] == ["CMD", "idaas-sync-exporter", "healthcheck"]
    return commit


@contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    """``podman run`` of the image as a user would run it: non-root, read-only root, the state volume."""
    podman("rm", "--force", name, check=False)
    podman(
        "run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", STATE_TMPFS, *ULIMITS,
        *args,
    )  # fmt: skip
    try:
        yield name
    finally:
        podman("rm", "--force", name, check=False)


def served(name: str, url: str, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the container did not serve {url}: {podman('logs', name, check=False).stderr[-4000:]}")


def test_the_image_serves_passes_its_healthcheck_and_stops_cleanly(image: str) -> None:
    port = free_port()
    assert port != DEFAULT_PORT
    with container(
        f"idaas-image-test-{os.getpid()}",
        "--env", f"IDAAS_EXPORTER_LISTEN_ADDRESS=127.0.0.1:{port}",
        # A demo keeps no state unless told where; this one uses the volume as a real tenant would.
        TAG, "serve", "--demo", "--state-path", f"{STATE}/state.sqlite3",
    ) as name:  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        served(name, f"{base}/healthz")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310 - loopback
            body = response.read().decode()
        assert re.search(rf'^idaas_exporter_build_info\{{[^}}]*revision="{image}"', body, re.MULTILINE), body[:2000]

        # The image's own HEALTHCHECK, which must find the non-default port by itself.
        checked = podman("healthcheck", "run", name, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # And it is not passing by accident: told another port, the same command fails in one line.
        elsewhere = podman("exec", name, "idaas-sync-exporter", "healthcheck", "--listen-address",
                           f"127.0.0.1:{free_port()}", check=False)  # fmt: skip
        assert elsewhere.returncode == 1
        assert elsewhere.stderr.count("\n") == 1 and "connection refused" in elsewhere.stderr

        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("exec", name, "touch", "/opt/venv/written", check=False).returncode != 0  # read-only root
        wait_for(
            lambda: podman("exec", name, "test", "-s", f"{STATE}/state.sqlite3", check=False).returncode == 0,
            30,
            "the state file on the volume",
        )

        started = time.monotonic()
        podman("stop", "--time", str(STOP_TIMEOUT_SECONDS), name, timeout=STOP_TIMEOUT_SECONDS + 30)
        stopped_after = time.monotonic() - started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, state
        assert stopped_after < STOP_TIMEOUT_SECONDS, f"SIGTERM took {stopped_after:.1f} s"

        logs = podman("logs", name).stderr.splitlines()
        events = [json.loads(line) for line in logs if line.startswith("{")]
        assert events and len(events) == len(logs), logs[:5]  # JSON logs, one object a line
        assert {"listening", "stopped"} <= {event.get("msg") for event in events}


def test_the_healthcheck_follows_tls_from_the_web_config(image: str, tmp_path: Path) -> None:
    config = tmp_path / "web"
    config.mkdir()
    ca = make_ca(config / "ca", "test CA")
    make_leaf(config / "server", "localhost", ca, server=True)
    # Paths relative to the web config; the files readable by the container's user.
    (config / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    for path in (config, *config.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    with container(
        f"idaas-image-tls-test-{os.getpid()}",
        "--volume", f"{config}:/etc/idaas-sync-exporter:ro",
        # Loopback only: with the host network, all interfaces would be the machine's own.
        "--env", f"IDAAS_EXPORTER_LISTEN_ADDRESS=127.0.0.1:{port}",
        "--env", "IDAAS_EXPORTER_WEB_CONFIG_FILE=/etc/idaas-sync-exporter/web.yml",
        TAG, "serve", "--demo",
    ) as name:  # fmt: skip
        served(name, f"https://127.0.0.1:{port}/healthz", ssl.create_default_context(cafile=str(config / "ca.crt")))
        checked = podman("healthcheck", "run", name, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
