"""The benchmark's smoke mode: a small tenant for a few seconds, checking correctness, not speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_runs_and_counts_exactly() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for heading in ("| /metrics, ms |", "| CPU seconds per poll interval", "| polling |", "| memory and state |"):
        assert heading in out
    # Every server was scraped, the naive poller ran, and idle polls were measured.
    assert "| text+gzip |" in out
    assert "naive poller, run once" in out
    assert "PASS: idle polls saw no change" in out
    assert "counts against ground truth | exact" in out
    assert "PASS: counts equal the ground truth" in out
