"""Comparing the exporter's job counters with the simulator's ground truth (bench/run.py, bench/soak.py)."""

from __future__ import annotations

import re
import socket

from idaas_sync_exporter.simulator.world import World

# (target_id, status) -> jobs
Counts = dict[tuple[str, str], float]
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sum_by(metrics: str, metric: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Sum one metric's samples in a text exposition by the given labels."""
    totals: dict[tuple[str, ...], float] = {}
    prefix = metric + "{"
    for line in metrics.splitlines():
        if line.startswith(prefix):
            found = dict(_LABEL.findall(line))
            key = tuple(found[name] for name in labels)
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def exported_jobs(metrics: str) -> Counts:
    return {(t, s): v for (t, s), v in sum_by(metrics, "idaas_sync_jobs_total", "target_id", "status").items()}


def finished_jobs(world: World, leave_out: set[str] | frozenset[str] = frozenset()) -> Counts:
    """Jobs final in the simulator, but for ``leave_out`` (jobs the API never shows usable)."""
    final: Counts = {}
    for plan in world.finished_jobs():
        if plan.job_id in leave_out:
            continue
        key = (plan.target_id, plan.final_status)
        final[key] = final.get(key, 0.0) + 1
    return final


def compare(
    before: tuple[Counts, Counts], after: tuple[Counts, Counts]
) -> tuple[dict[tuple[str, str], tuple[float, float]], float, float]:
    """Targets whose counters did not grow by exactly the jobs that finished, and both totals.

    Each argument is (exporter's counters, jobs final in the simulator) at one frozen moment.
    """
    keys = set(before[0]) | set(after[0]) | set(before[1]) | set(after[1])
    wrong = {}
    for key in keys:
        counted = after[0].get(key, 0) - before[0].get(key, 0)
        finished = after[1].get(key, 0) - before[1].get(key, 0)
        if counted != finished:
            wrong[key] = (counted, finished)
    counted_total = sum(after[0].values()) - sum(before[0].values())
    finished_total = sum(after[1].values()) - sum(before[1].values())
    return wrong, counted_total, finished_total
