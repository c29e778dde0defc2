"""Command line: ``idaas-sync-exporter <command>``.

Exit codes: 0 success, 1 the API or a runtime dependency failed, 2 invalid input
(arguments, settings, files).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from idaas_sync_exporter import __version__
from idaas_sync_exporter.config.settings import ENV_PREFIX, Settings, SettingsError, flag_name
from idaas_sync_exporter.logs import LOG_FORMATS, LOG_LEVELS, configure_logging

if TYPE_CHECKING:
    from idaas_sync_exporter.config.validation import Document
    from idaas_sync_exporter.runtime import Demo
    from idaas_sync_exporter.simulator.launch import Tenant
    from idaas_sync_exporter.simulator.server import SimulatorApp
    from idaas_sync_exporter.simulator.sts import Sessions

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("idaas_sync_exporter")


class UsageError(Exception):
    """Invalid input; the message is one line naming the problem and the fix."""


class StartRefusedError(Exception):
    """What the settings point at cannot be used (shard, web config, endpoint, state file, port): exit 2.

    ``problems`` are one line each, printed together.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# Settings that only mean something to a running daemon; `once` does not offer them.
SERVE_ONLY_SETTINGS = frozenset(
    {
        "listen_address",
        "telemetry_path",
        "poll_interval_seconds",
        "target_refresh_seconds",
        "web_config_file",
        "web_max_connections",
        "console_job_url",
    }
)
# The settings that say which tenant to read: a demo replaces them with its simulator's.
DEMO_REPLACES = frozenset(
    {
        "instance_ids",
        "region_id",
        "endpoint",
        "access_key_id",
        "access_key_secret",
        "security_token",
        "target_ids",
        # the config file's tenancy keys
        "accounts",
        "instances",
    }
)
# The flag names Prometheus exporters share (exporter-toolkit), as aliases of our own.
TOOLKIT_ALIASES = {
    "--web.listen-address": "listen_address",
    "--web.telemetry-path": "telemetry_path",
    "--web.config.file": "web_config_file",
    "--log.level": "log_level",
    "--log.format": "log_format",
}


def _add_setting_flags(parser: argparse.ArgumentParser, *, serve: bool) -> None:
    """One flag per setting, named after it (``poll_interval_seconds`` -> ``--poll-interval-seconds``)."""
    from pydantic_core import PydanticUndefined

    from idaas_sync_exporter.config.settings import ENV_PREFIX, Settings, flag_name

    for name, field in Settings.model_fields.items():
        if name in SERVE_ONLY_SETTINGS and not serve:
            continue
        default = "" if field.default in (None, PydanticUndefined) else f"; default {field.default}"
        parser.add_argument(
            flag_name(name),
            dest=f"setting_{name}",
            default=None,
            metavar="VALUE",
            help=f"{field.description or name.replace('_', ' ')}{default} (env {ENV_PREFIX}{name.upper()})",
        )


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None, help="default: info")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None, help="default: logfmt")


class CommandLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line naming the command and where its help is.

    argparse's own print the whole usage (34 lines for one mistyped value) before the error.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed; an unknown option is one line naming it (never its value) and the closest option."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        commands = _subcommands(parser)
        command = commands.get(args.command, parser)
        command.error(_unknown_arguments(extras, command, commands.get("serve")))
    return args


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _unknown_arguments(
    extras: list[str], command: argparse.ArgumentParser, serve: argparse.ArgumentParser | None
) -> str:
    import difflib

    options = [name for action in command._actions for name in action.option_strings]
    # Only option names are shown: a value, or a stray word, may be a pasted secret.
    unknown = [extra.split("=", 1)[0] for extra in extras if extra.startswith("-")]
    if not unknown:
        return f"{len(extras)} unexpected argument(s) that are not options"
    name = unknown[0]
    shown = shown_option(name)
    spelled = name.replace("_", "-").lower()
    serve_options = [n for action in serve._actions for n in action.option_strings] if serve else []
    if spelled in options and spelled != name:
        return f"unknown option {shown}: the option is spelled {spelled}"
    if command is not serve and name in serve_options:
        return f"{shown} is an option of serve only"
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    if spelled in OPTION_SYNONYMS and OPTION_SYNONYMS[spelled] in options:
        return f"unknown option {shown}{more} (the option is {OPTION_SYNONYMS[spelled]})"
    closest = difflib.get_close_matches(spelled, options, n=1, cutoff=0.75)
    if closest:
        return f"unknown option {shown}{more} (did you mean {closest[0]}?)"
    closest = difflib.get_close_matches(spelled, serve_options, n=1, cutoff=0.75)
    if closest and command is not serve:
        return f"unknown option {shown}{more} (did you mean {closest[0]}? it is an option of serve only)"
    return f"unknown option {shown}{more}"


def shown_option(name: str) -> str:
    """An option name from the command line, as an error may show it: plain ASCII and at most 60 characters."""
    if len(name) <= 60 and all(c.isascii() and c.isprintable() for c in name):
        return name
    return "(an option name that is not plain ASCII, or longer than 60 characters)"


# Names other tools give the same options, which no spelling distance finds.
OPTION_SYNONYMS = {
    "--port": "--listen-address",
    "--listen": "--listen-address",
    "--address": "--listen-address",
    "--bind": "--listen-address",
    "--interval": "--poll-interval-seconds",
    "--region": "--region-id",
    "--instance": "--instance-ids",
    "--instance-id": "--instance-ids",
    "--state": "--state-path",
    "--state-file": "--state-path",
}


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = CommandLineParser(
        prog="idaas-sync-exporter",
        description="Prometheus exporter for Alibaba Cloud IDaaS synchronization jobs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    _add_exporter_commands(commands)
    _add_pull_config_command(commands)
    _add_simulate_command(commands)
    _add_rules_command(commands)
    _add_healthcheck_command(commands)
    return parser


def _add_exporter_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("serve", "run the exporter daemon"),
        (
            "once",
            "poll every instance once and print the exposition. It reads and updates the same state "
            "file as serve (--state-path; '' keeps state in memory), so jobs it counts are not counted "
            "again by a later serve, a first run counts none (it sets the baseline), and it is refused "
            "while a serve holds that file",
        ),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config", help="YAML file of settings, accounts and instances (see docs/configuration.md)"
        )
        command.add_argument(
            "--demo",
            action="store_true",
            help="start the built-in simulator in-process and export it; the tenant settings (instances, "
            "region, endpoint, AccessKey, target ids, the config file's accounts and instances) are "
            "ignored, every other setting applies; state is kept in memory unless --state-path is set",
        )
        command.add_argument(
            "--demo-speed", type=float, default=30.0, help="simulated seconds per real second in demo mode; default 30"
        )
        command.add_argument(
            "--demo-seed", type=int, default=1, help="seed of the simulated tenant in demo mode; default 1"
        )
        _add_setting_flags(command, serve=name == "serve")
        for alias, setting in TOOLKIT_ALIASES.items():
            if setting in SERVE_ONLY_SETTINGS and name != "serve":
                continue
            command.add_argument(
                alias,
                dest=f"alias_{setting}",
                default=None,
                metavar="VALUE",
                help=f"the same as {flag_name(setting)} (the name Prometheus exporters use)",
            )


def _add_pull_config_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull-config",
        help="read or change an identity provider's inbound-sync configuration",
        description="Get or set an identity provider's inbound-sync (UD pull) configuration. "
        "Exit codes: 0 done, 1 API failure, 2 invalid input, 3 not confirmed.",
    )
    pull_commands = pull.add_subparsers(dest="pull_command", metavar="ACTION")
    pull_commands.required = True
    for action in ("get", "set"):
        sub = pull_commands.add_parser(action, help=f"{action} the configuration")
        sub.add_argument("--instance-id", required=True)
        sub.add_argument("--identity-provider-id", required=True)
        sub.add_argument(
            "--config",
            help="YAML settings file as for serve; an instance its instances list is reached with its own "
            "account, region and endpoint",
        )
        for name in ("region_id", "endpoint", "access_key_id", "access_key_secret", "security_token", "log_level"):
            sub.add_argument("--" + name.replace("_", "-"), dest=f"setting_{name}", default=None, metavar="VALUE")
        if action == "get":
            sub.add_argument("--output", choices=("yaml", "json"), default="yaml")
        else:
            sub.add_argument("--file", required=True, help="YAML in the API document's terms")
            sub.add_argument("--dry-run", action="store_true", help="print the request parameters; send nothing")
            sub.add_argument("--yes", action="store_true", help="apply without asking")


def _add_simulate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from idaas_sync_exporter.simulator.world import scenario_names

    sim = commands.add_parser(
        "simulate",
        help="run the built-in IDaaS API simulator",
        description="Serve a simulated IDaaS (EIAM 2021-12-01) API that verifies ACS3 signatures: one AccessKey "
        "(the --access-key-* flags) or the accounts, keys, roles and instances of an --accounts file "
        "(see docs/simulator.md).",
    )
    sim.add_argument("--listen", default="127.0.0.1:18080", help="HOST:PORT (default 127.0.0.1:18080)")
    sim.add_argument(
        "--access-key-id",
        default=None,
        help="the AccessKey id accepted (default: IDAAS_SIMULATOR_ACCESS_KEY_ID, else 'simulator')",
    )
    sim.add_argument(
        "--access-key-secret",
        default=None,
        help="secret the simulator accepts; prefer --access-key-secret-file or the IDAAS_SIMULATOR_ACCESS_KEY_SECRET "
        "variable (command lines are visible to other users)",
    )
    sim.add_argument("--access-key-secret-file", default=None, metavar="FILE", help="read the secret from FILE")
    sim.add_argument("--security-token", default=None, help="require this STS token as well")
    sim.add_argument(
        "--instance-ids",
        default=None,
        metavar="IDS",
        help="comma-separated ids of the simulated instances (default: ids made from the seed, as many as the "
        "scenario has)",
    )
    sim.add_argument(
        "--accounts",
        default=None,
        metavar="FILE",
        help="YAML file of accounts, their AccessKeys, RAM roles and instances by region; replaces the "
        "--access-key-* flags and --instance-ids",
    )
    sim.add_argument("--region", default=None, help="with --accounts: serve the file's instances in this region only")
    sim.add_argument(
        "--sts-listen",
        default=None,
        metavar="HOST:PORT",
        help="with --accounts: also answer STS AssumeRole for the file's roles here, over TLS",
    )
    sim.add_argument("--sts-tls-cert", default=None, metavar="FILE", help="PEM certificate of --sts-listen")
    sim.add_argument("--sts-tls-key", default=None, metavar="FILE", help="PEM private key of --sts-listen")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--scenario", choices=scenario_names(), default="demo")
    sim.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="the simulated tenant lives this many times faster than real time (jobs come more often and take "
        "less long); the times the API reports never pass the wall clock (default 1)",
    )
    sim.add_argument("--throttle-rate", type=float, default=0.0, help="fraction of requests answered Throttling.User")
    sim.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500/503")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    _add_logging_flags(sim)


def _add_rules_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from idaas_sync_exporter.rules.render import KINDS

    rules = commands.add_parser(
        "rules",
        help="print the alerting or recording rules, tuned by a rules config",
        description="Print the Prometheus rules generated for a deployment: job selector, labels kept "
        "through aggregation, thresholds and runbook links come from --config (see docs/alerts.md).",
    )
    rules.add_argument("--kind", choices=KINDS, default="alerts", help="which file to print; default alerts")
    rules.add_argument("--config", help="YAML rules config; default: the documented defaults")


def _add_healthcheck_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from idaas_sync_exporter.web.probe import DEFAULT_TIMEOUT_SECONDS

    check = commands.add_parser(
        "healthcheck",
        help="probe /healthz of the server these settings describe (for container health checks)",
        description="Read the settings as serve does (file, IDAAS_EXPORTER_* variables, flags) and GET /healthz "
        "of the server they describe: over TLS when the web config enables it, on loopback when it listens on "
        "all interfaces. Exit codes: 0 it answered 200, 1 anything else (one line on stderr says what).",
    )
    check.add_argument("--config", help="YAML settings file, as given to serve")
    for setting in ("listen_address", "web_config_file"):
        check.add_argument(
            flag_name(setting),
            dest=f"setting_{setting}",
            default=None,
            metavar="VALUE",
            help=f"as for serve: {Settings.model_fields[setting].description} (env {ENV_PREFIX}{setting.upper()})",
        )
    for alias, setting in TOOLKIT_ALIASES.items():
        if setting in ("listen_address", "web_config_file"):
            check.add_argument(
                alias, dest=f"alias_{setting}", default=None, metavar="VALUE", help=f"the same as {flag_name(setting)}"
            )
    check.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds to wait for the answer; default {DEFAULT_TIMEOUT_SECONDS:g}",
    )


# Health checks are short; a longer wait (or an infinite one, which sockets refuse) is a mistake.
MAX_HEALTHCHECK_TIMEOUT_SECONDS = 300


def _healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 or 1 only: container engines reserve other exit codes of a health check."""
    import ssl

    from idaas_sync_exporter.web.config import WebConfigError

    try:
        problem = _health_problem(args)
    except SettingsError as exc:
        problem = "invalid setting: " + "; ".join(exc.problems)
    except (UsageError, WebConfigError) as exc:
        problem = str(exc)
    except (ssl.SSLError, OSError) as exc:
        problem = f"cannot read the TLS certificate or key of the web config: {exc}"
    if problem is None:
        return EXIT_OK
    # One line: a container engine keeps the output of its checks, and a log line is one line.
    print(f"idaas-sync-exporter: healthcheck: {' '.join(problem.split())}", file=sys.stderr)
    return EXIT_RUNTIME


def _health_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the server the settings describe; None when /healthz answers 200."""
    from idaas_sync_exporter.web import probe
    from idaas_sync_exporter.web.config import load

    if not 0 < args.timeout <= MAX_HEALTHCHECK_TIMEOUT_SECONDS:
        raise UsageError(f"--timeout must be between 0 and {MAX_HEALTHCHECK_TIMEOUT_SECONDS}, got {args.timeout}")
    settings = settings_from(args, defaults={"state_path": ""})
    host, port = settings.listen_host_port
    if port == 0:
        raise UsageError(f"listen address {settings.listen_address} has no fixed port to probe")
    tls = load(settings.web_config_file).tls if settings.web_config_file else None
    return probe.probe(probe.target(host, port, tls), args.timeout)


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report a tool whose reader went away


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a reader gone away is caught, not at the interpreter's exit
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers are installed (start-up, a prompt): no traceback.
        print("idaas-sync-exporter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, as Unix tools do.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit:
        # argparse exits from parse_args (--help, usage errors) with its text still buffered: flush it
        # here too, or the interpreter's own flush at exit fails on a closed pipe and exits 120.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
        raise
    return code


def write_stdout(data: bytes) -> None:
    """Write all of ``data`` to standard output; BrokenPipeError once its reader has gone away.

    Straight to the descriptor, checking each write: a pipe whose reader exits while a large write
    waits takes part of it and reports success, and the buffered file object then dropped the rest
    and exited 0, as if the whole exposition had been delivered.
    """
    sys.stdout.flush()
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, io.UnsupportedOperation):
        # A stream with no descriptor (captured, redirected in-process) takes the text whole.
        sys.stdout.write(data.decode("utf-8"))
        return
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is buffered cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parse_command_line(parser, argv)
    try:
        if args.command == "simulate":
            configure_logging(args.log_level or "info", args.log_format or "logfmt")
            return _simulate(args)
        if args.command in ("serve", "once"):
            return _exporter_command(args)
        if args.command == "pull-config":
            return _pull_config(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "healthcheck":
            return _healthcheck(args)
    # Every command's exit code is decided here (the health check's aside: it exits 0 or 1 only, as
    # container engines require), and by main() for Ctrl-C and a reader gone away.
    except UsageError as exc:
        print(f"idaas-sync-exporter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"idaas-sync-exporter: invalid setting: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StartRefusedError as exc:
        for problem in exc.problems:
            print(f"idaas-sync-exporter: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # main() ends quietly with 141
    except OSError as exc:
        print(f"idaas-sync-exporter: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _exporter_command(args: argparse.Namespace) -> int:
    from idaas_sync_exporter.config.tenancy import load_tenancy, plan_tenancy
    from idaas_sync_exporter.runtime import once, serve

    if args.demo_speed <= 0 or not math.isfinite(args.demo_speed):
        raise UsageError(
            f"--demo-speed must be a positive number of simulated seconds per second, got {args.demo_speed}"
        )
    ignored: list[str] = []
    if args.demo:
        # The demo is hermetic about the tenant, so a shell set up for production cannot point it at
        # a real instance or fail it on a real key; every other setting applies as given. A demo
        # starts fresh unless told where to keep state (by any source).
        settings = settings_from(args, defaults={"state_path": ""}, ignored=DEMO_REPLACES, ignored_given=ignored)
        tenancy = plan_tenancy(settings)
    else:
        settings = settings_from(args, defaults={})
        tenancy = load_tenancy(settings, config_document(args))
    if not tenancy.instances and not args.demo:
        raise SettingsError(
            [
                "IDAAS_EXPORTER_INSTANCE_IDS is required (comma-separated instance ids, or --instance-ids, "
                "or instances in --config); use --demo to try the exporter without one"
            ]
        )
    from idaas_sync_exporter.runtime import start_problems

    problems = start_problems(settings, tenancy, demo=args.demo, serving=args.command == "serve")
    if problems:
        raise StartRefusedError(problems)
    configure_logging(settings.log_level, settings.log_format)
    if ignored:
        log.info("demo mode ignores the tenant settings given", extra={"ignored": ", ".join(ignored)})
    demo = _demo(args.demo_speed, args.demo_seed) if args.demo else None
    from idaas_sync_exporter.api.endpoint import EndpointError
    from idaas_sync_exporter.collect.store import StateError
    from idaas_sync_exporter.config.shards import ShardError
    from idaas_sync_exporter.runtime import ListenError
    from idaas_sync_exporter.web.config import WebConfigError

    try:
        if args.command == "serve":
            asyncio.run(serve(settings, demo, tenancy=tenancy))
            return EXIT_OK
        body, errors = asyncio.run(once(settings, demo, tenancy=tenancy))
    except (EndpointError, StateError, WebConfigError, ShardError, ListenError) as exc:
        hint = ""
        if isinstance(exc, StateError) and args.command == "once" and "in use by another" in str(exc):
            hint = "; or run once with --state-path '' to poll without touching the daemon's state"
        problems = exc.problems if isinstance(exc, WebConfigError) else [f"{exc}{hint}"]
        raise StartRefusedError(problems) from None
    write_stdout(body)
    for error in errors:
        print(f"idaas-sync-exporter: error: poll failed: {error}", file=sys.stderr)
    return EXIT_RUNTIME if errors else EXIT_OK


def _demo(speed: float, seed: int) -> Demo:
    """The demo's simulated tenant, started in the exporter's event loop and handed over as a real one is."""
    from idaas_sync_exporter.runtime import Demo, DemoTenant
    from idaas_sync_exporter.simulator.demo import DemoOptions, start_demo_simulator

    async def start() -> DemoTenant:
        running, key_id, secret, instance_ids = await start_demo_simulator(DemoOptions(speed=speed, seed=seed))
        return DemoTenant(running.endpoint, key_id, secret, instance_ids, running.stop)

    return Demo(start=start, speed=speed)


def settings_from(
    args: argparse.Namespace,
    *,
    defaults: dict[str, Any],
    ignored: frozenset[str] = frozenset(),
    ignored_given: list[str] | None = None,
) -> Settings:
    """The settings of the file, the environment and the ``--setting`` flags; ``defaults`` where none is given.

    Settings in ``ignored`` are dropped from every source (their names as given go to ``ignored_given``).
    Raises :class:`SettingsError`, which :func:`main` prints one line per problem.
    """
    from idaas_sync_exporter.config.settings import load_settings

    given = vars(args)
    flags = {
        key.removeprefix("setting_"): value
        for key, value in given.items()
        if key.startswith("setting_") and value is not None
    }
    flag_names = {}
    for alias, setting in TOOLKIT_ALIASES.items():
        value = given.get(f"alias_{setting}")
        if value is None:
            continue
        if setting in flags:
            raise UsageError(f"{alias} and {flag_name(setting)} are the same setting; give one of them")
        flags[setting] = value
        flag_names[setting] = alias
    return load_settings(
        config_document(args),
        flags,
        flag_names=flag_names,
        defaults=defaults,
        ignored=ignored,
        ignored_given=ignored_given,
    )


def config_document(args: argparse.Namespace) -> Document | None:
    """The ``--config`` file, read once per command: the settings and the accounts and instances share the read.

    Read twice, a file edited in between could give settings from one version and instances from another.
    """
    from idaas_sync_exporter.config.settings import read_config_document

    if not getattr(args, "config", None):
        return None
    document: Document | None = getattr(args, "config_document", None)
    if document is None:
        document = read_config_document(args.config)
        args.config_document = document
    return document


def _pull_config(args: argparse.Namespace) -> int:
    from idaas_sync_exporter.api.client import EiamClient
    from idaas_sync_exporter.api.credentials import CredentialsProvider
    from idaas_sync_exporter.api.endpoint import Endpoint, resolve_endpoint
    from idaas_sync_exporter.config.settings import check_instance_id
    from idaas_sync_exporter.config.tenancy import load_tenancy
    from idaas_sync_exporter.pullconfig import command as pullconfig_cli
    from idaas_sync_exporter.runtime import account_credentials, credentials_from

    try:
        check_instance_id(args.instance_id)
    except ValueError as exc:
        raise UsageError(f"--instance-id: {exc}") from None
    settings = settings_from(args, defaults={"state_path": ""})
    endpoint = resolve_endpoint(settings.region_id, settings.endpoint)
    configure_logging(settings.log_level, settings.log_format)

    def connection() -> tuple[Endpoint, CredentialsProvider]:
        # An instance the config file lists is reached as serve reaches it: with its account, region
        # and endpoint; any other with the flat settings. A dry run reaches nothing, so reads no key.
        tenancy = load_tenancy(settings, config_document(args))
        listed = next((i for i in tenancy.instances if i.instance_id == args.instance_id), None)
        if listed is None:
            return endpoint, credentials_from(settings)
        return resolve_endpoint(listed.region, listed.endpoint), account_credentials(settings, tenancy)[listed.account]

    async def apply(client: EiamClient | None) -> int:
        return await pullconfig_cli.set_(
            client,
            args.instance_id,
            args.identity_provider_id,
            args.file,
            dry_run=args.dry_run,
            yes=args.yes,
            stdin=sys.stdin,
            out=sys.stdout,
        )

    async def run() -> int:
        if args.pull_command == "set" and args.dry_run:
            return await apply(None)  # a dry run contacts nothing
        where, credentials = connection()
        async with EiamClient(endpoint=where, credentials=credentials) as client:
            if args.pull_command == "get":
                return await pullconfig_cli.get(
                    client, args.instance_id, args.identity_provider_id, args.output, sys.stdout
                )
            return await apply(client)

    return asyncio.run(run())


def _rules(args: argparse.Namespace) -> int:
    from pathlib import Path

    from idaas_sync_exporter.rules.config import RulesConfigError, load
    from idaas_sync_exporter.rules.render import render

    try:
        config = load(Path(args.config) if args.config else None)
    except RulesConfigError as exc:
        raise StartRefusedError(exc.problems) from None
    write_stdout(render(config, args.kind).encode("utf-8"))
    return EXIT_OK


def _rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--{name} must be between 0 and 1, got {value}")
    return value


class _ListenError(Exception):
    """A listener of ``simulate`` could not start: which flag's address, and why."""

    def __init__(self, flag: str, address: str, error: OSError) -> None:
        super().__init__(flag)
        self.flag = flag
        self.address = address
        self.error = error


def _simulate(args: argparse.Namespace) -> int:
    from idaas_sync_exporter.config.settings import parse_listen_address
    from idaas_sync_exporter.simulator.clock import CompressedClock
    from idaas_sync_exporter.simulator.launch import LaunchError, TenantFlags, tenant
    from idaas_sync_exporter.simulator.server import Faults, SimulatorApp
    from idaas_sync_exporter.simulator.sts import Sessions
    from idaas_sync_exporter.simulator.world import SCENARIOS, World

    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen {exc}") from None
    if not (args.speed > 0 and math.isfinite(args.speed)):
        raise UsageError(f"--speed must be a positive number of simulated seconds per second, got {args.speed}")
    if not (args.latency >= 0 and math.isfinite(args.latency)):
        raise UsageError(f"--latency must be a number of seconds, 0 or more, got {args.latency}")
    faults = Faults(
        throttle_rate=_rate("throttle-rate", args.throttle_rate),
        server_error_rate=_rate("error-rate", args.error_rate),
        latency_seconds=args.latency,
    )
    flags = TenantFlags(
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        access_key_secret_file=args.access_key_secret_file,
        security_token=args.security_token,
        instance_ids=args.instance_ids,
        accounts=args.accounts,
        region=args.region,
        sts_listen=args.sts_listen,
        sts_tls_cert=args.sts_tls_cert,
        sts_tls_key=args.sts_tls_key,
    )
    try:
        served = tenant(flags, os.environ)
    except LaunchError as exc:
        raise StartRefusedError(exc.problems) from None
    # The world runs --speed times faster; what the API reports is compressed back onto the wall clock.
    clock = CompressedClock(speed=args.speed)
    world = World(SCENARIOS[args.scenario], seed=args.seed, clock=clock, instance_ids=served.instance_ids)
    sessions = Sessions(served.cloud) if served.cloud is not None else None
    instance_ids = set(world.instances)
    app = SimulatorApp(
        world,
        served.keys,
        faults=faults,
        seed=args.seed,
        session_keys=(lambda key_id, token: sessions.key(key_id, token, instance_ids)) if sessions else None,
    )
    try:
        asyncio.run(_serve_simulator(args, app, served, sessions, (host, port)))
    except _ListenError as failure:
        from idaas_sync_exporter.runtime import os_error_reason

        raise StartRefusedError(
            [
                f"cannot listen on {failure.address}: {os_error_reason(failure.error)}; "
                f"choose another address with {failure.flag}"
            ]
        ) from None
    return EXIT_OK


async def _serve_simulator(
    args: argparse.Namespace,
    app: SimulatorApp,
    served: Tenant,
    sessions: Sessions | None,
    address: tuple[str, int],
) -> None:
    """Serve the simulator (and its STS stand-in) until SIGINT or SIGTERM."""
    from idaas_sync_exporter.simulator.server import start_simulator
    from idaas_sync_exporter.simulator.sts import RunningSts, StsApp, start_sts

    # Handlers first: a SIGTERM that comes as soon as the port answers must stop it cleanly, not kill it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_simulator(app, *address)
    except OSError as exc:
        raise _ListenError("--listen", args.listen, exc) from None
    sts: RunningSts | None = None
    if sessions is not None and served.sts_address is not None and served.sts_tls is not None:
        try:
            sts = await start_sts(StsApp(sessions), served.sts_tls, *served.sts_address)
        except OSError as exc:
            await running.stop()
            raise _ListenError("--sts-listen", args.sts_listen, exc) from None
    owners = served.owners()
    for instance_id, state in app.world.instances.items():
        described: dict[str, object] = {
            "instance_id": instance_id,
            "identity_providers": len(state.providers),
            "applications": len(state.applications),
        }
        if instance_id in owners:
            described["account"] = owners[instance_id]
        log.info("simulated instance", extra=described)
    listening: dict[str, object] = {
        "endpoint": running.endpoint,
        "scenario": args.scenario,
        "seed": args.seed,
        "speed": args.speed,
    }
    if served.region is not None:
        listening["region"] = served.region
    log.info("simulator listening", extra=listening)
    if sts is not None:
        log.info("sts listening", extra={"sts_endpoint": sts.endpoint})
    await stop.wait()
    if sts is not None:
        await sts.stop()
    await running.stop()
    log.info("simulator stopped")


if __name__ == "__main__":
    sys.exit(main())
