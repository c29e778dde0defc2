"""Every shell and YAML example in README.md and docs/*.md is run here, or marked in its page as not run.

A block is run by the runner registered for its page and first line: YAML settings go through the
exporter's own loaders, shell commands of the exporter's CLI run against ``--demo`` or a simulator this
module starts. A block that cannot run here is preceded, on the line directly above its fence, by
``<!-- not run: REASON -->`` (docs/development.md).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import yaml

from idaas_sync_exporter.config.settings import load_settings, read_config_document
from idaas_sync_exporter.config.tenancy import load_tenancy, plan_tenancy
from idaas_sync_exporter.rules.config import load as load_rules_config
from idaas_sync_exporter.simulator.cloud import load_cloud
from idaas_sync_exporter.simulator.world import SCENARIOS, World
from idaas_sync_exporter.web.config import load as load_web_config
from tests.e2e import exporter_env, free_port, require_binary, wait_http
from tests.pki import make_ca, make_leaf
from tests.walkthrough import LOCAL_PORTS, LocalExample, Step

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED_LANGUAGES = {"sh", "bash", "console", "yaml", "yml"}
MARKER = re.compile(r"^<!-- not run: (?P<reason>\S.*?) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SIM_KEY_ID = "simulator"
SIM_SECRET = "s3cret"
SEED = 1
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # the reason given above the fence, if any

    @property
    def key(self) -> tuple[str, str]:
        return self.page, self.text.splitlines()[0].strip()

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            opening = FENCE.match(lines[index])
            if opening is None:
                index += 1
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            above = MARKER.match(lines[index - 1].strip()) if index else None
            found.append(
                Block(
                    page=str(page.relative_to(ROOT)),
                    line=index + 1,
                    lang=opening["lang"],
                    text="\n".join(lines[index + 1 : end]) + "\n",
                    marker=above["reason"] if above else None,
                )
            )
            index = end + 1
    return [block for block in found if block.lang in CHECKED_LANGUAGES]


# --- what the runners share -------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulator:
    url: str
    instance_id: str
    ldap_provider_id: str


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop(process: subprocess.Popen[str], what: str) -> None:
    """SIGTERM, and a clean exit within 20 s."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"{what} did not stop within 20 s of SIGTERM") from None
    assert process.returncode == 0, f"{what} exited {process.returncode} after SIGTERM: {stderr[-2000:]}"


def shell_env(**extra: str) -> dict[str, str]:
    """The exporter's venv first on PATH, as after the Quick start; no IDAAS_EXPORTER_ setting."""
    env = exporter_env(**extra)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def commands(text: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def exporter_argv(command: str) -> list[str]:
    """``idaas-sync-exporter …`` or ``.venv/bin/idaas-sync-exporter …`` as this venv's command."""
    words = shlex.split(command)
    assert Path(words[0]).name == "idaas-sync-exporter", f"not the exporter's CLI: {command}"
    return [str(BIN / "idaas-sync-exporter"), *words[1:]]


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(
        argv, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{shlex.join(argv)} exited {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


def serve_and_probe(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """Start a long-running ``serve``, on a free port, until /healthz answers; then SIGTERM it."""
    port = free_port()
    process = subprocess.Popen(
        [*argv, "--listen-address", f"127.0.0.1:{port}"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
    finally:
        stop(process, shlex.join(argv))


# --- placeholders ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca", "test CA")
    make_leaf(root / "tls", "localhost", ca, server=True)
    return root


def web_config_text(block: str, pki: Path) -> str:
    """The page's web configuration, with generated certificates and a real bcrypt hash."""
    hashed = bcrypt.hashpw(b"scrape-pass", bcrypt.gensalt(rounds=4)).decode()
    text = block.replace("/etc/idaas-sync-exporter/", f"{pki}/")
    return text.replace("$2y$10$...", f"'{hashed}'")


SECURITY_WEB_CONFIG = ("docs/security.md", "tls_server_config:")
PULL_CONFIG_FILE = ("docs/pull-config.md", "IncrementalCallbackStatus: enabled        # required: enabled | disabled")


# --- the runners, one per example ------------------------------------------------------------------


@dataclass
class Fixtures:
    pki: Path
    simulator: Simulator
    all_blocks: list[Block]

    def block(self, key: tuple[str, str]) -> Block:
        return next(b for b in self.all_blocks if b.key == key)


def readme_quick_start(block: Block, tmp: Path, fx: Fixtures) -> None:
    # The venv and the install are this checkout's; `bash .ci/run` is the whole suite, not run here.
    first = block.text.splitlines()[0]
    serve = first.split("&&")[-1].strip()
    assert serve == ".venv/bin/idaas-sync-exporter serve --demo", serve
    serve_and_probe(exporter_argv(serve), shell_env(), tmp)


def readme_real_tenant(block: Block, tmp: Path, fx: Fixtures) -> None:
    # The default state file lands under this HOME, not the real one.
    env = shell_env(IDAAS_EXPORTER_ENDPOINT=fx.simulator.url, HOME=str(tmp))
    found = commands(block.text)
    assert len(found) == 3, found
    export, once, serve = found
    for word in shlex.split(export)[1:]:
        name, _, value = word.partition("=")
        assert value == "…", word
        env[name] = {"ALIBABA_CLOUD_ACCESS_KEY_ID": SIM_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SIM_SECRET}[name]
    real = fx.simulator.instance_id
    # In the page's order: `once` first, then `serve` on the same (default) state file, which
    # `once` has released.
    exposition = run(exporter_argv(once.replace("idaas_ue2jvisn35ea5lmthk267xxxxx", real)), env, tmp)
    assert f'instance_id="{real}"' in exposition
    serve_and_probe(exporter_argv(serve.replace("idaas_ue2jvisn35ea5lmthk267xxxxx", real)), env, tmp)


def readme_settings_file(block: Block, tmp: Path, fx: Fixtures) -> None:
    web = tmp / "web-config.yml"
    web.write_text(web_config_text(fx.block(SECURITY_WEB_CONFIG).text, fx.pki), encoding="utf-8")
    text = block.text.replace("/var/lib/idaas-sync-exporter/", f"{tmp}/").replace(
        "/etc/idaas-sync-exporter/web-config.yml", str(web)
    )
    path = tmp / "exporter.yaml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(str(path))
    assert settings.poll_interval_seconds == 60
    assert load_tenancy(settings, str(path)).instance_ids == ["idaas_ue2jvisn35ea5lmthk267xxxxx"]
    load_web_config(str(web))


def alerts_rules_config(block: Block, tmp: Path, fx: Fixtures) -> None:
    run(["bash", "-euo", "pipefail", "-c", block.text], shell_env(), tmp)
    rules = yaml.safe_load((tmp / "idaas-sync-alerts.yml").read_text(encoding="utf-8"))
    assert rules["groups"], "no rule groups printed"
    config = load_rules_config(tmp / "rules-config.yml")
    assert config.stale_seconds == 93600
    run([require_binary("promtool"), "check", "rules", "idaas-sync-alerts.yml"], shell_env(), tmp)


def alerts_recording_rule(block: Block, tmp: Path, fx: Fixtures) -> None:
    rules = yaml.safe_load(block.text)
    path = tmp / "threshold.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "threshold", "rules": rules}]}), encoding="utf-8")
    run([require_binary("promtool"), "check", "rules", str(path)], shell_env(), tmp)


def configuration_tenancy(block: Block, tmp: Path, fx: Fixtures, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp / "exporter.yaml"
    path.write_text(block.text, encoding="utf-8")
    monkeypatch.setenv("TEAM_ACCESS_KEY_ID", "LTAI5tDocsExample")
    monkeypatch.setenv("TEAM_ACCESS_KEY_SECRET", "docs-example-secret")
    settings = load_settings(str(path))
    tenancy = load_tenancy(settings, str(path))
    assert len(tenancy.instance_ids) == 3


def pull_config_synopsis(block: Block, tmp: Path, fx: Fixtures) -> None:
    env = shell_env(ALIBABA_CLOUD_ACCESS_KEY_ID=SIM_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SIM_SECRET)
    (tmp / "idp.yaml").write_text(fx.block(PULL_CONFIG_FILE).text, encoding="utf-8")
    get, set_ = block.text.splitlines()

    def real(command: str) -> str:
        command = command.replace("idaas_…", fx.simulator.instance_id).replace("idp_…", fx.simulator.ldap_provider_id)
        return command + f" --endpoint {fx.simulator.url}"

    for output in ("yaml", "json"):
        printed = run(exporter_argv(real(get.replace("[--output yaml|json]", f"--output {output}"))), env, tmp)
        document = yaml.safe_load(printed)  # JSON is YAML too
        assert "PeriodicSyncStatus" in document, printed
    dry = set_.replace("[--dry-run] [--yes]", "--dry-run")
    assert "--dry-run" in dry, dry
    run(exporter_argv(real(dry)), env, tmp)


def pull_config_file(block: Block, tmp: Path, fx: Fixtures) -> None:
    (tmp / "idp.yaml").write_text(block.text, encoding="utf-8")
    printed = run(
        exporter_argv(
            "idaas-sync-exporter pull-config set --instance-id idaas_ue2jvisn35ea5lmthk267xxxxx "
            "--identity-provider-id idp_my664lwkhpicbyzirog3xxxxx --file idp.yaml --dry-run"
        ),
        shell_env(),
        tmp,
    )
    assert "PeriodicSyncCron" in printed, printed


def security_web_config(block: Block, tmp: Path, fx: Fixtures) -> None:
    path = tmp / "web-config.yml"
    path.write_text(web_config_text(block.text, fx.pki), encoding="utf-8")
    load_web_config(str(path))


def simulator_command(block: Block, tmp: Path, fx: Fixtures) -> None:
    (command,) = commands(block.text)
    assignment, *rest = shlex.split(command)
    name, _, value = assignment.partition("=")
    port = free_port()
    argv = exporter_argv(shlex.join(rest).replace("127.0.0.1:18080", f"127.0.0.1:{port}"))
    process = subprocess.Popen(
        argv, env=shell_env(**{name: value}), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_port(port)
    finally:
        stop(process, "simulate")


# --- the local walk-through of several accounts and regions ------------------------------------------

TENANCY_EXAMPLE = ("docs/configuration.md", "# exporter.yaml: two regions, two accounts")
LOCAL_KEY_ID = "LTAI5tLocalTry"
# The first line of each block of the walk-through, in its order on the page.
LOCAL_SETUP = 'export TEAM_ACCESS_KEY_ID=LTAI5tLocalTry TEAM_ACCESS_KEY_SECRET="$(openssl rand -hex 20)"'
LOCAL_CLOUD = "cat > cloud.yaml <<'YAML'"
LOCAL_CONFIG = "cat > exporter.yaml <<'YAML'"
LOCAL_START = "idaas-sync-exporter simulate --accounts cloud.yaml --region cn-hangzhou --speed 60 \\"
LOCAL_COUNTS = "curl -s http://127.0.0.1:18129/metrics |"
LOCAL_REFUSED = (
    "TEAM_ACCESS_KEY_SECRET=not-the-secret SSL_CERT_FILE=sts.crt idaas-sync-exporter once --config exporter.yaml \\"
)
LOCAL_STOP = "kill %1 %2 %3"


@dataclass(frozen=True)
class LocalRun:
    """The walk-through run once, as written: each block's step and the output its page shows."""

    steps: dict[str, tuple[Step, str | None]]
    directory: Path
    secret: str
    exits: str


@pytest.fixture(scope="module")
def local_walkthrough(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    directory = tmp_path_factory.mktemp("try-locally")
    example = LocalExample(directory, shell_env(), {port: free_port() for port in LOCAL_PORTS})
    steps: dict[str, tuple[Step, str | None]] = {}
    try:
        for block in example.commands:
            steps[block.first_line] = (example.run(block.text), example.expected(block))
        secret = example.run('printf "%s\\n" "$TEAM_ACCESS_KEY_SECRET"').output.strip()
        exits = example.run('for job in 1 2 3; do wait %$job; echo "job $job exited $?"; done').output
    finally:
        example.shell.close()
    return LocalRun(steps, directory, secret, exits)


def heredoc(text: str) -> str:
    """The document of a ``cat > FILE <<'YAML'`` block."""
    lines = text.splitlines()
    return "\n".join(lines[1 : lines.index("YAML")]) + "\n"


def without_local_lines(document: object) -> object:
    """``document`` without the keys the walk-through adds (each instance's endpoint, the STS endpoint)."""
    if isinstance(document, dict):
        return {k: without_local_lines(v) for k, v in document.items() if k not in ("endpoint", "sts_endpoint")}
    if isinstance(document, list):
        return [without_local_lines(item) for item in document]
    return document


def local_walkthrough_block(block: Block, tmp: Path, fx: Fixtures, run: LocalRun) -> None:
    step, shown = run.steps[block.key[1]]
    assert step.status == 0, f"{block} exited {step.status}:\n{step.output}"
    if shown is not None:
        assert step.output == shown, f"{block} printed\n{step.output}\nwhere the page shows\n{shown}"
    first = block.key[1]
    env = {"TEAM_ACCESS_KEY_ID": LOCAL_KEY_ID, "TEAM_ACCESS_KEY_SECRET": run.secret}
    if first == LOCAL_SETUP:
        assert (run.directory / "sts.crt").is_file() and (run.directory / "sts.key").is_file()
    elif first == LOCAL_CLOUD:
        cloud = load_cloud(str(run.directory / "cloud.yaml"), env)
        assert cloud.regions() == ["ap-southeast-1", "cn-hangzhou"] and len(cloud.roles) == 1
    elif first == LOCAL_CONFIG:
        production = yaml.safe_load(fx.block(TENANCY_EXAMPLE).text)
        local = yaml.safe_load(heredoc(block.text))
        assert without_local_lines(local) == production, "the local file is not the example plus its endpoints"
        assert block.text.count("# local") == 4, "the page says four lines are marked # local"
        path = str(run.directory / "exporter.yaml")
        tenancy = plan_tenancy(load_settings(path), read_config_document(path), environ=env, file_name=path)
        assert [i.endpoint is not None for i in tenancy.instances] == [True, True, True]
    elif first == LOCAL_COUNTS:
        counted = dict(line.split() for line in step.output.splitlines())
        production = yaml.safe_load(fx.block(TENANCY_EXAMPLE).text)
        assert set(counted) == {instance["id"] for instance in production["instances"]}, step.output
        assert all(value.isdigit() for value in counted.values()), step.output
    elif first == LOCAL_STOP:
        assert run.exits.splitlines() == [f"job {n} exited 0" for n in (1, 2, 3)], run.exits
        logs = {
            name: (run.directory / name).read_text()
            for name in ("cn-hangzhou.log", "ap-southeast-1.log", "exporter.log")
        }
        for name, text in logs.items():
            assert run.secret not in text and "SIMSTS1." not in text, f"a secret reached {name}"
        assert 'msg="sts issued credentials" account=customer-a' in logs["ap-southeast-1.log"]
        assert logs["cn-hangzhou.log"].splitlines()[-1].endswith('msg="simulator stopped"')
        assert logs["exporter.log"].splitlines()[-1].endswith("msg=stopped")


def simulator_cloud_file(block: Block, tmp: Path, fx: Fixtures) -> None:
    """The simulator page's accounts file describes the walk-through's cloud."""
    path = tmp / "cloud.yaml"
    path.write_text(block.text, encoding="utf-8")
    env = {"TEAM_ACCESS_KEY_ID": LOCAL_KEY_ID, "TEAM_ACCESS_KEY_SECRET": "docs-example-secret"}
    documented = load_cloud(str(path), env)
    walked = tmp / "walked.yaml"
    walked.write_text(heredoc(fx.block(("docs/configuration.md", LOCAL_CLOUD)).text), encoding="utf-8")
    assert documented == load_cloud(str(walked), env)


RUNNERS: dict[tuple[str, str], Callable[..., None]] = {
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/idaas-sync-exporter serve --demo",
    ): readme_quick_start,
    (
        "README.md",
        "export ALIBABA_CLOUD_ACCESS_KEY_ID=… ALIBABA_CLOUD_ACCESS_KEY_SECRET=…   # or any credential-chain source",
    ): readme_real_tenant,
    ("README.md", "instance_ids: [idaas_ue2jvisn35ea5lmthk267xxxxx]"): readme_settings_file,
    ("docs/alerts.md", "cat > rules-config.yml <<'YAML'"): alerts_rules_config,
    ("docs/alerts.md", "- record: idaas:sync_stale_threshold_seconds"): alerts_recording_rule,
    ("docs/configuration.md", "# exporter.yaml: two regions, two accounts"): configuration_tenancy,
    (
        "docs/pull-config.md",
        "idaas-sync-exporter pull-config get --instance-id idaas_… --identity-provider-id idp_… [--output yaml|json]",
    ): pull_config_synopsis,
    PULL_CONFIG_FILE: pull_config_file,
    SECURITY_WEB_CONFIG: security_web_config,
    (
        "docs/simulator.md",
        "IDAAS_SIMULATOR_ACCESS_KEY_SECRET=s3cret idaas-sync-exporter simulate \\",
    ): simulator_command,
    ("docs/simulator.md", "# cloud.yaml: which account owns which instance, where, and who may assume which role"): (
        simulator_cloud_file
    ),
    **{
        ("docs/configuration.md", first): local_walkthrough_block
        for first in (
            LOCAL_SETUP,
            LOCAL_CLOUD,
            LOCAL_CONFIG,
            LOCAL_START,
            LOCAL_COUNTS,
            LOCAL_REFUSED,
            LOCAL_STOP,
        )
    },
}


ALL = blocks()
RUN = [block for block in ALL if block.key in RUNNERS]


def test_every_example_is_run_or_marked_with_a_reason() -> None:
    unaccounted = [
        f"{block}: run it here or mark it" for block in ALL if block.key not in RUNNERS and block.marker is None
    ]
    both = [f"{block}: marked as not run, but this test runs it" for block in RUN if block.marker is not None]
    stale = [f"{page}: `{first}`" for page, first in RUNNERS if (page, first) not in {b.key for b in ALL}]
    assert not unaccounted + both, "\n".join(
        [*unaccounted, *both, "(a marker is `<!-- not run: REASON -->` on the line directly above the fence)"]
    )
    assert not stale, "runners for examples no longer in the pages:\n" + "\n".join(stale)
    for block in ALL:
        for module in re.findall(r"tests/[\w/]+\.py", block.marker or ""):
            assert (ROOT / module).is_file(), f"{block}: its marker names {module}, which does not exist"


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    world = World(SCENARIOS["demo"], seed=SEED, clock=time.time)
    instance_id = next(iter(world.instances))
    ldap = next(
        p.identity_provider_id
        for p in world.instances[instance_id].providers
        if p.pull_config is not None and "ldap" in p.provider_type
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "idaas-sync-exporter"),
            "simulate",
            "--listen",
            f"127.0.0.1:{port}",
            "--access-key-id",
            SIM_KEY_ID,
            "--seed",
            str(SEED),
            "--speed",
            "60",
        ],
        env=shell_env(IDAAS_SIMULATOR_ACCESS_KEY_SECRET=SIM_SECRET),
        cwd=tmp_path_factory.mktemp("simulator"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port)
        yield Simulator(f"http://127.0.0.1:{port}", instance_id, ldap)
    finally:
        stop(process, "simulate")


@pytest.mark.parametrize("block", RUN, ids=str)
def test_example_runs(
    block: Block,
    tmp_path: Path,
    pki: Path,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    for name in [name for name in os.environ if name.startswith("IDAAS_EXPORTER_")]:
        monkeypatch.delenv(name)
    fixtures = Fixtures(pki, simulator, ALL)
    runner = RUNNERS[block.key]
    if runner is configuration_tenancy:
        runner(block, tmp_path, fixtures, monkeypatch)
    elif runner is local_walkthrough_block:
        # One shell runs the whole walk-through once, as a person would; each block checks its own part.
        runner(block, tmp_path, fixtures, request.getfixturevalue("local_walkthrough"))
    else:
        runner(block, tmp_path, fixtures)
