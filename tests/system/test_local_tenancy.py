"""The documented two-account, two-region example, tried locally as docs/configuration.md walks it.

Its blocks run in one shell as the page gives them, but for two things: free ports, and poll
intervals of seconds instead of minutes, so that the jobs of every instance are counted within the
test. Two ``simulate --accounts`` processes stand for the regions (the second also answers STS
AssumeRole over TLS), one ``serve --config`` polls three instances with two accounts, one of them
through the role. Then: each instance is up and its jobs are counted, customer-a's filters hold,
no reported time is in the future, a wrong key, a wrong external id and another account's instance
are refused, and no secret reaches a log.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import exporter_env, free_port, metrics, wait_for
from tests.walkthrough import LOCAL_PORTS, LocalExample

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TEAM_INSTANCES = ("idaas_ue2jvisn35ea5lmthk267xxxxx", "idaas_hzy2kcxsyltcqi7mh4xxxxxxxx")
CUSTOMER_INSTANCE = "idaas_mn5bgq3xkpca6w7x3dxxxxxxxx"
INSTANCES = (*TEAM_INSTANCES, CUSTOMER_INSTANCE)
# The walk-through's intervals, and the test's: the second poll of each instance is what counts jobs.
FASTER = {
    "poll_interval_seconds: 60\n": "poll_interval_seconds: 2\n",
    "poll_interval_seconds: 120\n": ("poll_interval_seconds: 3\n"),
}
SERIES = re.compile(r"^(?P<name>[a-z_:]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def shell_env() -> dict[str, str]:
    env = exporter_env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def samples(body: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in body.splitlines():
        match = SERIES.match(line)
        if match and match["name"] == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            found.append((labels, float(match["value"])))
    return found


def counted(output: str) -> dict[str, int]:
    """The walk-through's counting block's output: jobs counted per instance."""
    return {instance: int(value) for instance, value in (line.split() for line in output.splitlines())}


def counted_target_types(body: str, instances: tuple[str, ...]) -> set[str]:
    return {
        labels["target_type"]
        for labels, value in samples(body, "idaas_sync_jobs_total")
        if labels["instance_id"] in instances and value
    }


def once(example: LocalExample, config: str) -> str:
    """``once`` with ``config`` in the walk-through's shell: its idaas_up lines and failed polls."""
    step = example.run(
        f"SSL_CERT_FILE=sts.crt idaas-sync-exporter once --config {config} --state-path '' --log-level error "
        "2>&1 | grep -E '^idaas_up|poll failed: '"
    )
    assert step.status == 0, step.output
    return step.output


def test_the_documented_two_account_two_region_example_runs_locally(tmp_path: Path) -> None:
    example = LocalExample(tmp_path, shell_env(), {port: free_port() for port in LOCAL_PORTS})
    try:
        for first in ("export TEAM_ACCESS_KEY_ID=", "cat > cloud.yaml"):
            step = example.run(example.block(first).text)
            assert step.status == 0, step.output
        config = example.block("cat > exporter.yaml").text
        for written, faster in FASTER.items():
            assert config.count(written) == 1, written
            config = config.replace(written, faster)
        assert example.run(config).status == 0

        start = example.block("idaas-sync-exporter simulate")
        step = example.run(start.text)
        assert step.status == 0 and step.output == example.expected(start), step.output

        counting = example.block("curl -s http://127.0.0.1:18129/metrics |").text
        latest: dict[str, int] = {}

        def every_instance_counted() -> bool:
            latest.update(counted(example.run(counting).output))
            return set(latest) == set(INSTANCES) and all(latest.values())

        wait_for(every_instance_counted, 90, f"jobs counted for every instance (so far {latest})")
        # The team's instances have no filter: their applications' pushes are counted too (every
        # 15 to 60 simulated minutes, so within a minute at --speed 60).
        wait_for(
            lambda: (
                counted_target_types(metrics(example.exporter_port), TEAM_INSTANCES)
                == {"identity_provider", "application"}
            ),
            90,
            "application jobs counted for the team's instances",
        )
        check_what_the_exporter_shows(example.exporter_port)

        refused = example.block("TEAM_ACCESS_KEY_SECRET=not-the-secret")
        step = example.run(refused.text)
        assert step.status == 0 and step.output == example.expected(refused), step.output
        check_roles_and_accounts_are_enforced(example, tmp_path)

        assert example.run(example.block("kill %1 %2 %3").text).status == 0
        exits = example.run('for job in 1 2 3; do wait %$job; echo "job $job exited $?"; done').output
        assert exits.splitlines() == [f"job {n} exited 0" for n in (1, 2, 3)], exits
        secret = example.run('printf "%s\\n" "$TEAM_ACCESS_KEY_SECRET"').output.strip()
    finally:
        example.shell.close()
    assert len(secret) == 40
    for log in ("cn-hangzhou.log", "ap-southeast-1.log", "exporter.log"):
        text = (tmp_path / log).read_text()
        # The team's secret, and any token the STS stand-in issued (they all start the same way).
        assert secret not in text and "SIMSTS1." not in text, f"a secret reached {log}"


def check_what_the_exporter_shows(port: int) -> None:
    body = metrics(port)
    now = time.time()
    up = {labels["instance_id"]: value for labels, value in samples(body, "idaas_up")}
    assert up == dict.fromkeys(INSTANCES, 1.0)
    jobs = samples(body, "idaas_sync_jobs_total")
    customer = [(labels, value) for labels, value in jobs if labels["instance_id"] == CUSTOMER_INSTANCE]
    assert customer and sum(value for _, value in customer) > 0
    # target_types: [identity_provider] and directions: [ingress] in the file, for this instance only.
    assert {(labels["target_type"], labels["direction"]) for labels, _ in customer} == {
        ("identity_provider", "ingress")
    }
    # The simulators' tenants live an hour a minute, yet report no time after the wall clock.
    stamps = [
        (name, value)
        for name in (
            "idaas_sync_last_success_timestamp_seconds",
            "idaas_sync_last_job_end_timestamp_seconds",
            "idaas_sync_last_job_start_timestamp_seconds",
            "idaas_sync_oldest_in_progress_start_timestamp_seconds",
        )
        for _, value in samples(body, name)
    ]
    assert stamps, "no job timestamps to check"
    assert all(value <= now for _, value in stamps), [s for s in stamps if s[1] > now][:3]


def check_roles_and_accounts_are_enforced(example: LocalExample, directory: Path) -> None:
    """The STS stand-in holds to the role's trust policy; an account's key sees only its own instances."""
    config = yaml.safe_load((directory / "exporter.yaml").read_text())
    role = config["accounts"][1]["assume_role"]
    role["external_id"] = "customer-a-other"
    (directory / "wrong-external-id.yaml").write_text(yaml.safe_dump(config))
    output = once(example, "wrong-external-id.yaml")
    for instance_id in TEAM_INSTANCES:
        assert f'idaas_up{{instance_id="{instance_id}"}} 1' in output, output
    assert f'idaas_up{{instance_id="{CUSTOMER_INSTANCE}"}} 0' in output, output
    assert "NoPermission" in output and "customer-a-7f3c" not in output, output

    role["external_id"] = "customer-a-7f3c"
    config["instances"][2]["account"] = "identity-team"
    (directory / "another-accounts-instance.yaml").write_text(yaml.safe_dump(config))
    output = once(example, "another-accounts-instance.yaml")
    assert f'idaas_up{{instance_id="{CUSTOMER_INSTANCE}"}} 0' in output, output
    assert f"poll failed: {CUSTOMER_INSTANCE}: " in output and "EntityNotExists.Instance" in output, output
