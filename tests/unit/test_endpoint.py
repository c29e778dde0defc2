from __future__ import annotations

import logging

import pytest

from idaas_sync_exporter.api.endpoint import EndpointError, resolve_endpoint


def test_region_gives_public_endpoint() -> None:
    endpoint = resolve_endpoint("ap-southeast-1")
    assert endpoint.base_url == "https://eiam.ap-southeast-1.aliyuncs.com"
    assert endpoint.host == "eiam.ap-southeast-1.aliyuncs.com"


def test_explicit_host_and_url() -> None:
    assert resolve_endpoint("cn-hangzhou", "eiam-cn.vpc-proxy.aliyuncs.com").base_url == (
        "https://eiam-cn.vpc-proxy.aliyuncs.com"
    )
    local = resolve_endpoint("cn-hangzhou", "http://127.0.0.1:18080")
    assert local.base_url == "http://127.0.0.1:18080" and local.host == "127.0.0.1:18080" and local.is_loopback


def test_plain_http_off_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        resolve_endpoint("cn-hangzhou", "http://10.1.2.3:8080")
    assert "plain http" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resolve_endpoint("cn-hangzhou", "http://localhost:8080")
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("", None),
        ("Hangzhou", None),
        ("cn-hangzhou", "ftp://x"),
        ("cn-hangzhou", "https://h/path"),
        ("cn-hangzhou", "bad host"),
    ],
)
def test_invalid_inputs_are_refused(region: str, endpoint: str | None) -> None:
    with pytest.raises(EndpointError):
        resolve_endpoint(region, endpoint)
