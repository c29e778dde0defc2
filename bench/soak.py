"""Fault-injection soak: the exporter's counters must equal the simulator's ground truth exactly.

    .venv/bin/python bench/soak.py --seconds 600     # the long mode
    .venv/bin/python bench/soak.py --seconds 45      # what the test suite runs

The simulator throttles 30% of requests, answers 10% with 5xx, adds latency, drops
connections, sends malformed and truncated bodies, repeats a NextToken, duplicates
jobs across pages, shows finished jobs as running again, and runs its clock ten
minutes ahead of the exporter's. Bursts of jobs of every outcome, some running for
many polls, keep the exporter paging and re-reading jobs behind its window.
Hostile phases add jobs dated hours ahead of the API's clock, malformed jobs (one
quarantined for good, others repaired), jobs that appear twenty minutes late, answers
that trickle in a byte at a time, answers of 20 MB, gzip bombs, stacked and unknown
content codings, a raw 0xFF byte in a job's Description, and a lone surrogate with
control characters in a target name and in the API's error messages.
Meanwhile the exporter is killed (SIGKILL and SIGTERM, often mid-poll) and restarted
on the same state file. Before and after, simulated time is frozen and faults are
switched off until every followed job has been read again; the counters must have
grown by exactly the jobs that finished in between.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.truth import Counts, compare, exported_jobs, finished_jobs, free_port, sum_by  # noqa: E402
from idaas_sync_exporter.simulator.clock import ScaledClock  # noqa: E402
from idaas_sync_exporter.simulator.server import AccessKey, Faults, SimulatorApp, SimulatorThread  # noqa: E402
from idaas_sync_exporter.simulator.world import SCENARIOS, JobPlan, World  # noqa: E402
from tests.e2e import exporter_command, exporter_env  # noqa: E402

FAULTS = {
    "throttle_rate": 0.30,
    "server_error_rate": 0.10,
    "latency_seconds": 0.005,
    "drop_rate": 0.03,
    "malformed_rate": 0.03,
    "truncated_rate": 0.03,
    "repeat_token_rate": 0.10,
    "duplicate_rate": 0.10,
    "regress_rate": 0.05,
}


# Each turn of the soak runs one phase of each list (see Soak.hostile_phase).
JOB_PHASES = ["future", "malformed", "late"]
TEXT_PHASES = ["bad_byte", "hostile_text"]
WIRE_PHASES = ["trickle", "oversized", "gzip_bomb", "encoding"]
# A lone surrogate, CR, ESC, BEL, NUL, LINE SEPARATOR and NEL: none may split or break a log line.
HOSTILE_TEXT = "soak-hostile \ud800 cr\r esc\x1b[31m bel\x07 nul\x00 ls\u2028 nel\x85 end"

# Real seconds; simulated time runs 60 times faster, so this is three simulated minutes.
RECHECK_MAX_SECONDS = 3


class Soak:
    def __init__(self, seconds: float, seed: int) -> None:
        self.seconds = seconds
        self.rng = random.Random(seed)
        # The API's clock runs ten minutes ahead of the exporter's.
        self.clock = ScaledClock(start=time.time() + 600, speed=60)
        self.world = World(SCENARIOS["busy"], seed=seed, clock=self.clock)
        self.instances = ",".join(self.world.instances)
        self.key_id = "STS.soak" + secrets.token_hex(4)
        self.secret = "soak-secret-" + secrets.token_hex(12)
        self.token = "soak-token-" + secrets.token_hex(12)
        self.password = "soak-password-" + secrets.token_hex(8)
        self.faults = Faults()
        self.app = SimulatorApp(
            self.world,
            [AccessKey(self.key_id, SecretStr(self.secret), SecretStr(self.token))],
            faults=self.faults,
            seed=seed,
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="idaas-soak-"))
        self.port = free_port()
        self.output: list[str] = []
        self.polls = 0
        # Successful polls per instance: each instance is polled on its own schedule.
        self.polls_by_instance: dict[str, int] = dict.fromkeys(self.world.instances, 0)
        self.process: subprocess.Popen[str] | None = None
        self.kills = {"SIGKILL": 0, "SIGTERM": 0}
        # API answers by code, summed over every exporter process (each starts from zero).
        self.codes: dict[str, float] = {}
        # Odd jobs the exporter reported, by reason, likewise summed.
        self.anomalies: dict[str, float] = {}
        # Jobs the API never shows usable: quarantined, so never counted.
        self.quarantined: set[str] = set()
        self.phases: dict[str, int] = {}

    # -- exporter process ------------------------------------------------------

    def start_exporter(self, endpoint: str) -> None:
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        web = self.workdir / "web.yml"
        web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
        env = exporter_env()
        env["IDAAS_EXPORTER_ACCESS_KEY_SECRET"] = self.secret
        env["IDAAS_EXPORTER_SECURITY_TOKEN"] = self.token
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [
                *exporter_command("serve"),
                "--instance-ids",
                self.instances,
                "--endpoint",
                endpoint,
                "--overlap-seconds",
                "60",
                "--recheck-max-seconds",
                str(RECHECK_MAX_SECONDS),
                "--lookback-seconds",
                "10800",
                "--access-key-id",
                self.key_id,
                "--state-path",
                str(self.workdir / "state.sqlite3"),
                "--poll-interval-seconds",
                "1",
                "--api-timeout-seconds",
                "2",
                "--requests-per-second",
                "50",
                "--log-level",
                "debug",
                "--log-format",
                "json",
                "--web.config.file",
                str(web),
                "--listen-address",
                f"127.0.0.1:{self.port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        if process.stdout is None:
            return
        for line in process.stdout:
            self.output.append(line)
            if '"poll finished"' in line:
                self.polls += 1
                instance_id = json.loads(line).get("instance_id", "")
                self.polls_by_instance[instance_id] = self.polls_by_instance.get(instance_id, 0) + 1

    def kill_and_restart(self, endpoint: str) -> None:
        process = self.process
        if process is None:
            raise RuntimeError("no exporter")
        if process.poll() is not None:
            tail = "".join(self.output[-5:])
            raise SystemExit(f"soak: the exporter exited on its own with status {process.returncode}; it said:\n{tail}")
        self.add_codes(self.fetch_metrics())
        name = self.rng.choice(["SIGKILL", "SIGTERM"])
        process.send_signal(getattr(signal, name))
        process.wait(timeout=30)
        if name == "SIGTERM" and process.returncode != 0:
            raise SystemExit(f"soak: SIGTERM should stop cleanly, got status {process.returncode}")
        self.kills[name] += 1
        self.start_exporter(endpoint)

    def add_codes(self, metrics: str) -> None:
        for (code,), count in sum_by(metrics, "idaas_exporter_api_requests_total", "code").items():
            self.codes[code] = self.codes.get(code, 0.0) + count
        for (reason,), count in sum_by(metrics, "idaas_exporter_jobs_anomalous_total", "reason").items():
            self.anomalies[reason] = self.anomalies.get(reason, 0.0) + count

    def fetch_metrics(self) -> str:
        auth = base64.b64encode(f"prometheus:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics", headers={"Authorization": f"Basic {auth}"}
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
                    return str(response.read().decode())
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- the measurement -------------------------------------------------------------

    def until_seen(self, fault: str, rate: float, marker: str, *, seconds: float = 20.0) -> None:
        """Raise ``fault`` to ``rate`` until the exporter's log shows ``marker``, then put it back.

        Some faults only bite on some requests (a repeated NextToken needs a listing of several
        pages): at their usual rates a short run may meet none, and the check that each fault was
        seen would fail by chance. Once each, forced, they are seen in every run.
        """
        usual = getattr(self.faults, fault)
        setattr(self.faults, fault, rate)
        start = len(self.output)
        deadline = time.monotonic() + seconds
        try:
            while not any(marker in line for line in self.output[start:]) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            setattr(self.faults, fault, usual)

    def force_rare_faults(self) -> None:
        """A listing of several pages answered with a repeated NextToken, then dropped connections."""
        self.inject_burst(jobs=250)  # three pages at MaxResults 100
        self.until_seen("repeat_token_rate", 1.0, "already returned")
        self.until_seen("drop_rate", 1.0, "RemoteProtocolError")

    def inject_burst(self, jobs: int | None = None) -> None:
        """Jobs of every outcome starting now; some finish within a poll, some many polls later."""
        for instance_id, state in self.world.instances.items():
            targets = [("identity_provider", p.identity_provider_id, "ingress") for p in state.providers]
            targets += [("application", a.application_id, "egress") for a in state.applications]
            now_ms = self.world.now_ms()
            for index in range(jobs if jobs is not None else self.rng.randint(60, 180)):
                target_type, target_id, direction = self.rng.choice(targets)
                status = self.rng.choice(["success", "success", "partial_success", "failed"])
                self.world.add_job(
                    JobPlan(
                        job_id=self.world.new_job_id(instance_id, f"soak-{now_ms}-{index}"),
                        instance_id=instance_id,
                        target_type=target_type,
                        target_id=target_id,
                        direction=direction,
                        trigger_type=self.rng.choice(["auto", "manual"]),
                        start_ms=now_ms - self.rng.randint(0, 10_000),
                        pending_ms=self.rng.randint(100, 20_000),
                        running_ms=self.rng.randint(1_000, 900_000),
                        final_status=status,
                        statistics={"User": {"Updated": {"Total": 3, "Success": 2, "Failed": 1, "Skipped": 0}}},
                        error_code="IdentityProvider.ConnectionFailed" if status == "failed" else None,
                        error_message="soak" if status == "failed" else None,
                    )
                )

    def hostile_phase(self) -> None:
        """Ways the API misbehaves beyond the fault rates: each turn one of jobs, of text and of the wire."""
        turn = sum(self.phases.get(phase, 0) for phase in WIRE_PHASES)
        for phases in (JOB_PHASES, TEXT_PHASES, WIRE_PHASES):
            phase = phases[turn % len(phases)]
            self.phases[phase] = self.phases.get(phase, 0) + 1
            self.run_phase(phase)

    def run_phase(self, phase: str) -> None:
        now_ms = self.world.now_ms()
        if phase == "future":
            self.add_jobs("future", 3, start_ms=now_ms, overrides={"StartTime": now_ms + 2 * 3600_000})
        elif phase == "malformed":
            self.quarantined |= self.add_jobs("null-status", 2, start_ms=now_ms, overrides={"Status": None})
            bad_count = {"Result": {"UserStatistics": {"Updated": {"Total": "3", "Success": -1}}}}
            self.add_jobs("bad-count", 3, start_ms=now_ms, overrides=bad_count)
            self.add_jobs("huge-code", 2, start_ms=now_ms, overrides={"Result": {"ErrorCode": "E" * 100_000}})
        elif phase == "late":
            # Twenty simulated minutes ago: behind any window even after a run of failed polls, inside
            # the 30-minute late horizon.
            self.add_jobs("late", 20, start_ms=now_ms - 1_200_000)
        elif phase == "bad_byte":
            # Sent as the raw byte 0xFF: the job is counted, its Description repaired (bad_text).
            self.add_jobs("bad-byte", 2, start_ms=now_ms, overrides={"Description": "soak \udcff byte"})
        elif phase == "hostile_text":
            # A lone surrogate and control characters in a target name and in the API's error messages
            # (throttling answers carry them); both end up in the log, the pages and the exposition.
            for state in self.world.instances.values():
                state.providers[0] = dataclasses.replace(state.providers[0], name=HOSTILE_TEXT)
            self.faults.error_message_suffix = " " + HOSTILE_TEXT
        elif phase in ("gzip_bomb", "encoding"):
            # A bomb, then stacked gzip (a bomb too), an unknown coding and plain gzip, which must read as usual.
            codings = [("gzip", 2.0)] if phase == "gzip_bomb" else [("gzip, gzip", 1.0), ("br", 1.0), ("gzip", 1.0)]
            for coding, seconds in codings:
                bomb = phase == "gzip_bomb" or "," in coding
                self.faults.gzip_bomb_bytes = 256 * 1024 * 1024 if bomb else 0.0
                self.faults.content_encoding = coding
                time.sleep(seconds)  # a few polls' worth
            self.faults.gzip_bomb_bytes = 0.0
            self.faults.content_encoding = ""
        else:
            name = "trickle_byte_seconds" if phase == "trickle" else "oversized_bytes"
            setattr(self.faults, name, 0.05 if phase == "trickle" else 20 * 1024 * 1024)
            time.sleep(3.0)  # longer than the soak exporter's 2 s request deadline
            setattr(self.faults, name, 0.0)

    def add_jobs(self, tag: str, count: int, *, start_ms: int, overrides: dict[str, Any] | None = None) -> set[str]:
        """Short jobs on random targets of every instance; returns their ids."""
        ids: set[str] = set()
        for instance_id, state in self.world.instances.items():
            for index in range(count):
                provider = self.rng.choice(state.providers)
                plan = self.world.add_job(
                    JobPlan(
                        job_id=self.world.new_job_id(instance_id, f"soak-{tag}-{start_ms}-{index}"),
                        instance_id=instance_id,
                        target_type="identity_provider",
                        target_id=provider.identity_provider_id,
                        direction="ingress",
                        trigger_type="auto",
                        start_ms=start_ms + index,
                        pending_ms=100,
                        running_ms=self.rng.randint(1_000, 30_000),
                        final_status="success",
                        statistics={"User": {"Updated": {"Total": 1, "Success": 1, "Failed": 0, "Skipped": 0}}},
                        wire_overrides=dict(overrides) if overrides else None,
                    )
                )
                ids.add(plan.job_id)
        return ids

    def settle(self) -> tuple[Counts, Counts]:
        """Freeze simulated time, switch faults off, wait until every followed job was read again.

        A followed job behind the window may wait up to the recheck maximum for a poll
        with calls to spare. Of two polls of an instance that finish after that, the
        second started after it, so it has read them all.
        """
        self.faults.off()
        self.clock.pause()
        try:
            time.sleep(RECHECK_MAX_SECONDS)
            seen = dict(self.polls_by_instance)
            deadline = time.monotonic() + 120
            # A third poll: by its end the second's snapshot is the one served (rendered and compressed).
            while any(self.polls_by_instance.get(i, 0) < count + 3 for i, count in seen.items()):
                if time.monotonic() > deadline:
                    tail = "".join(self.output[-5:])
                    raise SystemExit(
                        "soak: no three successful polls of every instance within 120 s of settling; "
                        f"the exporter said:\n{tail}"
                    )
                time.sleep(0.1)
            return exported_jobs(self.fetch_metrics()), finished_jobs(self.world, self.quarantined)
        finally:
            self.clock.resume()
            for name, rate in FAULTS.items():
                setattr(self.faults, name, rate)

    def run(self) -> int:
        with SimulatorThread(self.app) as sim:
            self.start_exporter(sim.endpoint)
            try:
                before = self.settle()
                deadline = time.monotonic() + self.seconds
                self.force_rare_faults()
                while time.monotonic() < deadline:
                    self.inject_burst()
                    self.hostile_phase()
                    time.sleep(self.rng.uniform(2.0, 6.0))
                    self.kill_and_restart(sim.endpoint)
                after = self.settle()
                metrics = self.fetch_metrics()
            finally:
                if self.process is not None and self.process.poll() is None:
                    self.process.terminate()
                    self.process.wait(timeout=30)
        return self.report(before, after, metrics)

    def report(self, before: tuple[Counts, Counts], after: tuple[Counts, Counts], metrics: str) -> int:
        wrong, counted, finished = compare(before, after)
        self.add_codes(metrics)
        codes = self.codes
        log = "".join(self.output)
        leaked = [
            name
            for name, value in (
                ("AccessKey secret", self.secret),
                ("STS token", self.token),
                ("basic-auth password", self.password),
            )
            if value in log
        ]
        parsed, unparsable = _log_events(self.output)
        events = [event.get("msg", "") for event in parsed]
        print(
            f"soak: {self.seconds:.0f} s, {self.kills['SIGKILL']} SIGKILL and {self.kills['SIGTERM']} SIGTERM "
            f"restarts, {self.polls} successful polls, {len(self.output)} log lines"
        )
        print(
            f"soak: {counted:.0f} jobs counted, {finished:.0f} finished in the simulator, {len(wrong)} targets differ"
        )
        print("soak: API answers by code: " + ", ".join(f"{c}={v:.0f}" for c, v in sorted(codes.items())))
        print(f"soak: poll failures logged: {sum(1 for e in events if e == 'poll failed')}")
        print(f"soak: secrets found in the debug log: {', '.join(leaked) if leaked else 'none'}")
        print("soak: hostile phases: " + ", ".join(f"{p}={n}" for p, n in sorted(self.phases.items())))
        print("soak: odd jobs reported: " + ", ".join(f"{r}={v:.0f}" for r, v in sorted(self.anomalies.items()) if v))
        ok = not wrong and not leaked and counted > 0
        for name, present in (
            ("throttling", any(c.startswith("Throttling") for c in codes)),
            ("5xx", any(c in ("ServiceUnavailable", "InternalError") for c in codes)),
            ("malformed bodies", "MalformedResponse" in codes),
            ("transport errors", any(c.endswith(("Error", "Timeout")) and c not in ("InternalError",) for c in codes)),
            ("repeated NextToken", "already returned" in log),
            ("jobs dated in the future", self.anomalies.get("future_start", 0) > 0),
            ("quarantined jobs", self.anomalies.get("malformed", 0) > 0),
            ("repaired jobs", self.anomalies.get("bad_statistic", 0) > 0),
            ("late jobs", self.anomalies.get("late", 0) > 0),
            ("answers past the deadline", "AttemptDeadline" in codes),
            ("oversized answers", "ResponseTooLarge" in codes),
            ("gzip bombs", "decodes to more than" in log),
            ("stacked content codings", "Content-Encoding 'gzip, gzip'" in log),
            ("unknown content codings", "Content-Encoding 'br'" in log),
            ("jobs with a raw 0xFF byte", self.anomalies.get("bad_text", 0) > 0),
            ("hostile text repaired in the log", _hostile_text_repaired(parsed)),
            ("hostile target names exported", _hostile_name_exported(metrics)),
            ("every log line one event", not unparsable),
        ):
            print(f"soak: {name} seen: {'yes' if present else 'NO'}")
            ok = ok and present
        if wrong:
            print(f"soak: differences (exported, truth): {list(wrong.items())[:5]}")
        if unparsable:
            print(f"soak: {len(unparsable)} log lines are not one JSON event, the first: {unparsable[0][:200]!r}")
        print("PASS: counts equal the ground truth" if ok else "FAIL: soak")
        return 0 if ok else 1


def _log_events(lines: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON log's events, and the lines that are not one JSON object each (none should be)."""
    events: list[dict[str, Any]] = []
    unparsable: list[str] = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            unparsable.append(line)
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            unparsable.append(line)
    return events, unparsable


def _hostile_text_repaired(events: list[dict[str, Any]]) -> bool:
    """Some event carried HOSTILE_TEXT, its lone surrogate replaced by U+FFFD and no surrogate left."""
    texts = [str(value) for event in events for value in event.values() if "soak-hostile" in str(value)]
    return bool(texts) and all("\ufffd" in text and not _has_surrogate(text) for text in texts)


def _hostile_name_exported(metrics: str) -> bool:
    return any(
        line.startswith("idaas_sync_target_info{") and 'target_name="soak-hostile \ufffd' in line
        for line in metrics.splitlines()
    )


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    return Soak(args.seconds, args.seed).run()


if __name__ == "__main__":
    sys.exit(main())
