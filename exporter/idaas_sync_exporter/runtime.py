"""Builds a running exporter from settings: client, state, pollers, server, scheduler; a demo's tenant as given."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import CredentialsProvider
from idaas_sync_exporter.api.endpoint import EndpointError, resolve_endpoint
from idaas_sync_exporter.api.ratelimit import TokenBucket
from idaas_sync_exporter.collect.poller import InstancePoller, PollOptions
from idaas_sync_exporter.collect.store import StateError, StateStore, check_state_path
from idaas_sync_exporter.config.accounts import Account, credentials_for, inline_key_problems, settings_account
from idaas_sync_exporter.config.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    default_state_path,
    flag_name,
    parse_listen_address,
)
from idaas_sync_exporter.config.shards import Shard, ShardError, resolve
from idaas_sync_exporter.config.tenancy import DEFAULT_ACCOUNT, Tenancy, plan_tenancy
from idaas_sync_exporter.memory import limit_malloc_arenas
from idaas_sync_exporter.metrics.api_requests import ApiStats
from idaas_sync_exporter.metrics.selfmetrics import InstanceLabels, SelfMetrics
from idaas_sync_exporter.service import Exporter
from idaas_sync_exporter.web.config import WebConfigError, WebConfigWatcher
from idaas_sync_exporter.web.connections import ConnectionGuard, quiet_accept_errors
from idaas_sync_exporter.web.server import ENDPOINTS_KEY, build_app

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoTenant:
    """A simulated tenant, as a real one is given: an endpoint, an AccessKey and its instances."""

    endpoint: str
    key_id: str
    secret: SecretStr
    instance_ids: list[str]
    stop: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Demo:
    """How to start the demo's simulated tenant inside the running event loop (the CLI passes the simulator's)."""

    start: Callable[[], Awaitable[DemoTenant]]
    speed: float


def flat_settings_account(settings: Settings) -> Account:
    """The flat settings' AccessKey (or the default chain) as the ``default`` account."""

    def named(name: str) -> str:
        return f"{name} ({ENV_PREFIX}{name.upper()}, {flag_name(name)} or the config file)"

    return settings_account(
        DEFAULT_ACCOUNT,
        settings.access_key_id,
        settings.access_key_secret,
        settings.security_token,
        names={part: named(setting) for part, setting in _SETTING_OF_PART.items()},
    )


# The setting each value of the flat AccessKey comes from.
_SETTING_OF_PART = {"id": "access_key_id", "secret": "access_key_secret", "security_token": "security_token"}


def credentials_from(settings: Settings) -> CredentialsProvider:
    """The settings' own AccessKey, or the default chain; SettingsError (exit 2) for a value that cannot be a key."""
    account = flat_settings_account(settings)
    problems = inline_key_problems(account)
    if problems:
        raise SettingsError(problems)
    # The chain is named as the variables and documents name it, not as an account the user never wrote.
    label = "the default credential chain" if account.default_chain is not None else None
    return credentials_for(account, {account.name: account}, label=label)


def account_credentials(settings: Settings, tenancy: Tenancy) -> dict[str, CredentialsProvider]:
    """Each account's credentials; the settings' own AccessKey (or the default chain) for ``default``."""
    named = {name: account for name, account in tenancy.accounts.items() if account is not None}
    return {
        name: credentials_for(account, named) if account is not None else credentials_from(settings)
        for name, account in tenancy.accounts.items()
    }


def build_exporter(
    settings: Settings, tenancy: Tenancy, credentials: Mapping[str, CredentialsProvider]
) -> tuple[Exporter, list[EiamClient]]:
    """The exporter of ``tenancy``'s instances, and its API clients (one per account and endpoint)."""
    api_stats = ApiStats()
    client_options = ClientOptions(
        connect_timeout_seconds=settings.connect_timeout_seconds,
        read_timeout_seconds=settings.read_timeout_seconds,
        attempt_timeout_seconds=settings.api_timeout_seconds,
    )
    # The API's flow control counts per account: one bucket per account, shared by its
    # instances in every region, and no bucket shared between accounts.
    buckets: dict[str, TokenBucket] = {}
    clients: dict[tuple[str, str], EiamClient] = {}
    # Only the default path's tree (a directory named after the exporter) is created when missing.
    store = StateStore(settings.state_path or None, create_directory=settings.state_path == default_state_path())
    pollers: dict[str, InstancePoller] = {}
    for instance in tenancy.instances:
        account = tenancy.accounts[instance.account]
        rate = account.requests_per_second if account and account.requests_per_second else settings.requests_per_second
        bucket = buckets.get(instance.account) or TokenBucket(rate, max(1, int(rate * 2)))
        buckets[instance.account] = bucket
        endpoint = resolve_endpoint(instance.region, instance.endpoint)
        client = clients.get((instance.account, endpoint.base_url))
        if client is None:
            client = EiamClient(
                endpoint=endpoint,
                credentials=credentials[instance.account],
                options=client_options,
                observer=api_stats.observe,
                rate_limit=bucket,
            )
            clients[(instance.account, endpoint.base_url)] = client
        options = PollOptions(
            lookback_seconds=settings.lookback_seconds,
            overlap_seconds=settings.overlap_seconds,
            stuck_after_seconds=settings.stuck_after_seconds,
            recheck_max_seconds=settings.recheck_max_seconds,
            deadline_seconds=settings.poll_timeout_seconds,
            late_horizon_seconds=settings.late_horizon_seconds,
            recent_jobs=settings.recent_jobs,
            target_types=instance.target_types,
            directions=instance.directions,
            target_ids=instance.target_ids,
        )
        pollers[instance.instance_id] = InstancePoller(instance.instance_id, client, store, options)
    exporter = Exporter(
        store=store,
        pollers=pollers,
        api_stats=api_stats,
        poll_intervals={instance.instance_id: instance.poll_interval_seconds for instance in tenancy.instances},
    )
    return exporter, list(clients.values())


async def open_exporter(
    stack: AsyncExitStack, settings: Settings, tenancy: Tenancy, demo: Demo | None, shard: Shard
) -> tuple[Settings, Tenancy, Exporter]:
    """The exporter for ``tenancy``, or for an in-process simulator in demo mode; closed by ``stack``.

    Returns the settings and tenancy in force (demo mode points them at the simulator and
    its instances; with shards, the instances are this shard's).
    """
    if demo is not None:
        tenant = await demo.start()
        stack.push_async_callback(tenant.stop)
        settings = settings.model_copy(
            update={
                "endpoint": tenant.endpoint,
                "instance_ids": tenant.instance_ids,
                "access_key_id": tenant.key_id,
                "access_key_secret": tenant.secret,
            }
        )
        tenancy = plan_tenancy(settings)
        log.info("demo mode: simulated IDaaS API", extra={"endpoint": tenant.endpoint, "speed": demo.speed})
    if shard.count > 1:
        owned = shard.owned(tenancy.instance_ids)
        log.log(
            logging.INFO if owned else logging.WARNING,
            "shard owns these instances" if owned else "shard owns none of the configured instances",
            extra={
                "shard_index": shard.index,
                "shard_count": shard.count,
                "instances": ",".join(owned),
                "configured": len(tenancy.instances),
            },
        )
        tenancy = tenancy.only(owned)
    for name, account in tenancy.accounts.items():
        instances = [i.instance_id for i in tenancy.instances if i.account == name]
        if instances and account is not None:
            log.info("account", extra={"account": name, "source": account.describe(), "instances": ",".join(instances)})
    exporter, clients = build_exporter(settings, tenancy, account_credentials(settings, tenancy))
    for client in clients:
        stack.push_async_callback(client.aclose)
    stack.callback(exporter.store.close)
    log_state(exporter.store)
    return settings, tenancy, exporter


def log_state(store: StateStore) -> None:
    """One line at start: where the state is kept and whether this start created the file."""
    if store.path:
        aside = {"moved_aside": store.moved_aside} if store.moved_aside else {}
        log.info("state file", extra={"path": store.path, "new": store.created, **aside})
    else:
        log.info("state kept in memory only (state_path is empty): counting starts afresh at every start")


def _shown_address(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def landing_url(host: str, port: int, *, tls: bool) -> str:
    """The address to open in a browser: all-interfaces and loopback listeners are reached at localhost."""
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


class ListenError(Exception):
    """The metrics server cannot listen where the settings say; the message names the address and the setting."""


# Errors of an IPv6 socket where IPv6 is disabled (in the kernel, or on every interface).
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT})


def listens_on_every_interface(listen_address: str) -> bool:
    """``:PORT``: every interface, IPv4 and IPv6, as Go's ``:PORT`` (``0.0.0.0:PORT`` is IPv4 only)."""
    return listen_address.rpartition(":")[0] == ""


def _bound_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # IPv6 only: IPv4 has its own socket, so either stack can be missing without the other failing.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    listen_address: str,
    context: ssl.SSLContext | None,
) -> list[asyncio.Server]:
    """The listening servers of ``listen_address``: two (IPv4 and IPv6) for ``:PORT``, IPv4 alone where
    IPv6 is disabled; :class:`ListenError` naming the address and the setting when it cannot listen."""
    host, port = parse_listen_address(listen_address)
    servers: list[asyncio.Server] = []
    try:
        if listens_on_every_interface(listen_address):
            await _listen_on_both_stacks(loop, factory, port, context, servers)
        else:
            servers.append(await loop.create_server(factory, host, port, ssl=context, reuse_address=True))
    except OSError as exc:
        for server in servers:
            server.close()
        raise ListenError(
            f"cannot listen on {listen_address}: {os_error_reason(exc)}; choose another address with --listen-address "
            f"({ENV_PREFIX}LISTEN_ADDRESS)"
        ) from None
    return servers


async def _listen_on_both_stacks(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    port: int,
    context: ssl.SSLContext | None,
    servers: list[asyncio.Server],
) -> None:
    """IPv4's 0.0.0.0, then IPv6's :: on the same port (the one IPv4 got, for port 0), into ``servers``."""
    ipv4 = _bound_socket(socket.AF_INET, "0.0.0.0", port)  # noqa: S104 - every interface was asked for
    servers.append(await loop.create_server(factory, sock=ipv4, ssl=context))
    try:
        ipv6 = _bound_socket(socket.AF_INET6, "::", int(ipv4.getsockname()[1]))
    except OSError as exc:
        if exc.errno not in _NO_IPV6:
            raise
        log.info("IPv6 is not available: listening on IPv4 only", extra={"error": os_error_reason(exc)})
        return
    servers.append(await loop.create_server(factory, sock=ipv6, ssl=context))


def os_error_reason(exc: OSError) -> str:
    """An OS error's fixed text (``address already in use``), without the library's wording around it."""
    return os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__


async def _close_listener(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


async def stop_polling(scheduler: AsyncIOScheduler, exporter: Exporter, limit_seconds: float = 5.0) -> None:
    """Stop scheduling; polls in flight finish and commit (for up to 5 s) first, then the rest end quietly."""
    # Pause, not shut down, first: shutting the scheduler down cancels the polls it runs, and the
    # scheduler logs each cancelled job as an error. The exporter ends its own jobs instead.
    scheduler.pause()
    await exporter.stop_jobs(limit_seconds)
    # Let the scheduler see its jobs' ends (done callbacks run on the next turn of the loop).
    await asyncio.sleep(0)
    scheduler.shutdown(wait=False)


def start_problems(settings: Settings, tenancy: Tenancy, *, demo: bool, serving: bool) -> list[str]:
    """Every problem with what the settings name (shard, web config, endpoints, state path), together.

    Checked before anything is created or started, so one start reports them all and a refused
    start leaves no state file behind. Each is one line, as the settings' own problems are.
    """
    problems: list[str] = []
    try:
        replica_shard(settings)
    except ShardError as exc:
        problems.append(str(exc))
    if serving and settings.web_config_file:
        try:
            WebConfigWatcher(settings.web_config_file)
        except WebConfigError as exc:
            problems.extend(exc.problems)
    if not demo:
        for instance in tenancy.instances:
            try:
                resolve_endpoint(instance.region, instance.endpoint)
            except EndpointError as exc:
                problems.append(f"instance {instance.instance_id}: {exc}")
    if settings.state_path:
        try:
            check_state_path(settings.state_path, create_directory=settings.state_path == default_state_path())
        except StateError as exc:
            problems.append(str(exc))
    return problems


def replica_shard(settings: Settings) -> Shard:
    """This replica's shard; resolved before anything starts, so one that cannot tell never polls another's."""
    return resolve(settings.shard_count, settings.shard_index, socket.gethostname())


async def _reload_web_config(watcher: WebConfigWatcher) -> None:
    # A coroutine, so the scheduler runs it on the event loop: the check is one stat() (every
    # request makes it too); a changed file is read and checked in the watcher's own thread, and
    # this does not wait for it, so a read that never returns cannot pile up scheduler runs.
    watcher.maybe_reload()


async def serve(
    settings: Settings,
    demo: Demo | None = None,
    stop: asyncio.Event | None = None,
    tenancy: Tenancy | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); polls in flight finish and commit first."""
    limit_malloc_arenas()
    # Worker threads (state commits) hold the GIL in bursts; a shorter switch interval
    # hands it back to the event loop sooner, so scrapes do not wait behind them.
    sys.setswitchinterval(0.0005)
    async with AsyncExitStack() as stack:
        shard = replica_shard(settings)
        # Read before the state file is opened: a refused web config must leave nothing created.
        watcher = WebConfigWatcher(settings.web_config_file)
        settings, tenancy, exporter = await open_exporter(
            stack, settings, tenancy or plan_tenancy(settings), demo, shard
        )
        connections = ConnectionGuard(limit=settings.web_max_connections)
        app = build_app(
            exporter,
            poll_interval=settings.poll_interval_seconds,
            web_config=watcher,
            connections=connections,
            telemetry_path=settings.telemetry_path,
            self_metrics=SelfMetrics(
                shard=shard,
                instances=instance_labels(tenancy),
                web_config=(lambda: watcher.last_reload) if settings.web_config_file else None,
            ),
            shard=shard,
            console_url=settings.console_job_url,
            docs_url=settings.docs_url,
            instances=tenancy.instances,
            demo_speed=demo.speed if demo is not None else None,
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        # The state file's counters are served from the first scrape on, without it waiting.
        await app[ENDPOINTS_KEY].prepare_current()
        loop = asyncio.get_running_loop()
        # Handlers before the port opens: a SIGTERM sent as soon as /healthz answers must stop it
        # cleanly (exit 0), not kill it with the default action.
        stop_event = stop or asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_event.set)
        quiet_accept_errors(loop)
        host, _ = settings.listen_host_port
        if runner.server is None:
            raise RuntimeError("aiohttp runner has no server after setup")
        servers = await listen(loop, connections.wrap(runner.server), settings.listen_address, watcher.context)
        for server in servers:
            stack.push_async_callback(_close_listener, server)
        log.info(
            "listening",
            extra={
                "url": landing_url(host, int(servers[0].sockets[0].getsockname()[1]), tls=watcher.context is not None),
                "instances": ",".join(tenancy.instance_ids),
                "addresses": ",".join(_shown_address(server) for server in servers),
            },
        )

        scheduler = AsyncIOScheduler()
        exporter.schedule(scheduler, settings.poll_interval_seconds, settings.target_refresh_seconds)
        if settings.web_config_file:
            # Certificates are renewed on disk while the exporter runs; notice within seconds.
            scheduler.add_job(_reload_web_config, "interval", args=[watcher], seconds=5, id="web-config", coalesce=True)
        scheduler.start()

        await stop_event.wait()
        log.info("stopping: waiting for polls in flight to save their state")
        await stop_polling(scheduler, exporter)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")


def instance_labels(tenancy: Tenancy) -> list[InstanceLabels]:
    return [InstanceLabels(i.instance_id, i.region, i.account) for i in tenancy.instances]


async def once(settings: Settings, demo: Demo | None = None, tenancy: Tenancy | None = None) -> tuple[bytes, list[str]]:
    """One full poll of every instance; returns the exposition and the errors (empty when all succeeded)."""
    from idaas_sync_exporter.metrics.exposition import render

    async with AsyncExitStack() as stack:
        shard = replica_shard(settings)
        settings, tenancy, exporter = await open_exporter(
            stack, settings, tenancy or plan_tenancy(settings), demo, shard
        )
        for instance_id in tenancy.instance_ids:
            await exporter.refresh_targets(instance_id)
            await exporter.poll(instance_id)
        errors = [
            f"{instance_id}: {view.last_error}"
            for instance_id, view in exporter.snapshot.instances.items()
            if not view.up
        ]
        self_metrics = SelfMetrics(shard=shard, instances=instance_labels(tenancy))
        return render(exporter.snapshot, self_metrics=self_metrics), errors
