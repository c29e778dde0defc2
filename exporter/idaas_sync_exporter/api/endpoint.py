"""Turn a region id or an explicit endpoint setting into a base URL."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

REGION_PATTERN = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


class EndpointError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str  # host[:port], exactly what goes into the signed `host` header

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def is_loopback(self) -> bool:
        hostname = self.host.rsplit(":", 1)[0] if not self.host.startswith("[") else self.host
        hostname = hostname.strip("[]")
        if hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(hostname).is_loopback
        except ValueError:
            return False


def parse_endpoint(endpoint: str) -> Endpoint:
    if "://" not in endpoint:
        if not _HOST.match(endpoint):
            raise EndpointError(f"endpoint {endpoint!r} is not a host name; use e.g. eiam.cn-hangzhou.aliyuncs.com")
        endpoint = "https://" + endpoint  # a bare host means HTTPS, as the SDK assumes
    usage = "use https://host[:port] or a bare host such as eiam.cn-hangzhou.aliyuncs.com"
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # raises for a port out of range
    except ValueError as exc:
        raise EndpointError(f"endpoint {endpoint!r} is not a valid URL ({exc}); {usage}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"endpoint {endpoint!r} is not a valid URL; {usage}")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(f"endpoint {endpoint!r} must not carry a user name or password; {usage}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EndpointError(f"endpoint {endpoint!r} must not carry a path or query; the API path is always /")
    if port == 0:
        raise EndpointError(f"endpoint {endpoint!r} has port 0; {usage}")
    return Endpoint(parts.scheme, parts.netloc)


def resolve_endpoint(region_id: str, endpoint: str | None = None) -> Endpoint:
    """``eiam.<region>.aliyuncs.com`` over HTTPS, unless ``endpoint`` overrides it.

    ``endpoint`` may be a bare host (HTTPS assumed, as the SDK does) or a full
    ``http(s)://host[:port]`` URL. Plain HTTP off loopback is allowed (a VPC proxy
    may need it) but warned about, since the signature does not hide parameters.
    """
    if endpoint:
        result = parse_endpoint(endpoint)
        if result.scheme == "http" and not result.is_loopback:
            log.warning(
                "plain http endpoint off loopback: requests are signed but not encrypted",
                extra={"endpoint": result.base_url},
            )
        return result
    if not region_id or not REGION_PATTERN.match(region_id):
        raise EndpointError(f"region id {region_id!r} is not valid; use e.g. cn-hangzhou or ap-southeast-1")
    return Endpoint("https", f"eiam.{region_id}.aliyuncs.com")
