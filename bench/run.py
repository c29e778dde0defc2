"""Benchmark: idaas-sync-exporter against the simulator at scale, every figure measured side by side.

    .venv/bin/python bench/run.py                    # 1,000 targets, ~107,000 jobs in the window, about 12 minutes
    .venv/bin/python bench/run.py --targets 5000     # the scale curve (add --skip-baselines above 1,000)
    .venv/bin/python bench/run.py --smoke            # seconds, small tenant; checks correctness, not speed
    .venv/bin/python bench/run.py --json out.json    # also write every figure, for bench/aggregate.py

The simulator runs in this process (so jobs can be injected and the ground truth read). Every
server runs as its own process and is scraped over HTTP by a scraper process (bench/scrape.py):
the exporter; prometheus_client rendering on every scrape (the naive design); prometheus_client
rendering once per poll and serving cached bytes (the careful design); and a bare socket server
sending the exporter's own bytes (the physical limit) (bench/baseline.py). The naive poller, which
re-reads the whole window, is run too. Figures are medians and ratios of measurements taken in
the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baseline import BODIES  # noqa: E402
from bench.truth import Counts, compare, exported_jobs, finished_jobs, free_port, sum_by  # noqa: E402
from idaas_sync_exporter.config.settings import Settings  # noqa: E402
from idaas_sync_exporter.simulator.clock import ScaledClock  # noqa: E402
from idaas_sync_exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread  # noqa: E402
from idaas_sync_exporter.simulator.world import SCENARIOS, JobPlan, ScenarioSpec, World  # noqa: E402
from tests.e2e import exporter_command, exporter_env  # noqa: E402

TEXT = "text/plain"
# The exporter's idle poll at 1,000 targets before polls that change nothing stopped re-rendering
# (0.29 CPU seconds, measured over HTTP in a separate process); the target is a fiftieth of it.
PREVIOUS_IDLE_POLL_CPU_PER_1000_TARGETS = 0.29
VARIANTS = (  # name, openmetrics, gzip
    ("text", False, False),
    ("text+gzip", False, True),
    ("openmetrics", True, False),
    ("openmetrics+gzip", True, True),
)
SERVERS = ("exporter", "raw", "cached", "per-scrape")


@dataclass
class Poll:
    ts: float
    sim_start_ms: int  # simulated time the poll started at (its window read comes first)
    seconds: float
    api_calls: int
    jobs_read: int
    jobs_changed: int
    cold: bool
    forced_rechecks: int
    window_calls: int
    recheck_calls: int
    jobs_deferred: int


@dataclass
class ExporterProcess:
    process: subprocess.Popen[str]
    port: int
    clock: ScaledClock
    polls: list[Poll] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    cpu_at_listening: float | None = None

    def read_logs(self) -> None:
        if self.process.stderr is None:
            return
        for line in self.process.stderr:
            self.log_lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("msg") == "listening":
                self.cpu_at_listening = cpu_seconds(self.process.pid)
            if event.get("msg") == "poll finished":
                seconds = float(event["seconds"])
                self.polls.append(
                    Poll(
                        time.time(),
                        round((self.clock() - seconds * self.clock.speed) * 1000),
                        seconds,
                        int(event["api_calls"]),
                        int(event["jobs_read"]),
                        int(event["jobs_changed"]),
                        bool(event["cold"]),
                        int(event["forced_rechecks"]),
                        int(event["window_calls"]),
                        int(event["recheck_calls"]),
                        int(event["jobs_deferred"]),
                    )
                )

    def proc(self, key: str) -> int:
        return proc_status(self.process.pid, key)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(port: int, accept: str = TEXT, encoding: str = "identity") -> tuple[float, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept, "Accept-Encoding": encoding}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        body = response.read()
    return time.perf_counter() - started, body


def raw_bodies(port: int, directory: Path) -> None:
    """The exporter's four answers, byte for byte, for the baselines to serve."""
    import http.client

    for (openmetrics, compressed), file in BODIES.items():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "GET",
            "/metrics",
            headers={
                "Accept": "application/openmetrics-text; version=1.0.0" if openmetrics else TEXT,
                "Accept-Encoding": "gzip" if compressed else "identity",
            },
        )
        (directory / file).write_bytes(connection.getresponse().read())
        connection.close()


def scrape_many(port: int, count: int, *, openmetrics: bool, compressed: bool) -> list[float]:
    args = [sys.executable, str(ROOT / "bench" / "scrape.py"), str(port), "--count", str(count)]
    args.extend(["--openmetrics"] * openmetrics)
    args.extend(["--gzip"] * compressed)
    result = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT, timeout=3600)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(f"bench: scraping port {port} failed: {result.stderr.strip()[-500:]}")
    return [float(d) for d in json.loads(result.stdout)]


def start_baseline(mode: str, files: Path, render_every: float) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            "serve",
            "--mode",
            mode,
            "--files",
            str(files),
            "--port",
            str(port),
            "--render-every",
            str(render_every),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        raise SystemExit(f"bench: the {mode} baseline did not start")
    return process, port


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_idle(exporter: ExporterProcess, interval: float, polls: int, results: dict[str, Any]) -> int:
    """CPU per idle poll, beside a control process that only wakes as often; returns the first idle poll."""
    # The control: a process that only wakes once per poll interval, measured over the same
    # window (what this machine charges for waking at all; see bench/wake.py).
    control = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / "bench" / "wake.py"), "--idle-loop", str(interval)], text=True
    )
    try:
        seen = len(exporter.polls)
        wait_for(lambda: len(exporter.polls) >= seen + 2, 120, "polls after pausing simulated time")
        seen = len(exporter.polls)
        cpu_before, control_before = exporter.cpu_seconds(), cpu_seconds(control.pid)
        idle_started = time.monotonic()
        wait_for(lambda: len(exporter.polls) >= seen + polls, 60 + 10 * polls, "idle polls")
        polled = len(exporter.polls[seen:])
        results["idle_cpu_per_poll"] = (exporter.cpu_seconds() - cpu_before) / polled
        wakes = (time.monotonic() - idle_started) / interval
        results["idle_control_cpu_per_wake"] = (cpu_seconds(control.pid) - control_before) / wakes
    finally:
        stop(control)
    return seen


def render_stats(port: int) -> tuple[int, float]:
    """The cached baseline's renders so far and their CPU seconds."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30) as answer:
        stats = json.loads(answer.read())
    return int(stats["renders"]), float(stats["render_cpu_seconds"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def tail(values: list[float]) -> tuple[str, float]:
    """p99 where there are enough scrapes for one (100 or more), else the maximum, named as such."""
    return ("p99", percentile(values, 0.99)) if len(values) >= 100 else ("max", max(values))


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")


class RecordingWorld(World):
    """Notes the simulated time of every job listing, so polls are placed exactly on the simulator's clock."""

    def __init__(self, spec: ScenarioSpec, *, seed: int, clock: ScaledClock) -> None:
        super().__init__(spec, seed=seed, clock=clock)
        self.listings: list[tuple[float, int]] = []  # (wall time, simulated ms)

    @contextlib.contextmanager
    def reading(self, instance_id: str, now_ms: int) -> Iterator[tuple[list[JobPlan], int]]:
        self.listings.append((time.time(), now_ms))
        with super().reading(instance_id, now_ms) as view:
            yield view


def scenario(targets: int, smoke: bool) -> ScenarioSpec:
    if smoke:
        return SCENARIOS["demo"]
    providers = targets // 5
    return dataclasses.replace(
        SCENARIOS["bench"], providers_per_instance=providers, applications_per_instance=targets - providers
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small and quick; correctness only")
    parser.add_argument("--targets", type=int, default=1000, help="targets in the simulated tenant")
    parser.add_argument("--speed", type=float, default=30.0, help="simulated seconds per real second")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="exporter poll interval, real seconds")
    parser.add_argument("--steady-seconds", type=float, default=120.0, help="real seconds of steady-state polling")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes per variant of the exporter and the limit")
    parser.add_argument(
        "--baseline-scrapes", type=int, default=20, help="scrapes per variant of the prometheus_client baselines"
    )
    parser.add_argument("--idle-polls", type=int, default=10, help="polls that change nothing, to measure")
    parser.add_argument("--skip-baselines", action="store_true", help="no prometheus_client baselines (large tenants)")
    parser.add_argument("--json", type=Path, help="also write the figures here (see bench/aggregate.py)")
    args = parser.parse_args()
    steady = 8.0 if args.smoke else args.steady_seconds
    scrapes = 5 if args.smoke else args.scrapes
    baseline_scrapes = 3 if args.smoke else args.baseline_scrapes
    idle_polls = 3 if args.smoke else args.idle_polls
    speed = args.speed
    # How long a followed job may wait for a re-read: the default, in simulated time
    # (the smoke run checks correctness only, and need not wait that long to settle).
    recheck_max = 2.0 if args.smoke else float(Settings.model_fields["recheck_max_seconds"].default) / speed

    spec = scenario(args.targets, args.smoke)
    print(
        f"building a tenant of {spec.providers_per_instance + spec.applications_per_instance} targets ...", flush=True
    )
    clock = ScaledClock(speed=speed)
    world = RecordingWorld(spec, seed=1, clock=clock)
    instance = next(iter(world.instances))
    window = sum(1 for j in world.visible_jobs(instance, world.now_ms()) if j.start_ms >= world.now_ms() - 86_400_000)
    targets = len(world.instances[instance].providers) + len(world.instances[instance].applications)
    secret = secrets.token_urlsafe(16)
    sim = SimulatorThread(SimulatorApp(world, [AccessKey("bench", SecretStr(secret))]))
    sim.start()
    workdir = Path(tempfile.mkdtemp(prefix="idaas-bench-"))
    state_path = workdir / "state.sqlite3"
    port = free_port()
    env = exporter_env()
    env["IDAAS_EXPORTER_ACCESS_KEY_SECRET"] = secret
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            *exporter_command("serve"),
            "--instance-ids",
            instance,
            "--endpoint",
            sim.endpoint,
            "--access-key-id",
            "bench",
            "--state-path",
            str(state_path),
            "--poll-interval-seconds",
            str(args.poll_interval),
            "--requests-per-second",
            "100",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
            "--target-refresh-seconds",
            "3600",
            "--recheck-max-seconds",
            str(recheck_max),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    exporter = ExporterProcess(process, port, clock)
    threading.Thread(target=exporter.read_logs, daemon=True).start()
    results: dict[str, Any] = {"targets": targets, "window_jobs": window, "cores": os.cpu_count()}
    baselines: list[subprocess.Popen[str]] = []
    try:
        cold_started = time.monotonic()
        wait_for(lambda: exporter.polls, 3600, "the cold first poll")
        cold = exporter.polls[0]
        results["cold_calls"] = cold.api_calls
        results["cold_seconds"] = cold.seconds
        results["cold_wall"] = time.monotonic() - cold_started
        results["cold_jobs"] = cold.jobs_read
        results["cold_cpu"] = exporter.cpu_seconds() - (exporter.cpu_at_listening or 0.0)
        results["rss_after_cold"] = exporter.proc("VmRSS")
        wait_for(lambda: len(exporter.polls) >= 3, 600, "steady polls")
        # Exact check, part 1: freeze simulated time, let a poll see everything, note both sides.
        truth_before = settled_counts(world, clock, exporter, port, recheck_max)

        # 1. With simulated time frozen, nothing changes: idle polls, then scrapes of every server.
        clock.pause()
        try:
            time.sleep(recheck_max)
            seen = measure_idle(exporter, args.poll_interval, idle_polls, results)
            idle = exporter.polls[seen : seen + idle_polls]
            results["idle_changed"] = sum(p.jobs_changed for p in idle)
            results["idle_calls"] = statistics.median(p.api_calls for p in idle)

            files = workdir / "bodies"
            files.mkdir()
            raw_bodies(port, files)
            text = (files / "text").read_text()
            results["samples"] = sum(len(f.samples) for f in text_string_to_metric_families(text))
            results["exposition_bytes"] = len(text.encode())
            results["gzip_bytes"] = (files / "text.gz").stat().st_size
            # One server at a time, so none competes with another for the two cores (the cached
            # baseline re-renders every poll interval whether it is scraped or not).
            modes = ["exporter", "raw"] if args.skip_baselines else ["exporter", "raw", "cached", "per-scrape"]
            scrape: dict[str, dict[str, list[float]]] = {}
            cpu_per_scrape: dict[str, dict[str, float]] = {}
            for server in modes:
                if server == "exporter":
                    server_port, pid = port, process.pid
                else:
                    baseline, server_port = start_baseline(server, files, args.poll_interval)
                    baselines.append(baseline)
                    pid = baseline.pid
                count = baseline_scrapes if server == "per-scrape" else scrapes
                scrape[server] = {}
                cpu_per_scrape[server] = {}
                for name, openmetrics, compressed in VARIANTS:
                    before = cpu_seconds(pid)
                    scrape[server][name] = scrape_many(
                        server_port, count, openmetrics=openmetrics, compressed=compressed
                    )
                    cpu_per_scrape[server][name] = (cpu_seconds(pid) - before) / count
                if server == "cached":
                    stats_url = f"http://127.0.0.1:{server_port}/stats"
                    with urllib.request.urlopen(stats_url, timeout=30) as answer:
                        stats = json.loads(answer.read())
                    results["cached_render_cpu"] = stats["render_cpu_seconds"] / stats["renders"]
                    # Its scrapes ran while it re-rendered, as they would in service; their CPU is the
                    # process's minus the renders.
                for baseline in baselines:
                    stop(baseline)
                baselines.clear()
            results["scrape"] = scrape
            results["cpu_per_scrape"] = cpu_per_scrape
            results["naive_poll"] = naive_poll(sim.endpoint, instance, secret, world.now_ms())
        finally:
            clock.resume()

        # 2. Steady state for `steady` seconds, scraping all the time; halfway, a burst of jobs.
        steady_from = len(exporter.polls)
        cpu_before = exporter.cpu_seconds()
        rss_start = exporter.proc("VmRSS")
        state_start = state_size(state_path)
        scrape_file = workdir / "scrapes.jsonl"
        scraper = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [
                sys.executable,
                str(ROOT / "bench" / "scrape.py"),
                str(port),
                "--gzip",
                "--out",
                str(scrape_file),
                "--pause",
                "0.05",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        phase_start = time.monotonic()
        burst_done = False
        injected: dict[str, int] = {}
        while time.monotonic() - phase_start < steady:
            if not burst_done and time.monotonic() - phase_start > steady / 2:
                results["burst_at"] = time.time()
                injected = inject_burst(world, instance, 200 if args.smoke else 3 * targets)
                burst_done = True
            time.sleep(0.2)
        stop(scraper)
        scrape_log = [tuple(json.loads(line)) for line in scrape_file.read_text().splitlines() if line.strip()]
        # One copy: the log reader keeps appending polls while these figures are computed.
        polls = list(exporter.polls)
        steady_polls = [p for p in polls[steady_from:] if not p.cold]
        results["steady_polls"] = [dataclasses.asdict(p) for p in steady_polls]
        results["steady_floor"] = ground_truth_floor(world, instance, polls, steady_from, injected)
        results["cpu_steady"] = exporter.cpu_seconds() - cpu_before
        results["rss_start"] = rss_start
        results["rss_end"] = exporter.proc("VmRSS")
        results["state_start"] = state_start
        results["state_end"] = state_size(state_path)
        results["scrape_log"] = scrape_log
        results["poll_windows"] = [(p.ts - p.seconds, p.ts) for p in polls[steady_from:]]
        results["simulated_seconds"] = steady * speed

        # 3. Detection latency: a failed job's EndTime to the counter change on /metrics.
        latencies = [detect(world, instance, port, speed) for _ in range(2 if args.smoke else 4)]
        results["detection"] = latencies
        results["peak_rss"] = exporter.proc("VmHWM")

        # Exact check, part 2: the counters grew by exactly the jobs that finished in between.
        truth_after = settled_counts(world, clock, exporter, port, recheck_max)
        results["truth_ok"], results["truth_detail"] = check_truth(truth_before, truth_after)
    finally:
        for baseline in baselines:
            stop(baseline)
        stop(process)
        sim.stop()
        # The run's state file, bodies and scrape log; the figures are in the report (and --json).
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:  # first, so that the figures survive whatever the report does
        args.json.write_text(json.dumps(results))
    return report(results, args, speed)


def naive_poll(endpoint: str, instance: str, secret: str, now_ms: int) -> dict[str, Any]:
    """The naive poller, run: re-read the whole window once, in its own process."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            "poll-window",
            "--endpoint",
            endpoint,
            "--instance-id",
            instance,
            "--access-key-id",
            "bench",
            "--now-ms",
            str(now_ms),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "BENCH_ACCESS_KEY_SECRET": secret},
        timeout=3600,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: the naive poller failed: {result.stderr.strip()[-500:]}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def ground_truth_floor(
    world: RecordingWorld, instance: str, polls: list[Poll], first: int, injected: dict[str, int]
) -> list[int]:
    """Per poll from ``first`` on: ceil(jobs that appeared or changed status since the previous poll / 100).

    Read from the simulator's plans (start, start of running, end; injected jobs appear when
    injected), between the simulated times of each poll's first listing, not from what the
    exporter reports.
    """
    events: list[tuple[int, str]] = []
    for plan in world.visible_jobs(instance, world.now_ms()):
        appeared = injected.get(plan.job_id, plan.start_ms)
        for at in {plan.start_ms, plan.start_ms + plan.pending_ms, plan.end_ms}:
            events.append((max(at, appeared), plan.job_id))
    events.sort()
    times = [t for t, _ in events]
    listings = sorted(world.listings)

    def first_listing(poll: Poll) -> int:
        # The poll's calls happened between its start and the moment its log line arrived.
        lo = bisect.bisect_left(listings, (poll.ts - poll.seconds - 0.5, 0))
        hi = bisect.bisect_right(listings, (poll.ts, 1 << 62))
        during = [(wall, ms) for wall, ms in listings[lo:hi] if wall >= poll.ts - poll.seconds - 0.5]
        return min(ms for _, ms in during) if during else poll.sim_start_ms

    starts = [first_listing(poll) for poll in polls]
    floors = []
    for index in range(max(first, 1), len(polls)):
        lo = bisect.bisect_right(times, starts[index - 1])
        hi = bisect.bisect_right(times, starts[index])
        floors.append(math.ceil(len({job_id for _, job_id in events[lo:hi]}) / 100))
    return floors


def inject_burst(world: World, instance: str, count: int) -> dict[str, int]:
    """Many jobs finishing at once: the next poll is a heavy one. Returns their ids and when they appeared."""
    state = world.instances[instance]
    targets = [("identity_provider", p.identity_provider_id, "ingress") for p in state.providers if p.pull_config]
    targets += [("application", a.application_id, "egress") for a in state.applications]
    now_ms = world.now_ms()
    appeared = {}
    for index in range(count):
        target_type, target_id, direction = targets[index % len(targets)]
        job_id = world.new_job_id(instance, f"burst-{index}")
        appeared[job_id] = world.now_ms()
        world.add_job(
            JobPlan(
                job_id=job_id,
                instance_id=instance,
                target_type=target_type,
                target_id=target_id,
                direction=direction,
                trigger_type="manual",
                start_ms=now_ms - 1000 - index,
                pending_ms=100,
                running_ms=500,
                final_status="success",
                statistics={"User": {"Updated": {"Total": 2, "Success": 2, "Failed": 0, "Skipped": 0}}},
            )
        )
    return appeared


def detect(world: World, instance: str, port: int, speed: float) -> float:
    state = world.instances[instance]
    idp = next(p for p in state.providers if p.pull_config is not None)

    def current() -> float:
        _, body = fetch(port)
        totals = sum_by(body.decode(), "idaas_sync_jobs_total", "target_id", "status", "trigger_type")
        return totals.get((idp.identity_provider_id, "failed", "manual"), 0.0)

    before = current()
    now_world = world.now()
    duration = 4.0 * speed / 30.0  # a few real seconds of simulated time
    plan = JobPlan(
        job_id=world.new_job_id(instance, f"detect-{time.time()}"),
        instance_id=instance,
        target_type="identity_provider",
        target_id=idp.identity_provider_id,
        direction="ingress",
        trigger_type="manual",
        start_ms=int(now_world * 1000),
        pending_ms=500,
        running_ms=int(duration * 1000),
        final_status="failed",
        statistics={},
        error_code="IdentityProvider.ConnectionFailed",
        error_message="bench",
    )
    injected_real = time.time()
    world.add_job(plan)
    end_real = injected_real + (plan.end_ms / 1000 - now_world) / speed
    deadline = time.time() + 120
    while time.time() < deadline:
        if current() > before:
            return time.time() - end_real
        time.sleep(0.1)
    raise SystemExit("bench: an injected failure never appeared on /metrics")


def settled_counts(
    world: World, clock: ScaledClock, exporter: ExporterProcess, port: int, recheck_max: float
) -> tuple[Counts, Counts]:
    """(exporter's job counters, jobs final in the world) at one frozen simulated moment.

    Followed jobs behind the window may wait up to the recheck maximum for a re-read;
    after it, two more polls have read them all, and by the end of a third the second's
    snapshot is what /metrics serves (a snapshot is served once it is rendered and compressed).
    """
    clock.pause()
    try:
        time.sleep(recheck_max)
        seen = len(exporter.polls)
        # The first poll may have started before the pause; the second started after it.
        wait_for(lambda: len(exporter.polls) >= seen + 3, 120, "three polls after pausing simulated time")
        _, body = fetch(port)
        return exported_jobs(body.decode()), finished_jobs(world)
    finally:
        clock.resume()


def check_truth(before: tuple[Counts, Counts], after: tuple[Counts, Counts]) -> tuple[bool, str]:
    """The exporter's counters must have grown by exactly the jobs that became final in between."""
    wrong, counted, finished = compare(before, after)
    detail = f"{counted:.0f} jobs counted, {finished:.0f} finished in the simulator, {len(wrong)} targets differ"
    if wrong:
        detail += f" (e.g. {list(wrong.items())[:3]})"
    return not wrong, detail


def state_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.exists())


def report(r: dict[str, Any], args: argparse.Namespace, speed: float) -> int:
    mib = 1024 * 1024
    lines = [
        f"{r['targets']} targets, {r['window_jobs']} jobs in the 24 h window, {r['samples']} samples in /metrics "
        f"({r['exposition_bytes'] / mib:.1f} MiB text, {r['gzip_bytes'] / mib:.2f} MiB gzip); "
        f"simulated time x{speed:g}; {r['cores']} cores",
        "",
    ]
    scrape, cpu = r["scrape"], r["cpu_per_scrape"]
    has_baselines = "per-scrape" in scrape
    header = "| /metrics, ms | exporter median | exporter tail | limit median | exporter / limit |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if has_baselines:
        header += " cached median | per-scrape median | per-scrape / exporter |"
        rule += " ---: | ---: | ---: |"
    lines += [header, rule]
    limit_ratio = {}
    naive_ratio = {}
    for name, _, _ in VARIANTS:
        ours = scrape["exporter"][name]
        kind, worst = tail(ours)
        limit_ratio[name] = statistics.median(ours) / statistics.median(scrape["raw"][name])
        row = (
            f"| {name} | {statistics.median(ours) * 1000:.1f} | {kind} {worst * 1000:.1f} (n={len(ours)}) | "
            f"{statistics.median(scrape['raw'][name]) * 1000:.1f} | {limit_ratio[name]:.2f}x |"
        )
        if has_baselines:
            naive_ratio[name] = statistics.median(scrape["per-scrape"][name]) / statistics.median(ours)
            row += (
                f" {statistics.median(scrape['cached'][name]) * 1000:.1f} | "
                f"{statistics.median(scrape['per-scrape'][name]) * 1000:.1f} (n={len(scrape['per-scrape'][name])}) | "
                f"{naive_ratio[name]:.0f}x |"
            )
        lines.append(row)
    lines.append("")
    idle_cpu = r["idle_cpu_per_poll"]
    lines += [
        "| CPU seconds per poll interval, nothing changed, one gzip scrape | exporter | cached baseline | "
        "per-scrape baseline |",
        "| --- | ---: | ---: | ---: |",
    ]
    ours_interval = idle_cpu + cpu["exporter"]["text+gzip"]
    if has_baselines:
        cached_interval = r["cached_render_cpu"] + cpu["cached"]["text+gzip"]
        naive_interval = cpu["per-scrape"]["text+gzip"]
        lines.append(
            f"| render (per poll) + one scrape | {ours_interval:.4f} | {cached_interval:.3f} | {naive_interval:.3f} |"
        )
    else:
        lines.append(f"| render (per poll) + one scrape | {ours_interval:.4f} | - | - |")
    lines.append(
        f"| of which the poll (API call, state, rendering) | {idle_cpu:.4f} | "
        + (f"{r['cached_render_cpu']:.3f} |" if has_baselines else "- |")
        + " 0 (renders per scrape) |"
    )
    control_cpu = r["idle_control_cpu_per_wake"]
    lines.append(f"| control: a process that only wakes once per poll interval | {control_cpu:.4f} | | |")
    lines.append(f"| the idle poll above the control | {idle_cpu - control_cpu:.4f} | | |")
    lines.append("")

    polls = [Poll(**p) for p in r["steady_polls"]]
    calls = [p.api_calls for p in polls]
    truth_floor = r["steady_floor"]
    own_floor = [math.ceil(p.jobs_changed / 100) for p in polls]
    within = sum(1 for c, f in zip(calls, truth_floor, strict=True) if c <= f + 1)
    within_own = sum(1 for c, f in zip(calls, own_floor, strict=True) if c <= f + 1)
    jobs_read = sum(p.jobs_read for p in polls)
    naive = r["naive_poll"]
    lines += ["| polling | value |", "| --- | ---: |"]
    lines.append(f"| cold first poll: API calls / seconds | {r['cold_calls']} / {r['cold_seconds']:.1f} |")
    lines.append(
        f"| cold first poll: CPU seconds per 1,000 jobs | {r['cold_cpu'] / max(1, r['cold_jobs']) * 1000:.3f} |"
    )
    lines.append(f"| steady polls measured | {len(polls)} (over {r['simulated_seconds'] / 60:.0f} simulated min) |")
    lines.append(f"| API calls per steady poll: median / max | {statistics.median(calls):.0f} / {max(calls)} |")
    lines.append(
        f"| floor from the simulator's ground truth, ceil(new or changed / 100): median / max | "
        f"{statistics.median(truth_floor):.0f} / {max(truth_floor)} |"
    )
    lines.append(
        f"| polls within floor + 1 (ground truth / exporter's own count) | {within} / {within_own} of {len(polls)} |"
    )
    lines.append(
        f"| calls over the steady phase / sum of ground-truth floor + 1 | {sum(calls)} / "
        f"{sum(f + 1 for f in truth_floor)} |"
    )
    excess = sorted({c - f for c, f in zip(calls, truth_floor, strict=True)})
    spread = ", ".join(
        f"{e:+d}: {sum(1 for c, f in zip(calls, truth_floor, strict=True) if c - f == e)}" for e in excess
    )
    lines.append(f"| calls against the ground-truth floor (polls) | {spread} |")
    lines.append(
        f"| naive poller, run once (re-reads the window): calls / CPU seconds | {naive['calls']} / "
        f"{naive['cpu_seconds']:.1f} |"
    )
    lines.append(f"| idle poll: API calls / CPU seconds | {r['idle_calls']:.0f} / {idle_cpu:.4f} |")
    lines.append(
        "| steady CPU seconds per 1,000 jobs read (scrapes included) | "
        f"{r['cpu_steady'] / max(1, jobs_read) * 1000:.3f} |"
    )
    lines.append("")
    lines += ["| memory and state | value |", "| --- | ---: |"]
    lines.append(f"| peak RSS | {r['peak_rss'] / mib:.0f} MiB |")
    lines.append(
        f"| RSS after cold poll / start of steady / end ({r['simulated_seconds'] / 3600:.1f} simulated h) | "
        f"{r['rss_after_cold'] / mib:.0f} / {r['rss_start'] / mib:.0f} / {r['rss_end'] / mib:.0f} MiB |"
    )
    lines.append(
        f"| state file start / end of steady | {r['state_start'] / mib:.1f} / {r['state_end'] / mib:.1f} MiB |"
    )
    log = r["scrape_log"]
    during = [d for s, d in log if any(a <= s <= b for a, b in r["poll_windows"])]
    between = [d for s, d in log if not any(a <= s <= b for a, b in r["poll_windows"])]
    after_burst = [d for s, d in log if r.get("burst_at", math.inf) <= s <= r.get("burst_at", math.inf) + 10]
    steady_all = [d for _, d in log]
    lines.append(
        f"| /metrics (text+gzip) during polls / between polls, median ms | "
        f"{statistics.median(during) * 1000 if during else math.nan:.1f} / "
        f"{statistics.median(between) * 1000 if between else math.nan:.1f} ({len(during)} / {len(between)} scrapes) |"
    )
    steady_kind, steady_tail = tail(steady_all)
    lines.append(
        f"| /metrics (text+gzip) over the steady phase: {steady_kind} / max ms | {steady_tail * 1000:.1f} / "
        f"{max(steady_all) * 1000:.1f} ({len(steady_all)} scrapes, {len(after_burst)} in the 10 s after the burst) |"
    )
    lines.append(
        f"| detection latency (failed job EndTime to /metrics), median / max | "
        f"{statistics.median(r['detection']):.1f} / {max(r['detection']):.1f} s "
        f"(poll interval {args.poll_interval:g} s) |"
    )
    lines.append(f"| counts against ground truth | {'exact' if r['truth_ok'] else 'MISMATCH'}: {r['truth_detail']} |")
    lines.append("")
    idle_target = PREVIOUS_IDLE_POLL_CPU_PER_1000_TARGETS * max(r["targets"], 1000) / 1000 / 50
    checks = [
        (
            f"idle poll CPU above the control <= 1/50 of the previous design's at 1,000 targets ({idle_target:.4f} s)",
            idle_cpu - control_cpu <= idle_target,
        ),
        ("idle polls saw no change", r["idle_changed"] == 0),
        ("steady API calls per poll <= the exporter's own floor + 1 (every poll)", within_own == len(polls)),
        ("steady API calls in all <= sum of ground-truth floor + 1", sum(calls) <= sum(f + 1 for f in truth_floor)),
        (
            "gzip scrape p99 <= 10 ms over the steady phase (burst included, 200 scrapes or more)",
            len(steady_all) >= 200 and percentile(steady_all, 0.99) <= 0.010,
        ),
        ("text and gzip medians within 2x of the raw-socket limit", all(v <= 2 for v in limit_ratio.values())),
        # The exposition's text is kept for text scrapes (about 40 MiB at 1,000 targets), and while
        # every target changes at once the old and new text coexist until the swap.
        ("peak RSS <= 200 MB (1,000 targets or fewer)", r["targets"] > 1000 or r["peak_rss"] <= 200e6),
        ("no growth over simulated time (RSS +10% at most)", r["rss_end"] <= r["rss_start"] * 1.10),
        ("counts equal the ground truth", r["truth_ok"]),
    ]
    if has_baselines:
        checks.insert(
            0, ("/metrics median <= 1/20 of per-scrape rendering (every variant)", min(naive_ratio.values()) >= 20)
        )
    for name, ok in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}: {name}")
    for number, (poll, floor) in enumerate(zip(polls, truth_floor, strict=True), start=1):
        if poll.api_calls > floor + 1:
            lines.append(
                f"  steady poll {number} above floor + 1: {poll.api_calls} calls ({poll.window_calls} window, "
                f"{poll.recheck_calls} re-reads in {poll.forced_rechecks} forced listings and others), ground truth "
                f"{floor * 100 - 99}..{floor * 100} new or changed, the exporter counted {poll.jobs_changed}, "
                f"{poll.jobs_deferred} followed jobs left for later"
            )
    print("\n".join(lines))
    if args.smoke:
        return 0 if r["truth_ok"] else 1
    return 0


def figures(r: dict[str, Any]) -> dict[str, float]:
    """The headline figures of one run, by name (bench/aggregate.py compares runs with them)."""
    mib = 1024 * 1024
    scrape = r["scrape"]
    out: dict[str, float] = {}
    for name, _, _ in VARIANTS:
        ours = statistics.median(scrape["exporter"][name])
        out[f"/metrics {name}: exporter median ms"] = ours * 1000
        out[f"/metrics {name}: exporter / raw-socket limit"] = ours / statistics.median(scrape["raw"][name])
        if "per-scrape" in scrape:
            out[f"/metrics {name}: per-scrape rendering / exporter"] = (
                statistics.median(scrape["per-scrape"][name]) / ours
            )
            out[f"/metrics {name}: cached baseline median ms"] = statistics.median(scrape["cached"][name]) * 1000
    steady = [d for _, d in r["scrape_log"]]
    out["/metrics text+gzip over the steady phase: p99 ms"] = percentile(steady, 0.99) * 1000
    out["idle poll: exporter CPU ms"] = r["idle_cpu_per_poll"] * 1000
    out["idle poll: control (only wakes) CPU ms"] = r["idle_control_cpu_per_wake"] * 1000
    out["idle poll: exporter above the control, CPU ms"] = (
        r["idle_cpu_per_poll"] - r["idle_control_cpu_per_wake"]
    ) * 1000
    if "cached_render_cpu" in r:
        out["idle poll: cached baseline render CPU ms"] = r["cached_render_cpu"] * 1000
    polls = r["steady_polls"]
    within = sum(1 for p, f in zip(polls, r["steady_floor"], strict=True) if p["api_calls"] <= f + 1)
    out["steady polls within the ground-truth floor + 1, %"] = 100 * within / len(polls)
    own = sum(1 for p in polls if p["api_calls"] <= math.ceil(p["jobs_changed"] / 100) + 1)
    out["steady polls within the exporter's own floor + 1, %"] = 100 * own / len(polls)
    out["steady calls / sum of ground-truth floor + 1, %"] = (
        100 * sum(p["api_calls"] for p in polls) / sum(f + 1 for f in r["steady_floor"])
    )
    out["naive poller: calls per poll"] = r["naive_poll"]["calls"]
    out["cold poll: CPU s per 1,000 jobs"] = r["cold_cpu"] / max(1, r["cold_jobs"]) * 1000
    out["cold poll: seconds"] = r["cold_seconds"]
    jobs_read = sum(p["jobs_read"] for p in polls)
    out["steady: CPU s per 1,000 jobs read"] = r["cpu_steady"] / max(1, jobs_read) * 1000
    out["peak RSS MiB"] = r["peak_rss"] / mib
    out["exposition text MiB"] = r["exposition_bytes"] / mib
    out["exposition gzip MiB"] = r["gzip_bytes"] / mib
    out["state file MiB (end)"] = r["state_end"] / mib
    return out


if __name__ == "__main__":
    sys.exit(main())
