"""The landing page in a real browser: headless Chromium driven by Playwright, against the demo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e import demo_exporter, free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
# Screenshots are kept for people to look at (CI can publish the directory).
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))


@pytest.mark.slow
def test_the_landing_page_loads_cleanly_with_tables_and_working_links() -> None:
    from playwright.sync_api import sync_playwright

    chromium = require_binary("chromium")
    port = free_port()
    with demo_exporter(port) as target, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
            answer = page.goto(f"http://{target}/", wait_until="load")
            assert answer is not None and answer.status == 200
            page.wait_for_function("document.querySelectorAll('#targets tr').length > 1", timeout=30_000)
            page.reload(wait_until="load")  # the tables as the demo's first poll left them
            assert page.title() == "IDaaS sync exporter"
            instances = page.locator("#instances tr").count() - 1
            targets = page.locator("#targets tr").count() - 1
            assert instances == 1 and targets >= 5
            first_target = page.locator("#targets tr").nth(1).locator("td").nth(2).inner_text()
            assert first_target.split()[-1].startswith(("idp_", "app_"))  # the id beside the name
            assert page.locator('meta[http-equiv="refresh"]').count() == 1
            links = page.locator("a").evaluate_all("links => links.map(link => link.href)")
            local = [link for link in links if link.startswith(f"http://{target}/")]
            assert {f"http://{target}/metrics", f"http://{target}/healthz", f"http://{target}/readyz"} <= set(local)
            for link in local:
                status = page.request.get(link).status
                assert status in (200, 503) if link.endswith("/readyz") else status == 200, link
            documentation = page.get_by_role("link", name="Documentation").get_attribute("href")
            assert documentation is not None and documentation.startswith("https://")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "landing-page.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
