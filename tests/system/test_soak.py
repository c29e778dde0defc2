"""The fault-injection soak (bench/soak.py) for about 45 seconds: counts equal the ground truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_soak_counts_exactly_under_faults_and_restarts() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "45"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "0 targets differ" in out
    assert "secrets found in the debug log: none" in out
    assert "PASS: counts equal the ground truth" in out
