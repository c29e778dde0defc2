"""The container image as the system tests build it: once per test session, whichever test needs it first.

``tests/system/test_image.py``, ``test_kubernetes_pod.py`` and ``test_compose.py`` all run the image;
each used to build (or merely look for) it on its own, so a test that ran before the build skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
TAG = "localhost/idaas-sync-exporter:test"
# As deploy/image/podman.sh runs podman: crun fails on CI machines, runc with cgroupfs works.
PODMAN_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")


def unavailable(reason: str) -> None:
    """Fail in CI, where the image must be tested; elsewhere skip with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the image must be tested here)", pytrace=False)
    pytest.skip(reason)


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("podman")
    assert executable is not None
    result = subprocess.run(
        [executable, *PODMAN_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def revision() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def require_image() -> str:
    """The image built from the Dockerfile as ``TAG`` (skipped, or failed under CI=true, where it cannot be).

    Returns the revision it was built with.
    """
    if shutil.which("podman") is None:
        unavailable("podman is not installed: `sudo apt-get install podman runc` (`bash .ci/run` does it as root)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        unavailable(
            f"{BASE_IMAGE} is not present: `podman pull` it, or `sudo bash deploy/image/build-standin.sh` "
            "where no registry is reachable"
        )
    return _build()


@functools.cache
def _build() -> str:
    commit = revision()
    built = subprocess.run(
        ["bash", str(ROOT / "deploy" / "image" / "build.sh"), TAG],
        env={**os.environ, "REVISION": commit},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return commit
