"""The documentation agrees with the code and the repository: checks that read files and start nothing.

Here rather than in tests/system, so `pytest -m "not system"` (the quick run) still catches a drifted page.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_outside_the_repository_is_read() -> None:
    # A user's clone has nothing beside it; facts the tests need live in tests/data.
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = [
        name
        for name in tracked.split()
        if name.endswith((".py", ".toml", ".yml", ".yaml", "run", "Dockerfile"))
        and "/".join(("shared", "reference")) in (ROOT / name).read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


def test_missing_binary_fails_with_one_line_install_hint() -> None:
    from tests.e2e import require_binary

    with pytest.raises(pytest.fail.Exception) as failure:
        require_binary("promtool-that-is-not-installed")
    message = str(failure.value)
    assert "\n" not in message and "apt-get install" in message


def test_configuration_reference_lists_every_setting_and_nothing_else() -> None:
    import re

    from idaas_sync_exporter.config.settings import ENV_PREFIX, Settings

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(IDAAS_EXPORTER_[A-Z_]+)`", text, re.M))
    assert documented == {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def test_readme_links_into_docs_and_every_link_resolves() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in ("configuration", "metrics", "counting", "alerts", "deployment", "performance", "security"):
        assert f"(docs/{page}.md)" in readme, f"README does not link docs/{page}.md"
    for source in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", source.read_text(encoding="utf-8")):
            assert (source.parent / target).exists(), f"{source.name} links to missing {target}"


def test_tests_named_in_the_docs_exist() -> None:
    import re

    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for module, rest in re.findall(r"`(tests/(?:unit/|system/)?[a-z_]+\.py)((?:::test_[a-z0-9_]+)?)`", text):
            source = (ROOT / module).read_text(encoding="utf-8")
            if rest:
                assert f"def {rest[2:]}(" in source, f"{page.name} names {module}{rest}, which does not exist"
        for name in re.findall(r"`::(test_[a-z0-9_]+)`", text):
            assert any(f"def {name}(" in p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")), (
                f"{page.name} names ::{name}, which does not exist"
            )


def test_metrics_reference_matches_the_catalogue() -> None:
    import re

    from idaas_sync_exporter.metrics.catalogue import ALL_FAMILIES as FAMILIES
    from idaas_sync_exporter.metrics.catalogue import TARGET_LABELS

    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    rows = {
        name: (kind, labels)
        for name, kind, labels in re.findall(r"^\| `([a-z_]+)` \| ([a-z]+) \| ([^|]+) \|", text, re.M)
    }
    assert set(rows) == {family.sample_name for family in FAMILIES}
    for family in FAMILIES:
        kind, labels = rows[family.sample_name]
        assert kind == family.kind, family.name
        documented = set(re.findall(r"[a-z_]+", labels.replace("TARGET", " ".join(TARGET_LABELS))))
        assert documented == set(family.labels), f"{family.name}: documented {documented}, declared {family.labels}"
