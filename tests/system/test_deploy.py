"""The deployment kit: Dockerfile lint, Kubernetes manifests, compose stack configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from idaas_sync_exporter.config.settings import DEFAULT_PORT
from tests.e2e import require_binary

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "tests" / "data" / "crd"
# The CRD patterns are Go (RE2) regular expressions; Python's dialect is the closest (see strict()).
CHECK_JSONSCHEMA = [str(Path(sys.executable).parent / "check-jsonschema"), "--regex-variant", "python"]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def test_dockerfile_passes_hadolint_and_matches_the_exporter() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {DEFAULT_PORT}" in text
    assert "USER 10001:10001" in text
    # The probe follows the settings (another port, TLS); a fixed URL here would not.
    assert 'CMD ["idaas-sync-exporter", "healthcheck"]' in text
    assert "/healthz" not in text
    assert 'ENTRYPOINT ["idaas-sync-exporter"]' in text
    assert 'VOLUME ["/var/lib/idaas-sync-exporter"]' in text
    assert "IDAAS_EXPORTER_LOG_FORMAT=json" in text
    assert text.count("FROM ") == 2  # multi-stage
    assert "COPY --from=build /opt/venv /opt/venv" in text
    # Every builder must build it: Docker's legacy builder and kaniko reject BuildKit's RUN --mount,
    # and a syntax directive makes BuildKit pull a frontend image from a registry.
    assert "--mount" not in text
    assert "# syntax=" not in text
    # The dependency layer is cached on pyproject.toml alone: it is copied before the sources.
    assert text.index("COPY pyproject.toml") < text.index("COPY exporter")


def kustomizations() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds from ``directory`` (skips where kubectl is missing)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomizations are not built here (CI machines have it)")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


@pytest.mark.parametrize("directory", kustomizations(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_kustomization_builds_and_validates(directory: Path, tmp_path: Path) -> None:
    objects = kustomize(directory)
    core = [obj for obj in objects if not obj["apiVersion"].startswith("monitoring.coreos.com/")]
    files = []
    for number, obj in enumerate(core):
        files.append(tmp_path / f"core-{number}.yaml")
        files[-1].write_text(yaml.safe_dump(obj))
    result = kubernetes_validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(files), result.stdout
    for kind, schema_name in (
        ("ServiceMonitor", "servicemonitor_v1.json"),
        ("PrometheusRule", "prometheusrule_v1.json"),
    ):
        found = [obj for obj in objects if obj["kind"] == kind]
        assert found, f"{directory}: no {kind}"
        for number, obj in enumerate(found):
            checked = check_against_crd(obj, schema_name, tmp_path / f"{kind}-{number}")
            assert checked.returncode == 0, checked.stdout + checked.stderr


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(tool), "--strict", *map(str, paths)], capture_output=True, text=True, check=False)


def check_against_crd(obj: dict[str, Any], schema_name: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema on ``obj`` against the strict form of a CRD schema in tests/data/crd."""
    workdir.mkdir()
    schema, instance = workdir / schema_name, workdir / "instance.json"
    schema.write_text(json.dumps(strict(json.loads((CRDS / schema_name).read_text()))))
    instance.write_text(json.dumps(obj))
    return subprocess.run(
        [*CHECK_JSONSCHEMA, "--schemafile", str(schema), str(instance)], capture_output=True, text=True, check=False
    )


def strict(schema: Any) -> Any:
    """The CRD schema, with unknown fields rejected as `kubectl apply --validate=strict` rejects them.

    Go puts inline flags anywhere (``^(?i)abort``); Python wants them first (``(?i)^abort``).
    """
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            schema["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
        open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and not open_ended:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.mark.parametrize(
    "secret", sorted(K8S.rglob("secret.example.yaml")), ids=lambda path: str(path.relative_to(ROOT))
)
def test_the_example_secrets_validate(secret: Path) -> None:
    result = kubernetes_validate(secret)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tls_overlay_probes_and_scrapes_over_https() -> None:
    objects = by_kind(kustomize(K8S / "overlays" / "tls"))
    container = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-metrics", "scheme": "HTTPS"}
    endpoint = objects["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
    # The certificate's name is the Service's, in the namespace the objects go to.
    service = objects["Service"]["metadata"]
    assert endpoint["tlsConfig"]["serverName"] == f"{service['name']}.{service['namespace']}.svc"


def test_the_schema_check_rejects_an_unknown_field(tmp_path: Path) -> None:
    monitor = load(K8S / "base" / "servicemonitor.yaml")
    monitor["spec"]["jobLabels"] = "app.kubernetes.io/name"  # a typo of jobLabel
    checked = check_against_crd(monitor, "servicemonitor_v1.json", tmp_path / "monitor")
    assert checked.returncode == 1 and "jobLabels" in checked.stdout + checked.stderr


def test_prometheusrule_holds_the_alerts_and_recording_rules_and_is_valid(tmp_path: Path) -> None:
    # That it is the generated file is tests/unit/test_rules_source.py's check.
    resource = load(K8S / "base" / "prometheusrule.yaml")
    assert resource["kind"] == "PrometheusRule" and resource["apiVersion"] == "monitoring.coreos.com/v1"
    plain = [
        group
        for name in ("idaas-sync-alerts.yml", "idaas-sync-recording.yml")
        for group in load(ROOT / "deploy" / "prometheus" / name)["groups"]
    ]
    assert resource["spec"]["groups"] == plain
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}))
    result = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(extracted)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_agree_with_each_other() -> None:
    objects = by_kind(kustomize(K8S))
    statefulset, service, monitor = objects["StatefulSet"], objects["Service"], objects["ServiceMonitor"]
    account, policy, rule = objects["ServiceAccount"], objects["NetworkPolicy"], objects["PrometheusRule"]
    pod = statefulset["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == DEFAULT_PORT
    port_name = container["ports"][0]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == port_name
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    assert set(service["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())
    # The job label the rules select on comes from the Service label the ServiceMonitor names.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "idaas-sync-exporter"
    assert duration(endpoint["scrapeTimeout"]) < duration(endpoint["interval"])
    for obj in (monitor, rule):
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # kube-prometheus-stack's selector
    for obj in objects.values():
        labels = obj["metadata"]["labels"]
        for key in ("name", "instance", "version", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, (obj["kind"], key)
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert "pod-identity.alibabacloud.com/role-name" in account["metadata"]["annotations"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    state_path = next(e["value"] for e in container["env"] if e["name"] == "IDAAS_EXPORTER_STATE_PATH")
    assert str(Path(state_path).parent) in mounts
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # An IDaaS outage must show as idaas_up 0, not as a target that left the Service.
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert set(policy["spec"]["podSelector"]["matchLabels"].items()) <= set(pod["metadata"]["labels"].items())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": port_name, "protocol": "TCP"}]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", text).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


def test_compose_stack_configuration() -> None:
    compose = load(ROOT / "deploy" / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana", "grafana-alerting"}
    assert services["grafana-alerting"]["profiles"] == ["grafana-alerting"]  # optional
    alerting_env = services["grafana-alerting"]["environment"]
    assert {"IDAAS_ALERT_WEBHOOK_URL", "IDAAS_CRITICAL_WEBHOOK_URL"} <= set(alerting_env)
    assert services["exporter"]["command"] == ["serve", "${EXPORTER_ARGS---demo}"]
    assert f"{DEFAULT_PORT}:{DEFAULT_PORT}" in services["exporter"]["ports"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).exists(), source
    prometheus_config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    checked = subprocess.run(
        [require_binary("promtool"), "check", "config", "--syntax-only", str(prometheus_config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scrape = load(prometheus_config)["scrape_configs"][0]["static_configs"][0]["targets"]
    assert scrape == [f"exporter:{DEFAULT_PORT}"]
    amtool = require_binary("amtool")
    checked = subprocess.run(
        [amtool, "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    datasource = load(ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
