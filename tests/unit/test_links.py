"""One documentation base for the pages, the runbook links and the package metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.links import DOCS_URL, PROJECT_URL, check_docs_url
from idaas_sync_exporter.rules.config import RulesConfig

ROOT = Path(__file__).resolve().parents[2]


def test_package_urls_agree_with_the_defaults() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Homepage"] == PROJECT_URL
    assert urls["Documentation"] == DOCS_URL
    assert all(url.startswith(PROJECT_URL) for url in urls.values())


def test_runbook_links_follow_the_docs_base() -> None:
    assert RulesConfig().runbook_url("IDaaSSyncStale") == f"{DOCS_URL}/alerts.md#idaassyncstale"
    mirror = RulesConfig(docs_url="https://git.example.internal/identity/idaas-sync-exporter/docs/")
    assert mirror.runbook_url("IDaaSSyncStale") == (
        "https://git.example.internal/identity/idaas-sync-exporter/docs/alerts.md#idaassyncstale"
    )
    wiki = RulesConfig(docs_url=DOCS_URL, runbook_url_pattern="https://wiki.example.com/r#{alert}")
    assert wiki.runbook_url("IDaaSSyncStale") == "https://wiki.example.com/r#idaassyncstale"


def test_docs_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_DOCS_URL", "https://git.example.internal/docs/")
    assert load_settings(None, {}).docs_url == "https://git.example.internal/docs"


@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.com/docs",
        "https://example.com/docs?x=1",
        "https://example.com/docs#a",
        "javascript:alert(1)",
        "https://exa mple.com",
        "https://example.com/" + "d" * 600,
    ],
)
def test_a_bad_docs_url_is_refused_without_echoing_it(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL") as refused:
        check_docs_url(value)
    assert value not in str(refused.value)
    monkeypatch.setenv("IDAAS_EXPORTER_DOCS_URL", value)
    with pytest.raises(SettingsError) as problems:
        load_settings(None, {})
    assert any("IDAAS_EXPORTER_DOCS_URL" in problem for problem in problems.value.problems)
