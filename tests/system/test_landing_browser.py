"""The landing page and /jobs in a real browser: headless Chromium driven by Playwright, against the demo.

Both pages are served under a Content-Security-Policy that allows no script at all, and must fit
1280 px without horizontal scrolling. With UPDATE_SCREENSHOTS=1 the screenshots the
documentation shows (docs/images/) are written again; otherwise they go to test-artifacts/ (ignored by
Git; TEST_ARTIFACTS_DIR moves it), for people and CI to look at, and the clone stays as it was.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import demo_exporter, free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
DOC_IMAGES = ROOT / "docs" / "images"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
# No script may run; the pages' one inline style sheet and their empty data: icon are all they load.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"
WIDE = 1920
NARROW = 1280
# The documentation's screenshots stay small enough to keep in the repository.
MAX_SCREENSHOT_BYTES = 300_000


def scrolls_sideways(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth"))


def check_landing(page: Any, target: str, screenshot: Path) -> None:
    """The landing page as the demo's first poll left it; captured before its filter is tried."""
    answer = page.goto(f"http://{target}/", wait_until="load")
    assert answer is not None and answer.status == 200
    assert answer.headers["content-security-policy"] == POLICY
    page.wait_for_function("document.querySelectorAll('#targets tr').length > 1", timeout=30_000)
    # The demo fails one provider's job shortly after it starts (30 simulated seconds); wait for the
    # poll that reads it, since the page refreshes itself only every 30 s.
    deadline = time.monotonic() + 30
    while True:
        page.reload(wait_until="load")
        if page.locator("#targets tr").nth(1).locator(".st").inner_text() == "failed":
            break
        assert time.monotonic() < deadline, "no failed target on the landing page after 30 s"
        time.sleep(0.5)
    assert page.title() == "IDaaS sync exporter"
    assert page.locator("#demo").inner_text().startswith("Demo: simulated data")
    instances = page.locator("#instances tr").count() - 1
    targets = page.locator("#targets tr").count() - 1
    assert instances == 1 and targets >= 5
    assert "cn-hangzhou" in page.locator("#instances").inner_text()
    first_target = page.locator("#targets tr").nth(1)
    assert first_target.locator("td").first.inner_text().split()[-1].startswith(("idp_", "app_"))  # id under name
    assert first_target.locator(".st").inner_text() == "failed"  # problems first
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    links = page.locator("a").evaluate_all("links => links.map(link => link.href)")
    local = [link for link in links if link.startswith(f"http://{target}/")]
    assert {f"http://{target}/metrics", f"http://{target}/healthz", f"http://{target}/readyz"} <= set(local)
    assert any(link.startswith(f"http://{target}/jobs?target_id=") for link in local)
    for link in local:
        status = page.request.get(link).status
        assert status in (200, 503) if link.endswith("/readyz") else status == 200, link
    documentation = page.get_by_role("link", name="Documentation").get_attribute("href")
    assert documentation is not None and documentation.startswith("https://")
    assert not scrolls_sideways(page)
    page.screenshot(path=str(screenshot), full_page=True)

    # The filter is a plain GET form: it works with no script.
    page.fill('input[name="q"]', "dingtalk")
    page.click('button[type="submit"]')
    page.wait_for_url("**/?q=dingtalk*")
    assert page.locator("#targets tr").count() == 2
    assert page.locator("#count").inner_text().startswith(f"1 of {targets} targets")


def check_jobs(page: Any, target: str, screenshot: Path) -> None:
    page.goto(f"http://{target}/jobs", wait_until="load")
    rows = page.locator("#jobs tr").count() - 1
    assert rows >= 10 and page.locator("#jobs .st.bad").count() >= 1
    assert not scrolls_sideways(page)
    # Every job's console link is on screen, not beyond the right edge.
    edges = page.locator("#jobs a.console").evaluate_all(
        "links => links.map(link => link.getBoundingClientRect().right)"
    )
    assert len(edges) == rows and max(edges) <= NARROW
    page.goto(f"http://{target}/jobs?status=failed%2Cpartial_success", wait_until="load")
    assert page.locator("#jobs strong.bad").count() >= 1  # failed objects, by type and action
    assert not scrolls_sideways(page)
    page.screenshot(path=str(screenshot))  # the viewport: the page lists up to 100 jobs per instance


@pytest.mark.slow
def test_the_pages_load_under_a_no_script_policy_fit_1280_px_and_are_captured(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = require_binary("chromium")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(f'http_server_config:\n  headers:\n    Content-Security-Policy: "{POLICY}"\n')
    screenshots = DOC_IMAGES if UPDATE_SCREENSHOTS else ARTIFACTS
    screenshots.mkdir(parents=True, exist_ok=True)
    landing, jobs = screenshots / "landing.png", screenshots / "jobs.png"
    port = free_port()
    # The demo's default speed: its clock never reports a time past the wall clock, so times read
    # "12 min ago" as a tenant's do, and its first failed job arrives within seconds.
    with (
        demo_exporter(port, "--web-config-file", str(web_config), speed=30) as target,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": NARROW, "height": 800})
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
            check_landing(page, target, landing)
            check_jobs(page, target, jobs)
            page.set_viewport_size({"width": WIDE, "height": 1080})
            for path in ("/", "/jobs"):
                page.goto(f"http://{target}{path}", wait_until="load")
                assert not scrolls_sideways(page), path
            for screenshot in (landing, jobs):
                assert 0 < screenshot.stat().st_size < MAX_SCREENSHOT_BYTES, screenshot
            assert problems == []
        finally:
            browser.close()
