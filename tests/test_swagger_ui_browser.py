"""Swagger UI in a real browser: Authorize asks for both halves of the key pair, and "Try it out" sends
them (LabelAPI had to switch this off). Drives Debian's Chromium through Playwright; no browser download."""
import shutil

import pytest


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def test_authorize_then_try_it_out_gets_200(live_server, make_key, tmp_path):
    from playwright.sync_api import sync_playwright

    key = make_key("reader")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(f"{live_server}/api/v1/ui/")
            page.get_by_role("button", name="Authorize").first.click()
            dialog = page.locator(".modal-ux")
            # Both schemes of the one security requirement are asked for.
            dialog.locator("input").nth(0).fill(key["Authentication-Key"])
            dialog.locator("input").nth(1).fill(key["Authentication-Secret"])
            authorize = dialog.get_by_role("button", name="Authorize", exact=True)
            for _ in range(2):  # one per scheme; each turns into "Logout" once clicked
                authorize.first.click()
            assert dialog.get_by_role("button", name="Logout").count() == 2
            dialog.get_by_role("button", name="Close").first.click()

            page.locator(".opblock-summary-path", has_text="/me").first.click()
            page.get_by_role("button", name="Try it out").click()
            page.get_by_role("button", name="Execute").click()
            status = page.locator(".live-responses-table .response .response-col_status").first
            status.wait_for(timeout=15000)
            page.screenshot(path=str(tmp_path / "swagger.png"), full_page=True)
            assert status.inner_text().strip() == "200"
            body = page.locator(".live-responses-table .microlight").first.inner_text()
            assert key["Authentication-Key"] in body
        finally:
            browser.close()
