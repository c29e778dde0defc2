"""The alert rules pass `promtool check rules` and their `promtool test rules` unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e import require_binary

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    rule_files = sorted(RULES.glob("idaas-*.yml"))
    assert rule_files
    for rule_file in rule_files:
        result = subprocess.run(
            [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    promtool = require_binary("promtool")
    tests = sorted((RULES / "tests").glob("*.test.yml"))
    assert tests
    result = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
