"""The official SDK (alibabacloud-eiam20211201) talks to the simulator: proof it speaks the real protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alibabacloud_eiam20211201 import models as sdk
from alibabacloud_eiam20211201.client import Client
from alibabacloud_tea_openapi.models import Config
from pydantic import SecretStr

from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread
from idaas_sync_exporter.simulator.world import World
from tests.conftest import AK_ID, AK_SECRET, STS_ID, STS_SECRET, STS_TOKEN, instance_id_of


@pytest.fixture
def sim_thread(world: World) -> Iterator[SimulatorThread]:
    app = SimulatorApp(
        world,
        [AccessKey(AK_ID, SecretStr(AK_SECRET)), AccessKey(STS_ID, SecretStr(STS_SECRET), SecretStr(STS_TOKEN))],
    )
    with SimulatorThread(app) as running:
        yield running


def _sdk(port: int, key_id: str = AK_ID, secret: str = AK_SECRET, token: str | None = None) -> Client:
    return Client(
        Config(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=token,
            endpoint=f"127.0.0.1:{port}",
            protocol="http",
            region_id="cn-hangzhou",
        )
    )


def _expected_ids(world: World, instance_id: str) -> list[str]:
    return [job.job_id for job in reversed(world.visible_jobs(instance_id, world.now_ms()))]


def test_sdk_pages_all_jobs_with_next_token(sim_thread: SimulatorThread, world: World) -> None:
    client = _sdk(sim_thread.port)
    instance_id = instance_id_of(world)
    ids: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        request = sdk.ListSynchronizationJobsRequest(instance_id=instance_id, max_results=100, next_token=token)
        body = client.list_synchronization_jobs(request).body
        ids += [job.synchronization_job_id for job in body.synchronization_jobs]
        pages += 1
        token = body.next_token
        if not token:
            break
    assert ids == _expected_ids(world, instance_id)
    assert pages == -(-len(ids) // 100)


def test_sdk_pages_all_jobs_with_page_number_and_filters(sim_thread: SimulatorThread, world: World) -> None:
    client = _sdk(sim_thread.port)
    instance_id = instance_id_of(world)
    ids: list[str] = []
    number = 1
    while True:
        request = sdk.ListSynchronizationJobsRequest(instance_id=instance_id, page_number=number, page_size=50)
        body = client.list_synchronization_jobs(request).body
        ids += [job.synchronization_job_id for job in body.synchronization_jobs]
        if len(ids) >= body.total_count:
            break
        number += 1
    assert ids == _expected_ids(world, instance_id)

    failed = client.list_synchronization_jobs(
        sdk.ListSynchronizationJobsRequest(
            instance_id=instance_id,
            max_results=100,
            filters=[sdk.ListSynchronizationJobsRequestFilters(key="status", values=["failed"])],
            target_type="identity_provider",
        )
    ).body
    assert failed.total_count > 0
    assert {job.status for job in failed.synchronization_jobs} == {"failed"}
    assert all(job.result.error_code for job in failed.synchronization_jobs)


def test_sdk_reads_statistics(sim_thread: SimulatorThread, world: World) -> None:
    client = _sdk(sim_thread.port)
    instance_id = instance_id_of(world)
    plan = next(
        p
        for p in reversed(world.visible_jobs(instance_id, world.now_ms()))
        if p.status_at(world.now_ms()) == "success" and p.direction == "egress"
    )
    job = client.get_synchronization_job(
        sdk.GetSynchronizationJobRequest(instance_id=instance_id, synchronization_job_id=plan.job_id)
    ).body.synchronization_job
    assert job.status == "success"
    assert job.result.user_statistics.pushed.total == plan.stats()["User"]["Pushed"]["Total"]
    assert job.result.group_member_statistics.created.success == plan.stats()["GroupMember"]["Created"]["Success"]
    assert job.end_time == plan.end_ms


def test_sdk_reads_and_writes_pull_configuration_with_sts(sim_thread: SimulatorThread, world: World) -> None:
    client = _sdk(sim_thread.port, STS_ID, STS_SECRET, STS_TOKEN)
    instance_id = instance_id_of(world)
    idp = world.instances[instance_id].providers[1].identity_provider_id
    before = client.get_identity_provider_ud_pull_configuration(
        sdk.GetIdentityProviderUdPullConfigurationRequest(instance_id=instance_id, identity_provider_id=idp)
    ).body.ud_pull_configuration
    assert before.pull_protected_rule.user_deleted_threshold > 0
    client.set_identity_provider_ud_pull_configuration(
        sdk.SetIdentityProviderUdPullConfigurationRequest(
            instance_id=instance_id,
            identity_provider_id=idp,
            incremental_callback_status="disabled",
            periodic_sync_status="enabled",
            periodic_sync_config=sdk.SetIdentityProviderUdPullConfigurationRequestPeriodicSyncConfig(
                periodic_sync_type="cron", periodic_sync_cron="0 45 1 * * ?"
            ),
            pull_protected_rule=sdk.SetIdentityProviderUdPullConfigurationRequestPullProtectedRule(
                user_deleted_threshold=25, organizational_unit_deleted_threshold=3, group_deleted_threshold=4
            ),
        )
    )
    after = client.get_identity_provider_ud_pull_configuration(
        sdk.GetIdentityProviderUdPullConfigurationRequest(instance_id=instance_id, identity_provider_id=idp)
    ).body.ud_pull_configuration
    assert after.incremental_callback_status == "disabled"
    assert after.periodic_sync_config.periodic_sync_cron == "0 45 1 * * ?"
    assert after.pull_protected_rule.group_deleted_threshold == 4


def test_sdk_is_refused_with_wrong_secret(sim_thread: SimulatorThread, world: World) -> None:
    client = _sdk(sim_thread.port, secret="definitely-wrong")
    with pytest.raises(Exception, match=r"code: 4\d\d") as caught:
        client.list_synchronization_jobs(sdk.ListSynchronizationJobsRequest(instance_id=instance_id_of(world)))
    assert getattr(caught.value, "code", None) == "SignatureDoesNotMatch"
    assert getattr(caught.value, "status_code", None) == 403


def test_sdk_unknown_key_and_bad_parameter(sim_thread: SimulatorThread, world: World) -> None:
    with pytest.raises(Exception, match=r"code: 4\d\d") as caught:
        _sdk(sim_thread.port, key_id="LTAI-unknown").list_instances(sdk.ListInstancesRequest())
    assert getattr(caught.value, "code", None) == "InvalidAccessKeyId.NotFound"
    with pytest.raises(Exception, match=r"code: 4\d\d") as caught:
        _sdk(sim_thread.port).list_synchronization_jobs(
            sdk.ListSynchronizationJobsRequest(instance_id=instance_id_of(world), max_results=101)
        )
    assert getattr(caught.value, "code", None) == "InvalidParameter"
