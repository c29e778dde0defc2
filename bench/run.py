"""Benchmark: idaas-sync-exporter against the simulator at scale, every figure measured side by side.

    python bench/run.py            # 1,000 targets, ~100,000 jobs in the window, about 9 minutes
    python bench/run.py --smoke    # a few seconds, small tenant; checks correctness, not speed

The simulator runs in this process (so jobs can be injected and the ground truth read);
the exporter runs as its own process (so its memory and CPU are its own). Figures are
medians and ratios of measurements taken in the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.truth import Counts, compare, exported_jobs, finished_jobs, free_port, sum_by  # noqa: E402
from exporter.settings import Settings  # noqa: E402
from exporter.simulator.clock import ScaledClock  # noqa: E402
from exporter.simulator.server import AccessKey, SimulatorApp, SimulatorThread  # noqa: E402
from exporter.simulator.world import SCENARIOS, JobPlan, World  # noqa: E402

TEXT = "text/plain"
SCRAPER = """
import json, sys, time, urllib.request
port, path = int(sys.argv[1]), sys.argv[2]
request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
with open(path, "a") as out:
    while True:
        started = time.time()
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        out.write(json.dumps([started, time.perf_counter() - t0]) + "\\n")
        out.flush()
        time.sleep(0.05)
"""
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass
class Poll:
    ts: float
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
    polls: list[Poll] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    def read_logs(self) -> None:
        if self.process.stderr is None:
            return
        for line in self.process.stderr:
            self.log_lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("msg") == "poll finished":
                ts = time.time()
                self.polls.append(
                    Poll(
                        ts,
                        float(event["seconds"]),
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
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def fetch(port: int, accept: str = TEXT, encoding: str = "identity") -> tuple[float, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept, "Accept-Encoding": encoding}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        body = response.read()
    return time.perf_counter() - started, body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")


class NaiveCollector:
    """The naive design: the same families, rendered by prometheus_client on every scrape."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small and quick; correctness only")
    parser.add_argument("--speed", type=float, default=30.0, help="simulated seconds per real second")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="exporter poll interval, real seconds")
    parser.add_argument("--steady-seconds", type=float, default=120.0, help="real seconds of steady-state polling")
    parser.add_argument("--scrapes", type=int, default=15, help="scrapes per variant")
    args = parser.parse_args()
    scenario = "demo" if args.smoke else "bench"
    steady = 8.0 if args.smoke else args.steady_seconds
    scrapes = 5 if args.smoke else args.scrapes
    speed = args.speed
    # How long a followed job may wait for a re-read: the default, in simulated time
    # (the smoke run checks correctness only, and need not wait that long to settle).
    recheck_max = 2.0 if args.smoke else float(Settings.model_fields["recheck_max_seconds"].default) / speed

    print(f"building the {scenario} tenant ...", flush=True)
    clock = ScaledClock(speed=speed)
    world = World(SCENARIOS[scenario], seed=1, clock=clock)
    instance = next(iter(world.instances))
    window = sum(1 for j in world.visible_jobs(instance, world.now_ms()) if j.start_ms >= world.now_ms() - 86_400_000)
    targets = len(world.instances[instance].providers) + len(world.instances[instance].applications)
    secret = secrets.token_urlsafe(16)
    sim = SimulatorThread(SimulatorApp(world, [AccessKey("bench", SecretStr(secret))]))
    sim.start()
    workdir = Path(tempfile.mkdtemp(prefix="idaas-bench-"))
    state_path = workdir / "state.sqlite3"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDAAS_EXPORTER_")}
    env["IDAAS_EXPORTER_ACCESS_KEY_SECRET"] = secret
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
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
    exporter = ExporterProcess(process, port)
    threading.Thread(target=exporter.read_logs, daemon=True).start()
    results: dict[str, Any] = {"targets": targets, "window_jobs": window}
    try:
        cold_started = time.monotonic()
        wait_for(lambda: exporter.polls, 900, "the cold first poll")
        cold = exporter.polls[0]
        results["cold_calls"] = cold.api_calls
        results["cold_seconds"] = cold.seconds
        results["cold_wall"] = time.monotonic() - cold_started
        results["cold_cpu"] = exporter.cpu_seconds()
        results["rss_after_cold"] = exporter.proc("VmRSS")
        wait_for(lambda: len(exporter.polls) >= 3, 120, "steady polls")
        # Exact check, part 1: freeze simulated time, let a poll see everything, note both sides.
        truth_before = settled_counts(world, clock, exporter, port, recheck_max)

        # 1. Scrape cost, side by side with the naive per-scrape rendering of the same data.
        _, body = fetch(port)
        families = list(text_string_to_metric_families(body.decode()))
        samples = sum(len(f.samples) for f in families)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NaiveCollector(families))
        scrape: dict[str, list[float]] = {}
        for name, accept, encoding in (
            ("text", TEXT, "identity"),
            ("text+gzip", TEXT, "gzip"),
            ("openmetrics", OPENMETRICS, "identity"),
            ("openmetrics+gzip", OPENMETRICS, "gzip"),
        ):
            scrape[name] = [fetch(port, accept, encoding)[0] for _ in range(scrapes)]
            naive: list[float] = []
            for _ in range(scrapes):
                started = time.perf_counter()
                rendered = generate_openmetrics(registry) if accept == OPENMETRICS else generate_latest(registry)
                if encoding == "gzip":
                    gzip.compress(rendered)
                naive.append(time.perf_counter() - started)
            scrape["naive " + name] = naive
        results["samples"] = samples
        results["scrape"] = scrape
        results["exposition_bytes"] = len(body)

        # 2./3./4. Steady state for `steady` seconds, scraping all the time; halfway, a burst of jobs.
        steady_from = len(exporter.polls)
        cpu_before = exporter.cpu_seconds()
        rss_start = exporter.proc("VmRSS")
        state_start = state_size(state_path)
        # The scraper runs in its own process: in this one, the simulator's work during polls
        # would delay the scraper's own threads and be mistaken for exporter latency.
        scrape_file = workdir / "scrapes.jsonl"
        scraper = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", SCRAPER, str(port), str(scrape_file)],
            cwd=ROOT,
        )
        phase_start = time.monotonic()
        burst_done = False
        while time.monotonic() - phase_start < steady:
            if not burst_done and time.monotonic() - phase_start > steady / 2:
                inject_burst(world, instance, 200 if args.smoke else 3000)
                burst_done = True
            time.sleep(0.2)
        scraper.terminate()
        scraper.wait(timeout=30)
        scrape_log = [tuple(json.loads(line)) for line in scrape_file.read_text().splitlines() if line.strip()]
        steady_polls = [p for p in exporter.polls[steady_from:] if not p.cold]
        results["steady_polls"] = steady_polls
        results["cpu_steady"] = exporter.cpu_seconds() - cpu_before
        results["rss_start"] = rss_start
        results["rss_end"] = exporter.proc("VmRSS")
        results["state_start"] = state_start
        results["state_end"] = state_size(state_path)
        results["scrape_log"] = scrape_log
        results["poll_windows"] = [(p.ts - p.seconds, p.ts) for p in exporter.polls[steady_from:]]
        results["simulated_seconds"] = steady * speed

        # 5. Detection latency: a failed job's EndTime to the counter change on /metrics.
        latencies = [detect(world, instance, port, speed) for _ in range(2 if args.smoke else 4)]
        results["detection"] = latencies
        results["peak_rss"] = exporter.proc("VmHWM")

        # Exact check, part 2: the counters grew by exactly the jobs that finished in between.
        truth_after = settled_counts(world, clock, exporter, port, recheck_max)
        results["truth_ok"], results["truth_detail"] = check_truth(truth_before, truth_after)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        sim.stop()
    return report(results, args, scenario, speed)


def inject_burst(world: World, instance: str, count: int) -> None:
    """Many jobs finishing at once: the next poll is a heavy one."""
    state = world.instances[instance]
    targets = [("identity_provider", p.identity_provider_id, "ingress") for p in state.providers if p.pull_config]
    targets += [("application", a.application_id, "egress") for a in state.applications]
    now_ms = world.now_ms()
    for index in range(count):
        target_type, target_id, direction = targets[index % len(targets)]
        world.add_job(
            JobPlan(
                job_id=world.new_job_id(instance, f"burst-{index}"),
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


def report(r: dict[str, Any], args: argparse.Namespace, scenario: str, speed: float) -> int:
    mib = 1024 * 1024
    lines = [
        f"scenario {scenario}: {r['targets']} targets, {r['window_jobs']} jobs in the 24 h window, "
        f"{r['samples']} samples ({r['exposition_bytes'] / mib:.1f} MiB) in /metrics; simulated time x{speed:g}"
    ]
    lines.append("")
    lines.append("| /metrics | median ms | p99 ms | naive median ms | naive / exporter |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    scrape = r["scrape"]
    ratios = {}
    for name in ("text", "text+gzip", "openmetrics", "openmetrics+gzip"):
        ours, naive = scrape[name], scrape["naive " + name]
        ratio = statistics.median(naive) / statistics.median(ours)
        ratios[name] = ratio
        lines.append(
            f"| {name} | {statistics.median(ours) * 1000:.1f} | {percentile(ours, 0.99) * 1000:.1f} | "
            f"{statistics.median(naive) * 1000:.1f} | {ratio:.1f}x |"
        )
    polls = r["steady_polls"]
    calls = [p.api_calls for p in polls]
    floor = [math.ceil(p.jobs_changed / 100) for p in polls]
    within = sum(1 for c, f in zip(calls, floor, strict=True) if c <= f + 1)
    naive_calls = math.ceil(r["window_jobs"] / 100)
    jobs_read = sum(p.jobs_read for p in polls)
    lines.append("")
    lines.append("| polling | value |")
    lines.append("| --- | ---: |")
    lines.append(f"| cold first poll: API calls / seconds | {r['cold_calls']} / {r['cold_seconds']:.1f} |")
    lines.append(f"| steady polls measured | {len(polls)} (over {r['simulated_seconds'] / 60:.0f} simulated min) |")
    lines.append(f"| API calls per steady poll: median / max | {statistics.median(calls):.0f} / {max(calls)} |")
    lines.append(f"| floor ceil(new or changed / 100): median / max | {statistics.median(floor):.0f} / {max(floor)} |")
    lines.append(f"| polls within floor + 1 | {within} of {len(polls)} |")
    excess = sorted({c - f for c, f in zip(calls, floor, strict=True)})
    spread = ", ".join(f"+{e}: {sum(1 for c, f in zip(calls, floor, strict=True) if c - f == e)}" for e in excess)
    lines.append(f"| calls above the floor (polls) | {spread} |")
    forced = [p for p in polls if p.forced_rechecks]
    lines.append(
        f"| polls that re-read jobs which had waited the recheck maximum | {len(forced)} "
        f"({sum(1 for p in forced if p.api_calls > math.ceil(p.jobs_changed / 100) + 1)} of them above floor + 1) |"
    )
    lines.append(f"| naive poller (re-read the window): calls per poll | {naive_calls} |")
    cpu_per_k = r["cpu_steady"] / max(1, jobs_read) * 1000
    lines.append(
        f"| CPU seconds per 1,000 jobs read, steady / cold | {cpu_per_k:.3f} / "
        f"{r['cold_cpu'] / max(1, r['window_jobs']) * 1000:.3f} |"
    )
    lines.append("")
    lines.append("| memory and state | value |")
    lines.append("| --- | ---: |")
    lines.append(f"| peak RSS | {r['peak_rss'] / mib:.0f} MiB |")
    lines.append(
        f"| RSS after cold poll / start of steady / end ({r['simulated_seconds'] / 3600:.1f} simulated h) | "
        f"{r['rss_after_cold'] / mib:.0f} / {r['rss_start'] / mib:.0f} / {r['rss_end'] / mib:.0f} MiB |"
    )
    lines.append(
        f"| state file start / end of steady | {r['state_start'] / mib:.1f} / {r['state_end'] / mib:.1f} MiB |"
    )
    during = [d for s, d in r["scrape_log"] if any(a <= s <= b for a, b in r["poll_windows"])]
    idle = [d for s, d in r["scrape_log"] if not any(a <= s <= b for a, b in r["poll_windows"])]
    during_ms = statistics.median(during) * 1000 if during else float("nan")
    idle_ms = statistics.median(idle) * 1000 if idle else float("nan")
    lines.append(
        f"| /metrics (text+gzip) during polls / between polls, median ms | {during_ms:.1f} / "
        f"{idle_ms:.1f} ({len(during)} / {len(idle)} scrapes) |"
    )
    lines.append(
        f"| detection latency (failed job EndTime to /metrics), median / max | "
        f"{statistics.median(r['detection']):.1f} / {max(r['detection']):.1f} s "
        f"(poll interval {args.poll_interval:g} s) |"
    )
    lines.append(f"| counts against ground truth | {'exact' if r['truth_ok'] else 'MISMATCH'}: {r['truth_detail']} |")
    lines.append("")
    checks = [
        ("/metrics median <= 1/20 of naive rendering (text)", ratios["text"] >= 20),
        ("steady API calls per poll <= ceil(new or changed / 100) + 1 (every poll)", within == len(polls)),
        ("peak RSS <= 150 MB", r["peak_rss"] <= 150e6),
        ("no growth over simulated time (RSS +10% at most)", r["rss_end"] <= r["rss_start"] * 1.10),
        (
            "/metrics during polls within 2x of between polls",
            bool(during and idle) and statistics.median(during) <= 2 * statistics.median(idle),
        ),
        ("counts equal the ground truth", r["truth_ok"]),
    ]
    for name, ok in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}: {name}")
    for number, poll in enumerate(polls, start=1):
        if poll.api_calls > math.ceil(poll.jobs_changed / 100) + 1:
            lines.append(
                f"  steady poll {number} above floor + 1: {poll.api_calls} calls ({poll.window_calls} window, "
                f"{poll.recheck_calls} re-reads in {poll.forced_rechecks} forced listings and others), "
                f"{poll.jobs_changed} new or changed, {poll.jobs_deferred} followed jobs left for later"
            )
    print("\n".join(lines))
    if args.smoke:
        return 0 if r["truth_ok"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
