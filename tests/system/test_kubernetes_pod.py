"""The Kubernetes manifests' pod, run with podman as the kubelet would run it.

No cluster is needed: each kustomization is rendered with ``kubectl kustomize`` and the StatefulSet's
first pod (``<name>-0``) is started from the image built as in ``test_image.py``, with exactly the
container's command and args, its env (``value``, ``valueFrom`` of Secrets and ConfigMaps, ``envFrom``),
its user and groups, read-only root, capabilities, memory limit and volumes, then its startup,
readiness and liveness probes are sent as the kubelet sends them (path, port by name or number,
scheme, no certificate check). A manifest this runner cannot start fails the test.

The pod's network is a namespace of its own (a ``--network none`` holder container, as Kubernetes'
pause container). The IDaaS API is the built-in simulator, run as a second container of that pod on
127.0.0.1, and a test-time overlay (a kustomization in a temporary directory, over the shipped one)
sets what a user sets: the image, the instance ids (or the config file's), the AccessKeys in the
Secret, and ``IDAAS_EXPORTER_ENDPOINT`` (or each instance's ``endpoint``) pointing at the simulator.
The probes connect to 127.0.0.1 inside the pod's namespace; the kubelet connects to the pod's IP,
which a listener on all interfaces (the default ``:10129``) also answers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from idaas_sync_exporter.config.shards import shard_of
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from tests.image import TAG, podman, require_image, unavailable
from tests.pki import make_ca, make_leaf

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
SIMULATOR_SECRET = "k8s-pod-test-secret-5e4d3c"
# The volume types the runner knows; any other fails the test rather than being left out.
KNOWN_VOLUMES = {"emptyDir", "persistentVolumeClaim", "secret", "configMap"}

pytestmark = pytest.mark.slow

# Sent inside the pod's network namespace: "http"|"https"|"tcp", port, path, timeout, then
# header lines. Prints the status code and the body; HTTPS is not verified, as the kubelet's is not.
PROBE = r"""
import socket, ssl, sys, urllib.error, urllib.request
scheme, port, path, timeout, *headers = sys.argv[1:]
if scheme == "tcp":
    socket.create_connection(("127.0.0.1", int(port)), timeout=float(timeout)).close()
    print(0)
    sys.exit(0)
request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers={"User-Agent": "kube-probe/1.32"})
for line in headers:
    name, _, value = line.partition(":")
    request.add_header(name, value)
context = ssl._create_unverified_context()
try:
    with urllib.request.urlopen(request, timeout=float(timeout), context=context) as answer:
        print(answer.status)
        print(answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code)
"""


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from the Dockerfile, once per session (``tests/image.py``), as ``TAG``."""
    if shutil.which("kubectl") is None:
        unavailable("kubectl is not installed: the kustomizations cannot be rendered here")
    if os.geteuid() != 0:
        unavailable("not root: Secret and ConfigMap volumes are laid out root-owned, as the kubelet does")
    require_image()
    return TAG


def render(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize``; test overlays live outside the repository, hence no load restriction."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl is not installed: the kustomizations cannot be rendered here")
        raise AssertionError  # unavailable() skips or fails
    result = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None) -> dict[str, Any]:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return obj
    raise AssertionError(f"the pod refers to {kind} {namespace}/{name}, which the manifests do not hold")


def data_of(obj: dict[str, Any]) -> dict[str, str]:
    """A Secret's or ConfigMap's keys and values, as the API server would store and serve them."""
    if obj["kind"] == "ConfigMap":
        return dict(obj.get("data", {}))
    values = {key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()}
    values.update(obj.get("stringData", {}))
    return values


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (``$$`` escapes); unknown names stay as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


@dataclass
class Pod:
    name: str
    holder: str
    container: str
    spec: dict[str, Any]
    ports: dict[str, int]

    def send(self, scheme: str, port: int | str, path: str, timeout: float, *headers: str) -> tuple[int, str]:
        """A request from inside the pod's network; (0, error) when it did not connect."""
        number = self.ports[port] if isinstance(port, str) else port
        result = podman(
            "exec", self.holder, "python", "-c", PROBE, scheme, str(number), path, str(timeout), *headers,
            check=False, timeout=timeout + 30,
        )  # fmt: skip
        if result.returncode != 0:
            return 0, (result.stdout + result.stderr)[-500:]
        code, _, body = result.stdout.partition("\n")
        return int(code), body

    def probe(self, kind: str) -> tuple[bool, str]:
        spec = self.spec.get(kind)
        assert spec is not None, f"no {kind}"
        timeout = float(spec.get("timeoutSeconds", 1))
        if "httpGet" in spec:
            get = spec["httpGet"]
            headers = [f"{h['name']}:{h['value']}" for h in get.get("httpHeaders", [])]
            code, body = self.send(
                get.get("scheme", "HTTP").lower(), get["port"], get.get("path", "/"), timeout, *headers
            )
            return 200 <= code < 400, f"{code} {body[:300]}"
        if "tcpSocket" in spec:
            code, body = self.send("tcp", spec["tcpSocket"]["port"], "", timeout)
            return code == 0, body
        if "exec" in spec:
            result = podman("exec", self.container, *spec["exec"]["command"], check=False, timeout=timeout + 30)
            return result.returncode == 0, result.stdout + result.stderr
        raise AssertionError(f"{kind}: a handler this runner does not know: {sorted(spec)}")

    def passes(self, kind: str) -> None:
        """The probe succeeds within the time the kubelet would give it (initial delay + period × threshold)."""
        spec = self.spec[kind]
        window = spec.get("initialDelaySeconds", 0) + spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3)
        deadline = time.monotonic() + min(window, 120)
        while True:
            ok, said = self.probe(kind)
            if ok:
                return
            assert self.running(), f"the container exited: {self.logs()}"
            if time.monotonic() > deadline:
                pytest.fail(f"{kind} did not pass within {window} s: {said}\n{self.logs()}")
            time.sleep(0.5)

    def running(self) -> bool:
        state = json.loads(podman("inspect", self.container).stdout)[0]["State"]
        return bool(state["Running"])

    def logs(self) -> str:
        result = podman("logs", self.container, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def metrics(self) -> str:
        scheme = self.spec["readinessProbe"]["httpGet"].get("scheme", "HTTP").lower()
        code, body = self.send(scheme, "http-metrics", "/metrics", 10)
        assert code == 200, body
        return body


def podman_run_args(objects: list[dict[str, Any]], workdir: Path, holder: str, name: str) -> tuple[list[str], Pod]:
    """The ``podman run`` arguments for the first pod of the (only) StatefulSet in ``objects``."""
    statefulsets = [obj for obj in objects if obj["kind"] == "StatefulSet"]
    assert len(statefulsets) == 1, [obj["kind"] for obj in objects]
    statefulset = statefulsets[0]
    pod_name = f"{statefulset['metadata']['name']}-0"
    spec = statefulset["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1 and not spec.get("initContainers"), "one container only"
    container = spec["containers"][0]
    # A service-account token would need the API server; the exporter never calls it.
    assert spec.get("automountServiceAccountToken") is False
    args = ["--name", name, "--network", f"container:{holder}", "--hostname", pod_name, "--no-healthcheck", *ULIMITS]
    args += security_args(spec, container)
    env = environment(objects, container, statefulset["metadata"].get("namespace"), pod_name)
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    args += volume_args(objects, statefulset, container, workdir)
    ports = {port["name"]: int(port["containerPort"]) for port in container.get("ports", []) if "name" in port}
    command = [expand(part, env) for part in container.get("command", [])]
    if command:
        args += ["--entrypoint", json.dumps(command)]
    args.append(container["image"])
    args += [expand(part, env) for part in container.get("args", [])]
    return args, Pod(pod_name, holder, name, container, ports)


def security_args(spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """User, groups (fsGroup, supplementalGroups), read-only root, privileges, memory limit."""
    pod_security = spec.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    user = int(security.get("runAsUser", 0))
    if security.get("runAsNonRoot"):
        assert user != 0, "runAsNonRoot with uid 0: the kubelet refuses to start it"
    assert not security.get("privileged"), "privileged"
    args = ["--user", f"{user}:{int(security.get('runAsGroup', user))}"]
    for extra in (pod_security.get("fsGroup"), *pod_security.get("supplementalGroups", [])):
        if extra is not None:
            args += ["--group-add", str(extra)]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for dropped in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", dropped]
    memory = container.get("resources", {}).get("limits", {}).get("memory")
    if memory:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", memory).groups()  # type: ignore[union-attr]
        args += ["--memory", f"{int(number) * (1024 if unit == 'Gi' else 1)}m"]
    return args


def environment(
    objects: list[dict[str, Any]], container: dict[str, Any], namespace: str | None, pod_name: str
) -> dict[str, str]:
    """``envFrom`` first, then ``env`` over it, as the kubelet builds the container's environment."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("secretRef") or source.get("configMapRef")
        assert ref is not None, source
        kind = "Secret" if "secretRef" in source else "ConfigMap"
        for key, value in data_of(find(objects, kind, ref["name"], namespace)).items():
            env[source.get("prefix", "") + key] = value
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        value_from = item["valueFrom"]
        if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            ref = value_from.get("secretKeyRef") or value_from["configMapKeyRef"]
            kind = "Secret" if "secretKeyRef" in value_from else "ConfigMap"
            env[item["name"]] = data_of(find(objects, kind, ref["name"], namespace))[ref["key"]]
        elif "fieldRef" in value_from:
            fields = {"metadata.name": pod_name, "metadata.namespace": namespace or "default"}
            env[item["name"]] = fields[value_from["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"env {item['name']}: a source this runner does not know: {value_from}")
    return env


def volume_args(
    objects: list[dict[str, Any]], statefulset: dict[str, Any], container: dict[str, Any], workdir: Path
) -> list[str]:
    """emptyDir and claims as a tmpfs owned by the pod's user; Secrets and ConfigMaps as files, read-only."""
    spec = statefulset["spec"]["template"]["spec"]
    namespace = statefulset["metadata"].get("namespace")
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"].get("volumeClaimTemplates", [])}
    fs_group = int(spec.get("securityContext", {}).get("fsGroup", 0))
    args: list[str] = []
    for number, mount in enumerate(container.get("volumeMounts", [])):
        volume = volumes.get(mount["name"])
        if volume is None:
            assert mount["name"] in claims, f"volumeMount {mount['name']}: no such volume or claim"
            volume = {"persistentVolumeClaim": {}}
        kinds = set(volume) - {"name"}
        assert kinds <= KNOWN_VOLUMES, f"volume {mount['name']}: {kinds} is a type this runner does not know"
        if kinds & {"emptyDir", "persistentVolumeClaim"}:
            # Writable by the pod's user, as fsGroup makes a fresh volume.
            args += ["--tmpfs", f"{mount['mountPath']}:rw,U{',ro' if mount.get('readOnly') else ''}"]
            continue
        source = volume.get("secret") or volume["configMap"]
        kind, name_key = ("Secret", "secretName") if "secret" in volume else ("ConfigMap", "name")
        directory = workdir / "volumes" / f"{number}-{mount['name']}"
        project(data_of(find(objects, kind, source[name_key], namespace)), source, directory, fs_group)
        where = directory / mount["subPath"] if "subPath" in mount else directory
        args += ["--volume", f"{where.resolve()}:{mount['mountPath']}:ro"]
    return args


def project(data: dict[str, str], source: dict[str, Any], directory: Path, fs_group: int) -> None:
    """A Secret or ConfigMap volume laid out as the kubelet's atomic writer does: ``..data`` links to a
    timestamped directory and each key is a link through it; files owned by root and the fsGroup."""
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    real = directory / "..2026_01_01_00_00_00.000000001"
    real.mkdir(parents=True)
    default_mode = int(source.get("defaultMode", 0o644))
    for item in items:
        target = real / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
        os.chown(target, 0, fs_group)
        target.chmod(int(item.get("mode", default_mode)))
    (directory / "..data").symlink_to(real.name)
    for top in {item["path"].split("/")[0] for item in items}:
        (directory / top).symlink_to(f"..data/{top}")
    for path in (directory, real, *[p for p in real.rglob("*") if p.is_dir()]):
        os.chown(path, 0, fs_group)
        path.chmod(0o755)


@dataclass
class Simulator:
    port: int
    seed: int
    key_id: str
    secret: str = SIMULATOR_SECRET
    instance_id: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def simulated_ids(seed: int) -> list[str]:
    """The instance ids of the simulator's demo tenant with ``seed`` (a pure function of the seed)."""
    return list(World(SCENARIOS["demo"], seed=seed, clock=time.time).instances)


def simulated_instance(name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = podman("logs", name, check=False)
        text = logs.stdout + logs.stderr
        if "simulator listening" in text:
            found = re.search(r'msg="simulated instance" instance_id=(\S+)', text)
            assert found, text
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"simulator {name} did not start: {text[-2000:]}")


def overlay(directory: Path, kustomization: dict[str, Any], **files: str) -> Path:
    """A kustomization in ``directory`` with ``files`` beside it."""
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def relative(path: Path, directory: Path) -> str:
    """Kustomize wants the resources of an overlay relative to it."""
    return os.path.relpath(path, directory)


def image_override() -> list[dict[str, str]]:
    """Points the base's ``images:`` entry at the image built here, as a user points it at theirs."""
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    registry_name = base["images"][0]["newName"]
    name, _, tag = TAG.rpartition(":")
    return [{"name": registry_name, "newName": name, "newTag": tag}]


def statefulset_patch(container: dict[str, Any]) -> dict[str, Any]:
    patch = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "idaas-sync-exporter"}}
    return {"patch": yaml.safe_dump({**patch, "spec": {"template": {"spec": {"containers": [container]}}}})}


def single_account(resource: Path, simulator: Simulator, directory: Path, **files: str) -> Path:
    """The base's way: instance ids and the endpoint as variables, the AccessKey from the example
    Secret through the ``envFrom`` its comment says to uncomment."""
    secret_patch = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "idaas-sync-exporter-credentials"},
        "stringData": {
            "IDAAS_EXPORTER_ACCESS_KEY_ID": simulator.key_id,
            "IDAAS_EXPORTER_ACCESS_KEY_SECRET": simulator.secret,
        },
    }
    container = {
        "name": "exporter",
        "env": [
            {"name": "IDAAS_EXPORTER_INSTANCE_IDS", "value": simulator.instance_id},
            {"name": "IDAAS_EXPORTER_ENDPOINT", "value": simulator.endpoint},
        ],
        "envFrom": [{"secretRef": {"name": "idaas-sync-exporter-credentials"}}],
    }
    return overlay(
        directory,
        {
            "namespace": "monitoring",
            "resources": [
                relative(resource, directory),
                relative(K8S / "base" / "secret.example.yaml", directory),
                *files,
            ],
            "images": image_override(),
            "patches": [statefulset_patch(container), {"patch": yaml.safe_dump(secret_patch)}],
        },
        **files,
    )


def up(body: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^idaas_up\{[^}]*instance_id="([^"]+)"[^}]*\} (\S+)$', body, re.MULTILINE)
    }


def runs_and_reads(pod_: Pod, instance_ids: list[str]) -> None:
    """Probes as the kubelet sends them, then every instance read through the simulator."""
    assert set(pod_.spec) >= {"startupProbe", "livenessProbe", "readinessProbe"}
    pod_.passes("startupProbe")
    pod_.passes("readinessProbe")
    pod_.passes("livenessProbe")
    deadline = time.monotonic() + 60
    while {i: up(pod_.metrics()).get(i) for i in instance_ids} != dict.fromkeys(instance_ids, 1.0):
        assert time.monotonic() < deadline, f"idaas_up: {up(pod_.metrics())}\n{pod_.logs()}"
        time.sleep(1)
    assert podman("exec", pod_.container, "id", "-u").stdout.strip() == "10001"
    assert podman("exec", pod_.container, "touch", "/opt/venv/written", check=False).returncode != 0
    assert podman("exec", pod_.container, "test", "-s", "/var/lib/idaas-sync-exporter/state.sqlite3",
                  check=False).returncode == 0  # fmt: skip


def stops_cleanly(pod_: Pod) -> None:
    """SIGTERM, then the pod's grace period (Kubernetes' default 30 s) before SIGKILL."""
    grace = int(pod_.spec.get("terminationGracePeriodSeconds", 30))
    podman("stop", "--time", str(grace), pod_.container, timeout=grace + 30)
    state = json.loads(podman("inspect", pod_.container).stdout)[0]["State"]
    assert state["ExitCode"] == 0, (state, pod_.logs())


def test_the_shipped_manifests_have_what_a_user_must_set() -> None:
    objects = render(K8S)
    statefulset = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    entry = base["images"][0]
    assert container["image"] == f"{entry['newName']}:{entry['newTag']}"
    assert entry["newTag"] == statefulset["metadata"]["labels"]["app.kubernetes.io/version"]
    assert {obj["metadata"].get("namespace") for obj in objects} == {"monitoring"}
    docs = (ROOT / "docs" / "deployment.md").read_text()
    for needed in ("IDAAS_EXPORTER_INSTANCE_IDS", "images:", "podman build", "kubectl create namespace"):
        assert needed in docs.split("## Kubernetes")[1], needed


@pytest.mark.parametrize("kustomization", ["", "overlays/sharded"], ids=["base", "sharded"])
def test_the_pod_starts_passes_its_probes_and_reads_idaas(image: str, kustomization: str, tmp_path: Path) -> None:
    # For the sharded overlay, a tenant whose instance belongs to shard 0, the pod that runs here.
    seed = next(s for s in range(1, 100) if kustomization == "" or shard_of(simulated_ids(s)[0], 3) == 0)
    simulator = Simulator(port=18080, seed=seed, key_id="LTAI5tK8sPodTest")
    with pod_with(kustomization, simulator, tmp_path) as pod_:
        assert simulator.instance_id == simulated_ids(seed)[0]
        if kustomization == "overlays/sharded":
            # Pod -0 of three takes its shard from its hostname's ordinal.
            pod_.passes("startupProbe")
            body = pod_.metrics()
            assert 'idaas_exporter_shard_info{shard_index="0",shard_count="3"} 1' in body, body[-3000:]
        runs_and_reads(pod_, [simulator.instance_id])
        stops_cleanly(pod_)


@contextmanager
def pod_with(kustomization: str, simulator: Simulator, tmp_path: Path) -> Iterator[Pod]:
    """The simulator first (in a pod of its own making), then the overlay that names its instance."""
    with holder_for([simulator], tmp_path) as start:
        rendered = render(single_account(K8S / kustomization, simulator, tmp_path / "overlay"))
        yield start(rendered)


@contextmanager
def holder_for(simulators: list[Simulator], tmp_path: Path) -> Iterator[Any]:
    """Starts the pod's network and simulators; yields a function that starts the exporter in it."""
    workdir = tmp_path / "pod"
    workdir.mkdir()
    tag = re.sub(r"[^a-z0-9-]", "-", f"idaas-k8s-{os.getpid()}-{tmp_path.name[-20:].lower()}")
    holder = f"{tag}-pod"
    started: list[str] = []
    try:
        podman("run", "--detach", "--name", holder, "--network", "none", "--read-only", "--no-healthcheck",
               *ULIMITS, "--entrypoint", "sleep", TAG, "infinity")  # fmt: skip
        started.append(holder)
        for number, simulator in enumerate(simulators):
            name = f"{tag}-sim{number}"
            podman("run", "--detach", "--name", name, "--network", f"container:{holder}", "--no-healthcheck",
                   "--read-only", *ULIMITS, "--env", f"IDAAS_SIMULATOR_ACCESS_KEY_SECRET={simulator.secret}",
                   TAG, "simulate", "--listen", f"127.0.0.1:{simulator.port}", "--access-key-id", simulator.key_id,
                   "--seed", str(simulator.seed), "--speed", "60")  # fmt: skip
            started.insert(0, name)
            simulator.instance_id = simulated_instance(name)

        def start(objects: list[dict[str, Any]]) -> Pod:
            args, running = podman_run_args(objects, workdir, holder, f"{tag}-exporter")
            podman("run", "--detach", *args)
            started.insert(0, running.container)
            return running

        yield start
    finally:
        for name in started:
            podman("rm", "--force", "--time", "0", name, check=False)


def test_the_multi_account_pod_reads_both_accounts_through_the_mounted_config_and_keys(
    image: str, tmp_path: Path
) -> None:
    # Two accounts, each its own simulator (another seed, so another instance) with its own key.
    simulators = [
        Simulator(port=18080, seed=1, key_id="LTAI5tTeamK8sPodTest"),
        Simulator(port=18081, seed=2, key_id="LTAI5tCustomerK8sTest", secret="another-k8s-secret-7a6b5c"),
    ]
    example_dir = K8S / "overlays" / "multi-account"
    with holder_for(simulators, tmp_path) as start:
        # The example file as it is, with the simulators' instances and endpoints put in.
        config = yaml.safe_load((example_dir / "exporter.yaml").read_text())
        keys = yaml.safe_load((example_dir / "secret.example.yaml").read_text())["stringData"]
        values: dict[str, str] = {}
        for account, instance, simulator in zip(config["accounts"], config["instances"], simulators, strict=True):
            assert instance["account"] == account["name"]
            instance.update(id=simulator.instance_id, endpoint=simulator.endpoint)
            for file_key, value in (("id_file", simulator.key_id), ("secret_file", simulator.secret)):
                key = Path(account["access_key"][file_key]).name
                assert key in keys, f"{account['access_key'][file_key]} is no key of the example Secret"
                values[key] = value
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "idaas-sync-exporter-accounts"}}
        directory = overlay(
            tmp_path / "overlay",
            {
                "namespace": "monitoring",
                "resources": [relative(example_dir, tmp_path / "overlay")],
                "images": image_override(),
                "configMapGenerator": [
                    {"name": "idaas-sync-exporter-config", "behavior": "replace", "files": ["exporter.yaml"]}
                ],
                "patches": [{"patch": yaml.safe_dump({**secret, "stringData": values})}],
            },
            **{"exporter.yaml": yaml.safe_dump(config)},
        )
        pod_ = start(render(directory))
        runs_and_reads(pod_, [simulator.instance_id for simulator in simulators])
        body = pod_.metrics()
        for instance in config["instances"]:
            assert re.search(
                rf'^idaas_instance_info\{{(?=[^}}]*instance_id="{instance["id"]}")(?=[^}}]*account="{instance["account"]}")',
                body,
                re.MULTILINE,
            ), body[-3000:]
        stops_cleanly(pod_)


def test_the_tls_pod_passes_its_https_probes(image: str, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki / "ca", "test CA")
    make_leaf(pki / "server", "idaas-sync-exporter.monitoring.svc", ca, server=True)
    # The Secret the overlay expects the user (or cert-manager) to create.
    tls_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "idaas-sync-exporter-tls"},
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": (pki / "server.crt").read_text(),
            "tls.key": (pki / "server.key").read_text(),
            "ca.crt": (pki / "ca.crt").read_text(),
        },
    }
    simulator = Simulator(port=18080, seed=1, key_id="LTAI5tK8sTlsPodTest")
    with holder_for([simulator], tmp_path) as start:
        directory = single_account(
            K8S / "overlays" / "tls", simulator, tmp_path / "overlay", **{"tls-secret.yaml": yaml.safe_dump(tls_secret)}
        )
        pod_ = start(render(directory))
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert pod_.spec[kind]["httpGet"]["scheme"] == "HTTPS"
        runs_and_reads(pod_, [simulator.instance_id])
        # TLS is really on: plain HTTP on the port gets no 200.
        code, _ = pod_.send("http", "http-metrics", "/healthz", 2)
        assert code != 200
        stops_cleanly(pod_)


def test_the_runner_maps_the_pod_to_podman_and_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    objects = render(K8S)
    args, running = podman_run_args(objects, tmp_path, "holder", "exporter")
    joined = " ".join(args)
    for expected in (
        "--network container:holder --hostname idaas-sync-exporter-0",
        "--user 10001:10001 --group-add 10001 --read-only --security-opt no-new-privileges --cap-drop ALL",
        "--memory 320m",
        "--env IDAAS_EXPORTER_STATE_PATH=/var/lib/idaas-sync-exporter/state.sqlite3",
        "--tmpfs /var/lib/idaas-sync-exporter:rw,U",
    ):
        assert expected in joined, (expected, joined)
    assert args[-2:] == ["registry.example.com/idaas-sync-exporter:0.1.0", "serve"]
    assert running.ports == {"http-metrics": 10129}
    # What the kubelet could not start either, or what this runner cannot imitate, fails.
    statefulset = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    spec = statefulset["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "state", "hostPath": {"path": "/srv"}}]
    with pytest.raises(AssertionError, match="hostPath"):
        podman_run_args(objects, tmp_path, "holder", "exporter")
    del spec["volumes"]
    spec["containers"][0]["envFrom"] = [{"secretRef": {"name": "idaas-sync-exporter-credentials"}}]
    with pytest.raises(AssertionError, match="idaas-sync-exporter-credentials"):
        podman_run_args(objects, tmp_path, "holder", "exporter")
