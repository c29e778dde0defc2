"""One exporter, three instances in two regions under two accounts, against two simulators.

Each simulator stands for one region's endpoint and only lets each account's AccessKey see
that account's instances, so an instance polled with the wrong account fails. Counts must be
exact per instance, and throttling one account must leave the other's polls and call rate
as they were.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from idaas_sync_exporter.simulator.clock import ScaledClock
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import ScenarioSpec, World
from tests.e2e import LogReader, exporter_command, exporter_env, free_port, job_counts, metrics, wait_for, wait_http

pytestmark = pytest.mark.slow

SPEED = 60.0
RECHECK_MAX = 2.0
SPEC = ScenarioSpec(
    "tenancy",
    instances=2,
    providers_per_instance=2,
    applications_per_instance=2,
    incremental_per_hour=30.0,
    failure_rate=0.1,
    partial_rate=0.1,
    history_hours=3,
    anchors=False,
)
TEAM_SECRET = "team-secret-value"
CUSTOMER_SECRET = "customer-secret-value"


@contextmanager
def exporter_process(config: Path, port: int, env_extra: dict[str, str]) -> Iterator[LogReader]:
    env = exporter_env(**env_extra)
    process = subprocess.Popen(
        exporter_command(
            "serve",
            "--config",
            str(config),
            "--listen-address",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reader = LogReader(process)
    try:
        yield reader
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.close()
        output = "".join(reader.lines)
        assert TEAM_SECRET not in output and CUSTOMER_SECRET not in output, "a secret reached the log"


def test_three_instances_two_regions_two_accounts(tmp_path: Path) -> None:
    clocks = [ScaledClock(speed=SPEED), ScaledClock(speed=SPEED)]
    hangzhou = World(SPEC, seed=21, clock=clocks[0])
    singapore = World(dataclasses.replace(SPEC, name="tenancy-sg", instances=1), seed=22, clock=clocks[1])
    hz_team, hz_customer = list(hangzhou.instances)
    (sg_customer,) = list(singapore.instances)
    team_key = AccessKey("team-key", SecretStr(TEAM_SECRET), instances=frozenset({hz_team}))
    customer_key = AccessKey(
        "customer-key", SecretStr(CUSTOMER_SECRET), instances=frozenset({hz_customer, sg_customer})
    )
    apps = [SimulatorApp(hangzhou, [team_key, customer_key]), SimulatorApp(singapore, [team_key, customer_key])]
    (tmp_path / "customer-secret").write_text(CUSTOMER_SECRET + "\n")
    port = free_port()
    with SimulatorThread(apps[0]) as sim_hz, SimulatorThread(apps[1]) as sim_sg:
        config = tmp_path / "exporter.yml"
        config.write_text(
            f"""
poll_interval_seconds: 1
recheck_max_seconds: {RECHECK_MAX}
state_path: {tmp_path / "state.sqlite3"}
accounts:
  - name: team
    access_key: {{id_env: TEAM_AK_ID, secret_env: TEAM_AK_SECRET}}
  - name: customer
    access_key: {{id: customer-key, secret_file: {tmp_path / "customer-secret"}}}
instances:
  - {{id: {hz_team}, region: cn-hangzhou, endpoint: "{sim_hz.endpoint}", account: team}}
  - {{id: {hz_customer}, region: cn-hangzhou, endpoint: "{sim_hz.endpoint}", account: customer}}
  - id: {sg_customer}
    region: ap-southeast-1
    endpoint: "{sim_sg.endpoint}"
    account: customer
    target_types: [identity_provider]
"""
        )
        env = {"TEAM_AK_ID": "team-key", "TEAM_AK_SECRET": TEAM_SECRET}
        with exporter_process(config, port, env) as logs:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            body = metrics(port)
            for instance_id, region, account in (
                (hz_team, "cn-hangzhou", "team"),
                (hz_customer, "cn-hangzhou", "customer"),
                (sg_customer, "ap-southeast-1", "customer"),
            ):
                assert (
                    f'idaas_instance_info{{instance_id="{instance_id}",region="{region}",account="{account}"}} 1'
                    in body
                )
            assert body.count("idaas_instance_info{") == 3

            check_exact_counts(port, logs, clocks, (hangzhou, singapore), (hz_team, hz_customer, sg_customer))
            check_throttling_isolation(port, logs, clocks, apps, hz_team, (hz_customer, sg_customer))


def check_exact_counts(
    port: int, logs: LogReader, clocks: list[ScaledClock], worlds: tuple[World, World], instances: tuple[str, ...]
) -> None:
    """Per instance, the counters grow by exactly the jobs that finished in its simulator."""
    hangzhou, singapore = worlds
    sg_customer = instances[2]

    def settled() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """(counted per target, finished per instance and target) at one frozen moment."""
        for clock in clocks:
            clock.pause()
        try:
            time.sleep(RECHECK_MAX)
            seen = {i: logs.polls(i) for i in instances}
            wait_for(lambda: all(logs.polls(i) >= seen[i] + 3 for i in instances), 60, "three polls each")
            truth: dict[str, dict[str, float]] = {i: {} for i in instances}
            for world in (hangzhou, singapore):
                for plan in world.finished_jobs():
                    if plan.instance_id == sg_customer and plan.target_type != "identity_provider":
                        continue  # filtered out for this instance in the config
                    per = truth[plan.instance_id]
                    per[plan.target_id] = per.get(plan.target_id, 0.0) + 1
            return job_counts(metrics(port)), truth
        finally:
            for clock in clocks:
                clock.resume()

    counted_before, truth_before = settled()
    time.sleep(8)
    counted_after, truth_after = settled()
    for instance_id in instances:
        targets = set(truth_before[instance_id]) | set(truth_after[instance_id])
        finished = {t: truth_after[instance_id].get(t, 0) - truth_before[instance_id].get(t, 0) for t in targets}
        counted = {t: counted_after.get(t, 0) - counted_before.get(t, 0) for t in targets}
        assert sum(finished.values()) > 0, f"no job finished for {instance_id}; the test proves nothing"
        assert counted == finished, instance_id
    sg_applications = {app.application_id for app in singapore.instances[sg_customer].applications}
    assert not sg_applications & set(counted_after), "the identity_provider filter of one instance leaked"


def check_throttling_isolation(
    port: int,
    logs: LogReader,
    clocks: list[ScaledClock],
    apps: list[SimulatorApp],
    hz_team: str,
    customer_instances: tuple[str, str],
) -> None:
    """Throttling the team account leaves the customer account's polls and call rate as they were."""
    for clock in clocks:
        clock.pause()
    window = 6.0

    def customer_rate() -> tuple[float, int]:
        started = time.time()
        polls = sum(logs.polls(i) for i in customer_instances)
        time.sleep(window)
        calls = sum(app.requests.by_key("customer-key", since=started) for app in apps)
        return calls / window, sum(logs.polls(i) for i in customer_instances) - polls

    calm_rate, calm_polls = customer_rate()
    throttled_answers = f'idaas_exporter_api_requests_total{{instance_id="{hz_team}",'
    for app in apps:
        app.faults.throttled_keys = frozenset({"team-key"})
    throttled_rate, throttled_polls = customer_rate()
    body = metrics(port)
    for app in apps:
        app.faults.throttled_keys = frozenset()
    assert any(line.startswith(throttled_answers) and 'code="Throttling.User"' in line for line in body.splitlines()), (
        "throttling the team account had no effect"
    )
    print(
        f"customer account over {window:.0f} s: {calm_rate:.1f} requests/s and {calm_polls} polls calm, "
        f"{throttled_rate:.1f} requests/s and {throttled_polls} polls with the team account throttled"
    )
    assert calm_polls >= 2 * (window - 1), calm_polls
    assert throttled_polls >= calm_polls - 2, (calm_polls, throttled_polls)
    assert 0.75 <= throttled_rate / calm_rate <= 1.33, (calm_rate, throttled_rate)
