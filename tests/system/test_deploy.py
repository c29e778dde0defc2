"""The deployment kit: Dockerfile lint, Kubernetes manifests, compose stack configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from exporter.settings import DEFAULT_PORT
from tests.e2e import require_binary

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
BUILTIN_KINDS = ("statefulset.yaml", "service.yaml", "serviceaccount.yaml", "secret.example.yaml")


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
    assert f"http://127.0.0.1:{DEFAULT_PORT}/healthz" in text
    assert 'ENTRYPOINT ["idaas-sync-exporter"]' in text
    assert 'VOLUME ["/var/lib/idaas-sync-exporter"]' in text
    assert text.count("FROM ") == 2  # multi-stage


def test_builtin_manifests_validate_against_the_kubernetes_schema() -> None:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    files = [str(K8S / name) for name in BUILTIN_KINDS]
    result = subprocess.run([str(tool), "--strict", *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(files), result.stdout


def test_prometheusrule_holds_the_alerts_and_recording_rules_and_is_valid(tmp_path: Path) -> None:
    # That it is the generated file is tests/unit/test_rules_source.py's check.
    resource = load(K8S / "prometheusrule.yaml")
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
    kustomization = load(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    statefulset = load(K8S / "statefulset.yaml")
    service = load(K8S / "service.yaml")
    monitor = load(K8S / "servicemonitor.yaml")
    account = load(K8S / "serviceaccount.yaml")
    pod = statefulset["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == DEFAULT_PORT
    port_name = container["ports"][0]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == port_name
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    assert set(service["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert "pod-identity.alibabacloud.com/role-name" in account["metadata"]["annotations"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    state_path = next(e["value"] for e in container["env"] if e["name"] == "IDAAS_EXPORTER_STATE_PATH")
    assert str(Path(state_path).parent) in mounts
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_compose_stack_configuration() -> None:
    compose = load(ROOT / "deploy" / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
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
