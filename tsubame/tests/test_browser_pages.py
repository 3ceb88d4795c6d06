"""In a real browser: times follow the browser's zone unless the person chose one, and a new
API token is copied with one click, with or without the asynchronous clipboard API."""

from __future__ import annotations

import re

import pytest

from tsubame.tests.browser import TIMEOUT_MS, log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PASSWORD = "pw-ada-lovelace-123!"


@pytest.fixture
def tokyo_page(live_app, browser):
    """A page in a browser that lives in Tokyo and lets pages use the clipboard."""
    context = browser.new_context(
        base_url=live_app.url,
        timezone_id="Asia/Tokyo",
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_times_are_in_the_browsers_zone_and_a_new_token_copies(
    live_app, tokyo_page, django_user_model
):
    from playwright.sync_api import expect

    page = tokyo_page
    django_user_model.objects.create_user("ada", password=PASSWORD)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)  # the login page learns the zone
    cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
    assert cookies["tsubame_tz"] == "Asia/Tokyo"
    expect(page.locator(".usermenu")).to_contain_text("Time zone: Asia/Tokyo")

    page.goto("/tokens/")
    page.fill("#id_name", "laptop")
    page.click("button[type=submit]")
    secret = page.locator("#new-token").inner_text().strip()
    assert secret.startswith("tsb_")
    created = page.locator("tbody time").first
    expect(created).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST$"))
    screenshot(page, "ui-new-token")

    page.click("#copy-token")
    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret

    # Over plain http on a LAN address browsers have no navigator.clipboard: the button
    # falls back to selecting the text and copying it.
    page.evaluate(
        """async () => {
            window.realClipboard = navigator.clipboard;
            await navigator.clipboard.writeText("");
            Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });
        }"""
    )
    page.evaluate('() => { document.getElementById("copy-token").textContent = "Copy"; }')
    page.click("#copy-token")
    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert page.evaluate("() => window.realClipboard.readText()") == secret
