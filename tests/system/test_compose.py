"""The compose file's exporter service, from Compose's interpolation to a running exporter.

podman-compose (from PyPI) interpolates deploy/docker-compose.yml with a `.env` file written as
docs/deployment.md says; the exporter service's entrypoint and command that come out of it are then
run for real with the service's environment: as a local process whose `idaas-sync-exporter` is this
virtual environment's, and, where the image built by test_image.py is present, in that image. Two
settings are added to the environment, since a test neither publishes the container's port nor reaches
IDaaS: the listen address (a free loopback port) and, for a real tenant, the simulator's endpoint. The
rest of the stack (Prometheus, Alertmanager, Grafana) would need images from a registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from idaas_sync_exporter.simulator.clock import ManualClock
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from tests.conftest import AK_ID, AK_SECRET, SIM_START
from tests.e2e import free_port, wait_http
from tests.image import TAG, require_image

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
BIN = Path(sys.executable).parent
PODMAN_COMPOSE = BIN / "podman-compose"
# As tests/system/test_image.py runs podman and names the image it builds.
IMAGE = TAG
IMAGE_ENTRYPOINT = ["idaas-sync-exporter"]
PODMAN_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
# The demo's tenant is the simulator's with seed 1; the "real" tenant is seed 2, so its instance
# can only be read from the simulator, never from a demo started by mistake.
DEMO_SEED, TENANT_SEED = 1, 2


def instance_id(seed: int) -> str:
    return next(iter(World(SCENARIOS["demo"], seed=seed, clock=ManualClock(SIM_START)).instances))


def up_line(seed: int) -> str:
    return f'idaas_up{{instance_id="{instance_id(seed)}"}} 1'


def exporter_service(tmp_path: Path, dotenv: str, *more_files: Path) -> dict[str, Any]:
    """The exporter service as podman-compose interpolates it, with ``dotenv`` as the `.env` file."""
    if not PODMAN_COMPOSE.exists():
        pytest.fail("podman-compose is not installed: pip install -e '.[test]'", pytrace=False)
    env_file = tmp_path / "compose.env"
    env_file.write_text(dotenv, encoding="utf-8")
    # The file is interpolated from the env file alone: none of this process's variables.
    environ = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    result = subprocess.run(
        [
            str(PODMAN_COMPOSE),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE_FILE),
            *(f"--file={path}" for path in more_files),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service: dict[str, Any] = yaml.safe_load(result.stdout)["services"]["exporter"]
    return service


def entrypoint(service: dict[str, Any]) -> list[str]:
    """The service's entrypoint, or the image's (the Dockerfile's ENTRYPOINT) where it sets none."""
    words: list[str] = service.get("entrypoint", IMAGE_ENTRYPOINT)
    return words


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: "" if value is None else str(value) for key, value in service["environment"].items()}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test URL
        body: bytes = response.read()
    return body.decode()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for_line(url: str, line: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    body = ""
    while time.monotonic() < deadline:
        body = get(url)
        if line in body.splitlines():
            return
        time.sleep(0.5)
    raise AssertionError(f"{line!r} not in {url} within {seconds}s:\n{body[-2000:]}")


@contextmanager
def local_service(
    service: dict[str, Any], tmp_path: Path, mounts: dict[str, Path] | None = None, **extra: str
) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """The service's entrypoint and command as a local process, each path in ``mounts`` (container path to
    file) replaced by the file; yields its base URL, its log and its environment once /healthz is 200."""
    port = free_port()
    environment = service_environment(service)
    environment.update(
        # What the image's ENV adds, with this virtual environment's exporter first on PATH.
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        HOME=str(tmp_path),
        PYTHONUNBUFFERED="1",
        IDAAS_EXPORTER_STATE_PATH=str(tmp_path / "state.sqlite3"),
        IDAAS_EXPORTER_LOG_FORMAT="json",
        # Every test's guard: only loopback, no metadata service, no CLI profile.
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true",
        IDAAS_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        **extra,
    )
    argv = [mounted(str(word), mounts or {}) for word in [*entrypoint(service), *service["command"]]]
    log = tmp_path / "exporter.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + 60
        while not healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{argv} (exit {process.poll()}) did not serve /healthz:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", log, environment
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # The shell execs the exporter, so SIGTERM (`docker stop`) reaches it and it exits 0.
    assert process.returncode == 0, log.read_text()[-3000:]


def mounted(word: str, mounts: dict[str, Path]) -> str:
    for container_path, file in mounts.items():
        word = word.replace(container_path, str(file))
    return word


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """The simulated tenant (seed TENANT_SEED) on a free loopback port, accepting AK_ID and AK_SECRET."""
    port = free_port()
    log = tmp_path / "simulator.log"
    command = [str(BIN / "idaas-sync-exporter"), "simulate", "--listen", f"127.0.0.1:{port}"]
    command += ["--access-key-id", AK_ID, "--seed", str(TENANT_SEED)]
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "IDAAS_SIMULATOR_ACCESS_KEY_SECRET": AK_SECRET},
        )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def tenant_dotenv(exporter_args: str) -> str:
    """deploy/.env.example filled in for the simulated tenant, as docs/deployment.md says to."""
    values = {
        "EXPORTER_ARGS": exporter_args,
        "IDAAS_EXPORTER_INSTANCE_IDS": instance_id(TENANT_SEED),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
    }
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values.pop(key)}" if key in values else line)
    assert not values, f"{ENV_EXAMPLE} does not set {sorted(values)}"
    return "\n".join(lines) + "\n"


def test_demo_when_exporter_args_is_unset(tmp_path: Path) -> None:
    service = exporter_service(tmp_path, "")
    assert service["command"] == ["serve", "--demo"]
    with local_service(service, tmp_path) as (base, _, _):
        wait_for_line(f"{base}/metrics", up_line(DEMO_SEED))


def test_real_tenant_with_exporter_args_empty(tmp_path: Path, simulator: str) -> None:
    service = exporter_service(tmp_path, tenant_dotenv(""))
    # Compose hands over an empty argument (which serve refused: `unrecognized arguments`).
    assert service["command"] == ["serve", ""]
    assert service_environment(service)["IDAAS_EXPORTER_INSTANCE_IDS"] == instance_id(TENANT_SEED)
    with local_service(service, tmp_path, IDAAS_EXPORTER_ENDPOINT=simulator) as (base, _, _):
        wait_for_line(f"{base}/metrics", up_line(TENANT_SEED))
        assert 'idaas_up{instance_id="' + instance_id(DEMO_SEED) not in get(f"{base}/metrics")


def documented_config_file() -> tuple[str, str]:
    """docs/deployment.md's second compose file mounting a config file, and its EXPORTER_ARGS."""
    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.DOTALL)
    override = next(block for block in blocks if "services:" in block and "exporter.yaml" in block)
    exporter_args = re.search(r"^# in deploy/\.env: EXPORTER_ARGS=(.+)$", docs, flags=re.MULTILINE)
    assert exporter_args is not None, "docs/deployment.md shows no EXPORTER_ARGS for the config file"
    return override, exporter_args.group(1).strip()


def test_real_tenant_with_a_mounted_config_file_and_several_flags(tmp_path: Path, simulator: str) -> None:
    # The second compose file and EXPORTER_ARGS as docs/deployment.md shows them, one more flag added.
    override, exporter_args = documented_config_file()
    (tmp_path / "exporter-config.yml").write_text(override, encoding="utf-8")
    dotenv = f"EXPORTER_ARGS={exporter_args} --log-level debug\n"
    dotenv += f"ALIBABA_CLOUD_ACCESS_KEY_ID={AK_ID}\nALIBABA_CLOUD_ACCESS_KEY_SECRET={AK_SECRET}\n"
    service = exporter_service(tmp_path, dotenv, tmp_path / "exporter-config.yml")
    # Compose hands over one argument (which serve refused); the entrypoint's shell makes it four.
    assert service["command"] == ["serve", f"{exporter_args} --log-level debug"]
    # The file the second compose file mounts is the one EXPORTER_ARGS names.
    mount = next(volume for volume in service["volumes"] if volume.startswith("./exporter.yaml:"))
    container_path = mount.split(":")[1]
    assert exporter_args == f"--config {container_path}"
    # Its instances under `instances:`, as the docs say, since the compose file's variables win.
    config = tmp_path / "exporter.yaml"
    config.write_text(
        f"endpoint: {simulator}\ninstances:\n  - id: {instance_id(TENANT_SEED)}\n    region: cn-hangzhou\n",
        encoding="utf-8",
    )
    mounts = {container_path: config}
    with local_service(service, tmp_path, mounts) as (base, log, environment):
        wait_for_line(f"{base}/metrics", up_line(TENANT_SEED))
        # The health check of the second compose file, as the engine runs it in the container.
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        check = subprocess.run(
            [mounted(word, mounts) for word in test[1:]],
            capture_output=True,
            text=True,
            timeout=30,
            env=environment,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    assert '"level": "debug"' in log.read_text(), log.read_text()[-2000:]


def podman(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("podman")
    assert executable is not None
    return subprocess.run(
        [executable, *PODMAN_FLAGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_the_image_runs_the_service_entrypoint(tmp_path: Path, simulator: str) -> None:
    """In the image (its /bin/sh, its PATH, its ENV): an empty EXPORTER_ARGS serves a real tenant."""
    require_image()  # built once per session, whichever test needs it first
    service = exporter_service(tmp_path, tenant_dotenv(""))
    port = free_port()
    environment = service_environment(service)
    environment.update(IDAAS_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}", IDAAS_EXPORTER_ENDPOINT=simulator)
    name = f"idaas-compose-test-{port}"
    podman("rm", "--force", name)
    # Variables by name only: podman copies their values from its environment, not the command line.
    env_flags = [flag for key in environment for flag in ("--env", key)]
    started = podman(
        "run", "--detach", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/var/lib/idaas-sync-exporter:rw,U", *ULIMITS, *env_flags,
        "--entrypoint", json.dumps(entrypoint(service)), IMAGE, *service["command"],
        env=environment,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        except AssertionError:
            raise AssertionError(podman("logs", name).stdout[-3000:]) from None
        wait_for_line(f"http://127.0.0.1:{port}/metrics", up_line(TENANT_SEED))
        stopped = podman("stop", "--time", "10", name)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0", podman("logs", name).stdout[-3000:]
    finally:
        podman("rm", "--force", name)
